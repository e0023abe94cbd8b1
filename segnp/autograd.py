"""A small tape-based reverse-mode autograd: ``Tensor``, ``Function`` and the backward walk.

A ``Function`` works on arrays: ``forward(*arrays) -> array(s)`` and
``backward(*grad_outputs) -> grads``, one per input, ``None`` where no gradient is
needed (``self.needs_input_grad`` says which).  What backward needs is saved on ``self``
explicitly during forward.  Calling a Function on Tensors runs forward and, when
gradients are enabled and some input requires one, records the call on the tape.

The backward walk is iterative: a heap ordered by generation (the depth of a call in the
graph), ties broken by call order, so the result is deterministic and a chain of any
length backpropagates without recursion.  Every gradient edge is checked for the shape
and dtype of its input.

The grad mode (``no_grad``, in ``grad_mode.py``) is per thread.  In-place operators
(``t -= lr * g``) write into ``t.data``; each bumps the tensor's version, and a backward
pass through a call that used an older version refuses to run (its saved arrays would
be stale).
"""
import heapq
import itertools
import numbers
import operator
import weakref

import numpy as np

from .backends import get_backend
from .grad_mode import enable_grad, is_grad_enabled, no_grad

__all__ = ["Tensor", "Parameter", "Function", "no_grad", "enable_grad",
           "is_grad_enabled", "as_tensor", "from_dlpack"]


_call_counter = itertools.count()


def _numpy_options(name, dtype, out):
    """Refuse the options of NumPy's reductions that a Tensor cannot honour on the
    tape (np.sum(t) passes dtype=None and out=None, which are fine)."""
    if dtype is not None or out is not None:
        raise TypeError(f"Tensor.{name}: dtype= and out= are NumPy's options; use "
                        f"np.{name}(t.numpy(), ...) for a NumPy result")


class Tensor:
    """An array with an optional gradient.

    ``data`` is an array of the active backend (numpy or cupy); ``grad`` is ``None``
    until a backward pass reaches this tensor, then an array of the same shape and dtype.
    """

    # Makes ``ndarray + Tensor`` call Tensor.__radd__ instead of broadcasting elementwise.
    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False, name=None):
        data_in = data
        if isinstance(data, (list, tuple)) and any(isinstance(v, Tensor) for v in data):
            raise TypeError(f"Tensor: data must be numeric; got a {type(data).__name__} of "
                            f"Tensors (use F.stack, which keeps their gradients)")
        if isinstance(data, Tensor):
            data = data.data
        data = get_backend().asarray(data)
        if data.dtype.kind not in "biufc":
            raise TypeError(f"Tensor: data must be numeric (bool, int, float or complex); "
                            f"got dtype {data.dtype} from {type(data_in).__name__}")
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"Tensor: requires_grad needs a floating dtype; got {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.name = name
        self.creator = None
        self.generation = 0
        self._out_index = 0
        self._version = 0

    @classmethod
    def _from_array(cls, data):
        # Outputs of Functions skip the asarray round trip of __init__.
        t = cls.__new__(cls)
        t.data, t.grad, t.requires_grad, t.name = data, None, False, None
        t.creator, t.generation, t._out_index, t._version = None, 0, 0, 0
        return t

    # ---- array-like properties -----------------------------------------------------
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return int(self.data.size)

    def __len__(self):
        return len(self.data)

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"Tensor: the truth value of a tensor of {self.size} elements "
                             f"is ambiguous; use t.numpy().any() or t.numpy().all()")
        return bool(self.data.item())

    # ---- a one-element tensor as a number, as a NumPy scalar is ----------------------
    def _scalar(self, what):
        if self.size != 1:
            raise TypeError(f"Tensor: only a one-element tensor converts to {what}; got "
                            f"shape {self.shape} (use t.numpy())")
        return self.data.item()

    def __float__(self):
        return float(self._scalar("float"))

    def __int__(self):
        return int(self._scalar("int"))

    def __complex__(self):
        return complex(self._scalar("complex"))

    def __index__(self):
        # as NumPy: only integers index (range(t), a list[t]); a float tensor is refused
        if self.dtype.kind not in "iu":
            raise TypeError(f"Tensor: only an integer tensor can be an index; got dtype "
                            f"{self.dtype}")
        return int(self._scalar("an index"))

    def __format__(self, spec):
        # f"{loss:.3f}" formats the number; an empty spec gives the repr, as str() does
        if not spec:
            return str(self)
        return format(self._scalar(f"a number for the format {spec!r}"), spec)

    # ---- exchange with NumPy and other array libraries ------------------------------
    def __array__(self, dtype=None, copy=None):
        # np.asarray(t): the host data (a copy when it lives on a GPU).
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def __dlpack__(self, *args, **kwargs):
        return self.data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    def __repr__(self):
        body = repr(np.asarray(self.numpy())).replace("\n", "\n       ")
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({body}{grad})"

    def numpy(self):
        """The data as a host NumPy array."""
        return get_backend().to_numpy(self.data)

    def item(self):
        return self.data.item()

    def detach(self):
        """A new leaf Tensor sharing the data, cut from the graph."""
        return Tensor._from_array(self.data)

    def zero_grad(self):
        self.grad = None

    # ---- backward ------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into the ``.grad`` of every leaf that requires it.

        ``grad`` is the upstream gradient; it may be omitted for a one-element tensor.
        The graph is freed afterwards unless ``retain_graph`` is true.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (it was made "
                               "from inputs that require none, or inside no_grad)")
        xp = get_backend().xp
        if grad is None:
            if self.size != 1:
                raise ValueError(f"backward: grad can be omitted only for a one-element "
                                 f"tensor; got shape {self.shape}")
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"backward: grad must have shape {self.shape}; "
                                 f"got {tuple(grad.shape)}")
        _run_backward(self, grad, retain_graph)

    # ---- operators (implemented in segnp.functions) ---------------------------------
    def __add__(self, other):
        return _F.add(self, other)

    def __radd__(self, other):
        return _F.add(other, self)

    def __sub__(self, other):
        return _F.sub(self, other)

    def __rsub__(self, other):
        return _F.sub(other, self)

    def __mul__(self, other):
        return _F.mul(self, other)

    def __rmul__(self, other):
        return _F.mul(other, self)

    def __truediv__(self, other):
        return _F.div(self, other)

    def __rtruediv__(self, other):
        return _F.div(other, self)

    def __pow__(self, other):
        return _F.pow(self, other)

    def __rpow__(self, other):
        return _F.pow(other, self)

    def __matmul__(self, other):
        return _F.matmul(self, other)

    def __rmatmul__(self, other):
        return _F.matmul(other, self)

    def __neg__(self):
        return _F.neg(self)

    # ---- comparisons: boolean tensors, outside the graph -----------------------------
    __hash__ = object.__hash__  # tensors stay usable as dict keys and in sets

    def _compare(self, other, op):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor._from_array(op(self.data, other))

    def __eq__(self, other):
        return self._compare(other, operator.eq)

    def __ne__(self, other):
        return self._compare(other, operator.ne)

    def __lt__(self, other):
        return self._compare(other, operator.lt)

    def __le__(self, other):
        return self._compare(other, operator.le)

    def __gt__(self, other):
        return self._compare(other, operator.gt)

    def __ge__(self, other):
        return self._compare(other, operator.ge)

    # ---- in-place updates: they change ``data``, outside the graph --------------------
    def _inplace(self, other, ufunc, symbol):
        if is_grad_enabled() and (self.requires_grad or (
                isinstance(other, Tensor) and other.requires_grad)):
            raise RuntimeError(
                f"Tensor {symbol}: an in-place update of a tensor that requires grad (or "
                f"by one) cannot be recorded on the tape; do it inside `with no_grad():` "
                f"(an optimizer step) or write `t = t {symbol[0]} other` for a new tensor")
        other = other.data if isinstance(other, Tensor) else other
        getattr(get_backend().xp, ufunc)(self.data, other, out=self.data)
        self._version += 1
        return self

    def __iadd__(self, other):
        return self._inplace(other, "add", "+=")

    def __isub__(self, other):
        return self._inplace(other, "subtract", "-=")

    def __imul__(self, other):
        return self._inplace(other, "multiply", "*=")

    def __itruediv__(self, other):
        return self._inplace(other, "true_divide", "/=")

    def __getitem__(self, index):
        return _F.getitem(self, index)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _F.reshape(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _F.transpose(self, axes or None)

    @property
    def T(self):
        return _F.transpose(self, None)

    # np.sum(t), np.mean(t), np.max(t) call these with NumPy's dtype= and out=; the result
    # is the same Tensor as t.sum(), on the tape.
    def sum(self, axis=None, keepdims=False, dtype=None, out=None):
        _numpy_options("sum", dtype, out)
        return _F.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False, dtype=None, out=None):
        _numpy_options("mean", dtype, out)
        return _F.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False, out=None):
        _numpy_options("max", None, out)
        return _F.max(self, axis=axis, keepdims=keepdims)


class Parameter(Tensor):
    """A leaf Tensor that always requires grad: what modules register and optimizers update.

    ``constraint``, when given, is a function of the array that optimizers apply after
    each step (a projection), e.g. ``lambda a: a.clip(0, None)`` keeps lam >= 0 while
    its gradient at 0 stays that of the unconstrained value, so lam can grow from 0.
    """

    def __init__(self, data, name=None, constraint=None):
        super().__init__(data, requires_grad=True, name=name)
        self.constraint = constraint

    def apply_constraint(self):
        """Project the data onto the constraint set (optimizers call this after a step)."""
        if self.constraint is not None:
            self.data[...] = self.constraint(self.data)

    def __repr__(self):
        return "Parameter" + super().__repr__()[len("Tensor"):]


def from_dlpack(x):
    """A Tensor sharing the memory of a DLPack-capable array (PyTorch, JAX, CuPy,
    NumPy) on the active backend's device."""
    return Tensor._from_array(get_backend().xp.from_dlpack(x))


def as_tensor(value, like=None):
    """Wrap ``value`` as a constant Tensor unless it is one already.

    A Python or NumPy scalar takes the floating dtype of ``like`` (a Tensor), so that
    ``x * 2.0`` stays float32 for a float32 ``x``.
    """
    if isinstance(value, Tensor):
        return value
    xp = get_backend().xp
    if like is not None and isinstance(value, (numbers.Number, np.generic)) \
            and like.dtype.kind == "f":
        return Tensor._from_array(xp.asarray(value, dtype=like.dtype))
    return Tensor._from_array(xp.asarray(value))


class Function:
    """Base class of every differentiable op.

    Subclasses take hyper-parameters in ``__init__`` and implement ``forward`` and
    ``backward`` on arrays.  ``self.xp`` is the array module and ``self.backend`` the
    backend object; both are set before ``forward`` runs.
    """

    def __call__(self, *inputs):
        backend = get_backend()
        self.backend = backend
        self.xp = backend.xp
        tensors = tuple(None if x is None else as_tensor(x) for x in inputs)
        record = is_grad_enabled() and any(t is not None and t.requires_grad
                                            for t in tensors)
        self.needs_input_grad = tuple(
            record and t is not None and t.requires_grad for t in tensors)
        outputs = self.forward(*(None if t is None else t.data for t in tensors))
        single = not isinstance(outputs, tuple)
        outputs = (outputs,) if single else outputs
        results = tuple(Tensor._from_array(y) for y in outputs)
        if record:
            self.inputs = tensors
            self.input_versions = tuple(None if t is None else t._version for t in tensors)
            self.generation = max(t.generation for t in tensors if t is not None)
            self.order = next(_call_counter)
            self.output_meta = tuple((tuple(y.shape), y.dtype) for y in outputs)
            for i, r in enumerate(results):
                r.requires_grad = True
                r.creator = self
                r.generation = self.generation + 1
                r._out_index = i
            self.outputs = tuple(weakref.ref(r) for r in results)
        else:
            self.release()
        return results[0] if single else results

    def forward(self, *arrays):
        raise TypeError(f"{type(self).__name__} must define forward(*arrays)")

    def backward(self, *grad_outputs):
        raise TypeError(f"{type(self).__name__} must define backward(*grad_outputs)")

    def release(self):
        """Drop what forward saved and the links to the inputs (frees the graph)."""
        self.__dict__ = {k: v for k, v in self.__dict__.items()
                         if k in ("backend", "xp", "generation", "order", "needs_input_grad")}
        self.inputs = None

    def __lt__(self, other):
        # Heap order: deepest generation first; among equals, the later call first.
        return (self.generation, self.order) > (other.generation, other.order)


def _accumulate(existing, g):
    # Never in place: ``g`` may alias an upstream gradient or another input's gradient.
    return g if existing is None else existing + g


def _check_edge(f, i, t, g):
    if g is None:
        raise RuntimeError(f"{type(f).__name__}.backward returned no gradient for input {i}, "
                           f"which requires one")
    if tuple(g.shape) != t.shape or g.dtype != t.dtype:
        raise RuntimeError(
            f"{type(f).__name__}.backward: the gradient of input {i} must have shape "
            f"{t.shape} and dtype {t.dtype}; got shape {tuple(g.shape)} and dtype {g.dtype}")


def _check_versions(f):
    for i, (t, v) in enumerate(zip(f.inputs, f.input_versions)):
        if t is not None and t._version != v:
            raise RuntimeError(
                f"backward: input {i} of {type(f).__name__} was changed in place after "
                f"{type(f).__name__} used it, so its gradient would be wrong; update it "
                f"after backward, or compute with a copy")


def _run_backward(root, grad, retain_graph):
    if root.creator is None:
        root.grad = _accumulate(root.grad, grad.copy())
        return
    pending = {}  # Function -> list of upstream gradients, one per output

    def send(tensor, g):
        f = tensor.creator
        if f not in pending:
            pending[f] = [None] * len(f.output_meta)
            heapq.heappush(heap, f)
        slot = pending[f]
        slot[tensor._out_index] = _accumulate(slot[tensor._out_index], g)

    heap = []
    if root.creator.inputs is None:
        raise RuntimeError("backward: the graph has been freed by an earlier backward; "
                           "pass retain_graph=True to the first call to go through it twice")
    send(root, grad)
    while heap:
        f = heapq.heappop(heap)
        if f.inputs is None:
            raise RuntimeError("backward: the graph has been freed by an earlier backward; "
                               "pass retain_graph=True to the first call to go through it twice")
        _check_versions(f)
        xp = f.xp
        gys = [g if g is not None else xp.zeros(shape, dtype=dtype)
               for g, (shape, dtype) in zip(pending.pop(f), f.output_meta)]
        gxs = f.backward(*gys)
        if not isinstance(gxs, tuple):
            gxs = (gxs,)
        if len(gxs) != len(f.inputs):
            raise RuntimeError(f"{type(f).__name__}.backward returned {len(gxs)} gradients "
                               f"for {len(f.inputs)} inputs")
        for i, (t, g, need) in enumerate(zip(f.inputs, gxs, f.needs_input_grad)):
            if not need:
                continue
            _check_edge(f, i, t, g)
            if t.creator is None:
                # A leaf keeps its own copy, so later in-place updates of .grad by an
                # optimizer can never write into another tensor's gradient.
                t.grad = g.copy() if t.grad is None else t.grad + g
            else:
                send(t, g)
        if not retain_graph:
            f.release()


from . import functions as _F  # noqa: E402  (operators need the functions; they need us)
