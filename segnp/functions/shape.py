"""Shape functions: reshape, transpose, getitem, concat, stack, pad.

None of them does arithmetic, so each backward only moves gradients back to where
their values came from: reshape and transpose undo themselves, concat and stack slice
the gradient apart, pad crops it, and getitem scatters it into zeros (adding where an
integer index array picks one element several times).
"""
import numbers

import numpy as np

from .._validate import is_int
from ..autograd import Function, Tensor, as_tensor

__all__ = ["reshape", "transpose", "getitem", "concat", "stack", "pad"]


def _axis(fn, axis, ndim):
    """Normalise one axis index for an array of ``ndim`` dims (negative counts from the end)."""
    if not is_int(axis):
        raise TypeError(f"{fn}: axis must be an int; got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{fn}: axis must be in [{-ndim}, {ndim - 1}] for {ndim} dims; "
                         f"got {axis}")
    return int(axis) % ndim


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.x_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape an array of shape {tuple(x.shape)} "
                             f"({x.size} elements) into {self.shape}") from None

    def backward(self, gy):
        return (gy.reshape(self.x_shape),)


class Transpose(Function):
    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        if self.axes is None:
            self.axes = tuple(range(x.ndim))[::-1]
        axes = tuple(_axis("transpose", a, x.ndim) for a in self.axes)
        if sorted(axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes must be a permutation of 0..{x.ndim - 1} for "
                             f"an array of shape {tuple(x.shape)}; got {tuple(self.axes)}")
        self.axes = axes
        return x.transpose(axes)

    def backward(self, gy):
        return (gy.transpose(tuple(int(i) for i in np.argsort(self.axes))),)


def _is_integer_array(item):
    return hasattr(item, "dtype") and hasattr(item, "ndim") and item.dtype.kind in "iu"


class GetItem(Function):
    """y = x[index] with NumPy's basic and advanced indexing.

    Backward writes gy into zeros at the same index.  Only integer index arrays can
    pick one element twice; those gradients must add up, hence ``xp.add.at`` there
    (boolean masks and slices never repeat, so plain assignment is enough).
    """

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.x_meta = (x.shape, x.dtype)
        items = self.index if isinstance(self.index, tuple) else (self.index,)
        axis = _one_array_axis(items, x.ndim)
        if axis is not None:
            # x[:, :, idx] would come out with the picked axis outermost in memory, and
            # every later op on it would stride through memory (5x slower reductions in
            # the loss after SegNet's clamped resize); take keeps it C-contiguous.
            return self.xp.take(x, items[axis], axis=axis)
        return x[self.index]

    def backward(self, gy):
        xp = self.xp
        shape, dtype = self.x_meta
        gx = xp.zeros(shape, dtype=dtype)
        items = self.index if isinstance(self.index, tuple) else (self.index,)
        axis = _one_array_axis(items, len(shape))
        if axis is not None and _add_along_axis(xp, gx, axis, items[axis], gy):
            return (gx,)
        if any(_is_integer_array(i) for i in items):
            xp.add.at(gx, self.index, gy)
        else:
            gx[self.index] = gy
        return (gx,)


def _one_array_axis(items, ndim):
    """The axis of the index when it is one 1-D integer array among full slices
    (``x[:, :, idx]``, as when a resize clamps its edge rows); None otherwise."""
    full = slice(None)
    arrays = [a for a, i in enumerate(items) if _is_integer_array(i)]
    if (len(items) > ndim or len(arrays) != 1 or items[arrays[0]].ndim != 1
            or any(i is not full and not (isinstance(i, slice) and i == full)
                   for a, i in enumerate(items) if a != arrays[0])):
        return None
    return arrays[0]


def _add_along_axis(xp, gx, axis, idx, gy):
    """gx[..., idx[k], ...] += gy[..., k, ...] along ``axis``, repeats adding up; False
    (gx untouched) when a target repeats more than 16 times.

    ``ufunc.at`` adds one element at a time (2 ms on a clamped SegNet resize).  Here
    the k-th pick of each target is added in round k: within a round the targets are
    distinct, so one gather and one indexed add do it, and every target still sums its
    picks in their original order, exactly as ``add.at`` does.
    """
    idx = idx % gx.shape[axis]
    order = xp.argsort(idx, kind="stable")
    targets = idx[order]
    first = xp.ones(targets.shape, dtype=bool)
    first[1:] = targets[1:] != targets[:-1]
    starts = xp.flatnonzero(first)
    rank = xp.arange(targets.size) - starts[xp.cumsum(first) - 1]
    rounds = int(rank.max()) + 1 if rank.size else 0
    if rounds > 16:
        return False
    lead = (slice(None),) * axis
    for r in range(rounds):
        pick = rank == r
        gx[lead + (_run(targets[pick]),)] += gy[lead + (_run(order[pick]),)]
    return True


def _run(i):
    """``i`` as a slice when it is a run of consecutive integers (a clamp's picks are):
    strided views beat fancy indexing by ~10x on the last axis."""
    if i.size and int(i[-1]) - int(i[0]) == i.size - 1 and bool((i[1:] > i[:-1]).all()):
        return slice(int(i[0]), int(i[-1]) + 1)
    return i


def _device_index(backend, index):
    """Index arrays and lists onto the backend's device; Tensor indices to their data."""
    def one(item):
        if isinstance(item, Tensor):
            item = item.data
        if isinstance(item, (list, np.ndarray)) or hasattr(item, "__cuda_array_interface__"):
            return backend.asarray(item)
        return item
    if isinstance(index, tuple):
        return tuple(one(i) for i in index)
    return one(index)


class Concat(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        self.metas = [(x.shape[self.axis], x.dtype) for x in xs]
        return self.xp.concatenate(xs, axis=self.axis)

    def backward(self, gy):
        gxs, start = [], 0
        lead = (slice(None),) * self.axis
        for (size, dtype), need in zip(self.metas, self.needs_input_grad):
            if need:
                gxs.append(gy[lead + (slice(start, start + size),)].astype(dtype))
            else:
                gxs.append(None)
            start += size
        return tuple(gxs)


class Stack(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        self.dtypes = [x.dtype for x in xs]
        return self.xp.stack(xs, axis=self.axis)

    def backward(self, gy):
        lead = (slice(None),) * self.axis
        return tuple(gy[lead + (i,)].astype(dtype) if need else None
                     for i, (dtype, need) in enumerate(zip(self.dtypes, self.needs_input_grad)))


class Pad(Function):
    def __init__(self, pairs, value):
        self.pairs, self.value = pairs, value

    def forward(self, x):
        shape = tuple(n + b + a for n, (b, a) in zip(x.shape, self.pairs))
        y = self.xp.full(shape, self.value, dtype=x.dtype)
        self.inner = tuple(slice(b, b + n) for n, (b, _) in zip(x.shape, self.pairs))
        y[self.inner] = x
        return y

    def backward(self, gy):
        return (gy[self.inner].copy(),)


def reshape(x, shape):
    """x with a new shape of the same size; one entry may be -1 (inferred), as NumPy."""
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    return Reshape(tuple(int(s) for s in shape))(x)


def transpose(x, axes=None):
    """Permute the axes of x; ``axes=None`` reverses them (NumPy's ``transpose``)."""
    return Transpose(None if axes is None else tuple(axes))(x)


def getitem(x, index):
    """x[index]: ints, slices, None, Ellipsis, integer and boolean arrays (NumPy rules).

    Index arrays may be lists, NumPy arrays, backend arrays or integer Tensors; they
    carry no gradient.
    """
    x = as_tensor(x)
    return GetItem(_device_index(_backend(), index))(x)


def _backend():
    from ..backends import get_backend
    return get_backend()


def _check_joinable(fn, xs):
    if isinstance(xs, Tensor) or not isinstance(xs, (list, tuple)) or len(xs) == 0:
        raise TypeError(f"{fn}: expected a non-empty list or tuple of Tensors; got "
                        f"{type(xs).__name__}" + (" of length 0" if
                                                  isinstance(xs, (list, tuple)) else ""))
    return [as_tensor(x) for x in xs]


def concat(xs, axis=0):
    """Join Tensors along an existing axis (``numpy.concatenate``).

    Every input must have the same number of dims and the same size on the other axes.
    """
    xs = _check_joinable("concat", xs)
    ndim = xs[0].ndim
    if ndim == 0:
        raise ValueError("concat: expected arrays with at least 1 dimension; got a 0-d array")
    axis = _axis("concat", axis, ndim)
    ref = xs[0].shape
    for i, x in enumerate(xs):
        if x.ndim != ndim or any(a != b for k, (a, b) in enumerate(zip(x.shape, ref))
                                 if k != axis):
            raise ValueError(f"concat: every input must match {ref} except on axis {axis}; "
                             f"input {i} has shape {x.shape}")
    return Concat(axis)(*xs)


def stack(xs, axis=0):
    """Join Tensors of one shape along a new axis (``numpy.stack``)."""
    xs = _check_joinable("stack", xs)
    axis = _axis("stack", axis, xs[0].ndim + 1)
    for i, x in enumerate(xs):
        if x.shape != xs[0].shape:
            raise ValueError(f"stack: every input must have the shape of input 0, "
                             f"{xs[0].shape}; input {i} has shape {x.shape}")
    return Stack(axis)(*xs)


def _pad_pairs(pad_width, ndim):
    """NumPy's pad_width forms -> one (before, after) pair per axis."""
    try:
        arr = np.asarray(pad_width)
    except ValueError:
        arr = None
    if arr is None or arr.dtype.kind not in "iu" or arr.ndim > 2:
        raise TypeError(f"pad: pad_width must be an int, a (before, after) pair or one pair "
                        f"per axis, all integers; got {pad_width!r}")
    try:
        pairs = np.broadcast_to(arr, (ndim, 2))
    except ValueError:
        raise ValueError(f"pad: pad_width must broadcast to one (before, after) pair for "
                         f"each of the {ndim} axes; got {pad_width!r}") from None
    if (pairs < 0).any():
        raise ValueError(f"pad: pad widths must be >= 0; got {pad_width!r}")
    return tuple((int(b), int(a)) for b, a in pairs)


def pad(x, pad_width, mode="constant", value=0):
    """Pad x with the constant ``value`` (``numpy.pad(x, pad_width, constant_values=value)``).

    ``pad_width`` follows NumPy: an int (every side of every axis), ``(before, after)``
    (every axis), or ``((before_0, after_0), ...)``, one pair per axis.  Only the
    constant mode exists.
    """
    if mode != "constant":
        raise ValueError(f"pad: mode must be 'constant'; got {mode!r}")
    if not isinstance(value, numbers.Real):
        raise TypeError(f"pad: value must be a real number; got {value!r}")
    x = as_tensor(x)
    return Pad(_pad_pairs(pad_width, x.ndim), value)(x)
