"""Activations: relu, leaky_relu, sigmoid, tanh, softmax, log_softmax.

Each is one ``Function``; backward reuses the forward output where the derivative is a
function of it (sigmoid, tanh, softmax), so only one array is kept per op.
"""

from ..autograd import Function
from .._validate import check_float, is_int

__all__ = ["relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax"]


def _check_axis(fn, axis, ndim):
    if not is_int(axis) or not -ndim <= axis < ndim:
        raise ValueError(f"{fn}: axis must be an integer in [{-ndim}, {ndim}); got {axis!r}")
    return int(axis) % ndim


class ReLU(Function):
    """y = max(x, 0); the subgradient at 0 is 0, as in PyTorch."""

    def forward(self, x):
        check_float("relu", "x", x)
        self.positive = x > 0
        return x * self.positive

    def backward(self, gy):
        return (gy * self.positive,)


class LeakyReLU(Function):
    """y = x for x > 0, slope * x otherwise (PyTorch's default slope 0.01)."""

    def __init__(self, negative_slope):
        self.slope = float(negative_slope)

    def forward(self, x):
        check_float("leaky_relu", "x", x)
        self.positive = x > 0
        return self.xp.where(self.positive, x, x * x.dtype.type(self.slope))

    def backward(self, gy):
        return (self.xp.where(self.positive, gy, gy * gy.dtype.type(self.slope)),)


class Sigmoid(Function):
    def forward(self, x):
        check_float("sigmoid", "x", x)
        xp = self.xp
        # exp(-|x|) never overflows, and e / (1 + e) keeps full relative precision in the
        # far negative tail (sigmoid(-40) ~ 4e-18), where 0.5 + 0.5 tanh(x / 2) rounds to 0.
        e = xp.exp(-xp.abs(x))
        inv = 1 / (1 + e)
        y = xp.where(x >= 0, inv, e * inv)
        self.y = y
        return y

    def backward(self, gy):
        y = self.y
        return (gy * y * (1 - y),)


class Tanh(Function):
    def forward(self, x):
        check_float("tanh", "x", x)
        self.y = self.xp.tanh(x)
        return self.y

    def backward(self, gy):
        return (gy * (1 - self.y * self.y),)


class _AlongAxis(Function):
    """An op along one axis of x: ``_axis(x)`` checks x and the axis under ``fn``."""

    fn = None

    def __init__(self, axis):
        self.axis = axis

    def _axis(self, x):
        check_float(self.fn, "x", x)
        return _check_axis(self.fn, self.axis, x.ndim)


class Softmax(_AlongAxis):
    """y = exp(x - max) / sum exp(x - max) along ``axis`` (the max shift avoids overflow)."""

    fn = "softmax"

    def forward(self, x):
        a = self._axis(x)
        xp = self.xp
        y = xp.exp(x - x.max(axis=a, keepdims=True))
        y /= y.sum(axis=a, keepdims=True)
        self.a, self.y = a, y
        return y

    def backward(self, gy):
        y = self.y
        gx = y * gy
        gx -= y * gx.sum(axis=self.a, keepdims=True)
        return (gx,)


class LogSoftmax(_AlongAxis):
    """y = x - logsumexp(x) along ``axis``, computed stably."""

    fn = "log_softmax"

    def forward(self, x):
        a = self._axis(x)
        xp = self.xp
        z = x - x.max(axis=a, keepdims=True)
        z -= xp.log(xp.exp(z).sum(axis=a, keepdims=True))
        self.a, self.y = a, z
        return z

    def backward(self, gy):
        return (gy - self.xp.exp(self.y) * gy.sum(axis=self.a, keepdims=True),)


def relu(x):
    return ReLU()(x)


def leaky_relu(x, negative_slope=0.01):
    return LeakyReLU(negative_slope)(x)


def sigmoid(x):
    return Sigmoid()(x)


def tanh(x):
    return Tanh()(x)


def softmax(x, axis=1):
    """Softmax over ``axis`` (default 1: the class axis of (N, L, H, W) scores)."""
    return Softmax(axis)(x)


def log_softmax(x, axis=1):
    """Log-softmax over ``axis`` (default 1)."""
    return LogSoftmax(axis)(x)
