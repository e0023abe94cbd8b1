"""Elementwise arithmetic and matmul.

Binary ops broadcast like NumPy; their backward sums each gradient back to the shape of
its input and casts it to the input's dtype, so every gradient edge matches its input.
A Python scalar operand takes the floating dtype of the Tensor beside it.
"""
import numbers

import numpy as np

from ..autograd import Function, Tensor, as_tensor

__all__ = ["add", "sub", "mul", "div", "neg", "pow", "exp", "log", "abs", "sqrt",
           "clip", "where", "matmul", "sum_to"]


def sum_to(xp, g, shape, dtype):
    """Sum a broadcast gradient ``g`` back to ``shape`` and cast it to ``dtype``."""
    if tuple(g.shape) != tuple(shape):
        lead = g.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
        g = g.sum(axis=axes, keepdims=True)
        if lead:
            g = g.reshape(shape)
    return g.astype(dtype, copy=False)


def _pair(a, b):
    """Tensors for a binary op; a scalar side borrows the other side's float dtype."""
    if isinstance(a, Tensor):
        return a, as_tensor(b, like=a)
    b = as_tensor(b)
    return as_tensor(a, like=b), b


class _Binary(Function):
    def _save_shapes(self, a, b):
        self.a_meta = (a.shape, a.dtype)
        self.b_meta = (b.shape, b.dtype)

    def _save_operands(self, a, b):
        """The shapes, and each operand only where the other's gradient needs it."""
        self._save_shapes(a, b)
        na, nb = self.needs_input_grad
        self.a = a if nb else None
        self.b = b if na else None

    def _reduce(self, ga, gb):
        xp = self.xp
        na, nb = self.needs_input_grad
        return (sum_to(xp, ga, *self.a_meta) if na else None,
                sum_to(xp, gb, *self.b_meta) if nb else None)


class Add(_Binary):
    def forward(self, a, b):
        self._save_shapes(a, b)
        return a + b

    def backward(self, gy):
        return self._reduce(gy, gy)


class Sub(_Binary):
    def forward(self, a, b):
        self._save_shapes(a, b)
        return a - b

    def backward(self, gy):
        return self._reduce(gy, -gy if self.needs_input_grad[1] else None)


class Mul(_Binary):
    def forward(self, a, b):
        self._save_operands(a, b)
        return a * b

    def backward(self, gy):
        na, nb = self.needs_input_grad
        return self._reduce(gy * self.b if na else None, gy * self.a if nb else None)


class Div(_Binary):
    def forward(self, a, b):
        self._save_shapes(a, b)
        y = a / b
        self.b = b
        self.y = y if self.needs_input_grad[1] else None
        return y

    def backward(self, gy):
        na, nb = self.needs_input_grad
        ga = gy / self.b
        return self._reduce(ga, -ga * self.y if nb else None)


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return (-gy,)


class PowConst(Function):
    """x ** p for a constant real exponent p."""

    def __init__(self, p):
        self.p = p

    def forward(self, x):
        self.x = x
        return x ** self.xp.asarray(self.p, dtype=x.dtype)

    def backward(self, gy):
        x, p = self.x, self.p
        return ((gy * p * x ** self.xp.asarray(p - 1, dtype=x.dtype)).astype(x.dtype, copy=False),)


class Pow(_Binary):
    """a ** b with both sides differentiable: db uses log(a), so a must be > 0 there."""

    def forward(self, a, b):
        self._save_shapes(a, b)
        y = a ** b
        self.a, self.b, self.y = a, b, y
        return y

    def backward(self, gy):
        na, nb = self.needs_input_grad
        xp = self.xp
        ga = gy * self.b * self.a ** (self.b - 1) if na else None
        gb = gy * self.y * xp.log(self.a) if nb else None
        return self._reduce(ga, gb)


class Exp(Function):
    def forward(self, x):
        self.y = self.xp.exp(x)
        return self.y

    def backward(self, gy):
        return (gy * self.y,)


class Log(Function):
    def forward(self, x):
        self.x = x
        return self.xp.log(x)

    def backward(self, gy):
        return (gy / self.x,)


class Abs(Function):
    """|x|; the gradient at 0 is 0 (the subgradient PyTorch uses)."""

    def forward(self, x):
        self.x = x
        return self.xp.abs(x)

    def backward(self, gy):
        return (gy * self.xp.sign(self.x),)


class Sqrt(Function):
    def forward(self, x):
        self.y = self.xp.sqrt(x)
        return self.y

    def backward(self, gy):
        return (gy / (2 * self.y),)


class Clip(Function):
    """Clamp to [lo, hi]; the gradient passes where lo <= x <= hi (as PyTorch's clamp)."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, x):
        self.x = x
        return self.xp.clip(x, self.lo, self.hi)

    def backward(self, gy):
        inside = self.xp.ones(self.x.shape, dtype=bool)
        if self.lo is not None:
            inside &= self.x >= self.lo
        if self.hi is not None:
            inside &= self.x <= self.hi
        return (gy * inside,)


class Where(Function):
    """cond ? a : b, with gradients to a and b (cond is a boolean constant)."""

    def forward(self, cond, a, b):
        self.cond = cond
        self.a_meta = (a.shape, a.dtype)
        self.b_meta = (b.shape, b.dtype)
        return self.xp.where(cond, a, b)

    def backward(self, gy):
        xp = self.xp
        _, na, nb = self.needs_input_grad
        zero = xp.zeros((), dtype=gy.dtype)
        ga = sum_to(xp, xp.where(self.cond, gy, zero), *self.a_meta) if na else None
        gb = sum_to(xp, xp.where(self.cond, zero, gy), *self.b_meta) if nb else None
        return None, ga, gb


class MatMul(_Binary):
    """NumPy ``matmul`` semantics: batched over leading axes, 1-D operands promoted."""

    def forward(self, a, b):
        self._save_operands(a, b)
        return self.xp.matmul(a, b)

    def backward(self, gy):
        xp = self.xp
        na, nb = self.needs_input_grad
        a_shape, b_shape = self.a_meta[0], self.b_meta[0]
        # Promote 1-D operands the way matmul does, so one formula covers every case.
        a2 = None if self.a is None else (self.a[None, :] if self.a.ndim == 1 else self.a)
        b2 = None if self.b is None else (self.b[:, None] if self.b.ndim == 1 else self.b)
        # Put back the axes matmul dropped: the last for a 1-D b, then the row for a 1-D a
        # (in this order, so that 1-D @ 1-D, whose gy is 0-d, becomes (1, 1)).
        g = gy
        if len(b_shape) == 1:
            g = g[..., None]
        if len(a_shape) == 1:
            g = g[..., None, :]
        ga = gb = None
        if na:
            ga = xp.matmul(g, xp.swapaxes(b2, -1, -2))
            if len(a_shape) == 1:
                ga = ga[..., 0, :]
        if nb:
            gb = xp.matmul(xp.swapaxes(a2, -1, -2), g)
            if len(b_shape) == 1:
                gb = gb[..., 0]
        return self._reduce(ga, gb)


def add(a, b):
    """a + b with broadcasting."""
    return Add()(*_pair(a, b))


def sub(a, b):
    """a - b with broadcasting."""
    return Sub()(*_pair(a, b))


def mul(a, b):
    """a * b with broadcasting."""
    return Mul()(*_pair(a, b))


def div(a, b):
    """a / b with broadcasting."""
    return Div()(*_pair(a, b))


def neg(x):
    """-x."""
    return Neg()(x)


def pow(a, b):
    """a ** b.  A constant real exponent takes a cheaper path (no log needed)."""
    if isinstance(b, numbers.Real) and not isinstance(b, bool) and isinstance(a, Tensor):
        return PowConst(float(b))(a)
    return Pow()(*_pair(a, b))


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def abs(x):
    return Abs()(x)


def sqrt(x):
    return Sqrt()(x)


def clip(x, lo=None, hi=None):
    """Clamp x to [lo, hi] (either bound may be None)."""
    if lo is None and hi is None:
        raise ValueError("clip: expected at least one of lo, hi; got both None")
    return Clip(lo, hi)(x)


def where(cond, a, b):
    """Elementwise ``cond ? a : b``; cond is a boolean array or Tensor (no gradient)."""
    cond = cond.data if isinstance(cond, Tensor) else cond
    a, b = _pair(a, b)
    return Where()(np.asarray(cond) if isinstance(cond, (list, bool)) else cond, a, b)


def matmul(a, b):
    """Matrix product with NumPy ``matmul`` semantics (BLAS underneath)."""
    a, b = _pair(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: expected operands with at least 1 dimension; got shapes "
                         f"{a.shape} and {b.shape}")
    return MatMul()(a, b)
