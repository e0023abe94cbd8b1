"""Reductions over axes: sum, mean, max (with ``keepdims``)."""
from ..autograd import Function

__all__ = ["sum", "mean", "max"]


def _axes(axis, ndim, fn):
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{fn}: axis {a} is out of range for an array of {ndim} dims")
        out.append(a % ndim)
    return tuple(sorted(set(out)))


def _expand(xp, g, axes, keepdims):
    # Put the reduced axes back as size-1 axes so the gradient broadcasts over them.
    return g if keepdims else xp.expand_dims(g, axes)


class Sum(Function):
    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _axes(self.axis, x.ndim, "sum")
        self.x_meta = (x.shape, x.dtype)
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        shape, dtype = self.x_meta
        g = _expand(self.xp, gy, self.axes, self.keepdims)
        return (self.xp.broadcast_to(g, shape).astype(dtype, copy=False),)


class Mean(Sum):
    def forward(self, x):
        y = super().forward(x)
        if x.dtype.kind != "f":
            raise TypeError(f"mean: expected a floating-point array; got dtype {x.dtype}")
        self.count = 1
        for a in self.axes:
            self.count *= x.shape[a]
        return y / self.xp.asarray(self.count, dtype=y.dtype)

    def backward(self, gy):
        (g,) = super().backward(gy)
        return (g / self.xp.asarray(self.count, dtype=g.dtype),)


class Max(Function):
    """Maximum over axes.  Ties share the gradient equally (a symmetric subgradient)."""

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _axes(self.axis, x.ndim, "max")
        if x.size == 0:
            raise ValueError(f"max: expected a non-empty array; got shape {tuple(x.shape)}")
        y = x.max(axis=self.axes, keepdims=True)
        self.x, self.y = x, y
        return y if self.keepdims else y.reshape(
            tuple(n for i, n in enumerate(x.shape) if i not in self.axes))

    def backward(self, gy):
        xp = self.xp
        g = _expand(xp, gy, self.axes, self.keepdims)
        hit = (self.x == self.y)
        share = hit / hit.sum(axis=self.axes, keepdims=True).astype(self.x.dtype)
        return ((g * share).astype(self.x.dtype, copy=False),)


def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (int, tuple or None for all)."""
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis`` (int, tuple or None for all)."""
    return Mean(axis, keepdims)(x)


def max(x, axis=None, keepdims=False):
    """Maximum over ``axis`` (int, tuple or None for all)."""
    return Max(axis, keepdims)(x)
