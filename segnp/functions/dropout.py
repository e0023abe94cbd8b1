"""Inverted dropout, as ``torch.nn.functional.dropout``.

The keep mask is drawn on the host from the library generator (``segnp.random``) and moved
to the active backend, so a seeded run draws the same masks on NumPy and CuPy.
"""
import numbers

from ..autograd import Function, as_tensor
from .._validate import check_float
from ..random import get_rng

__all__ = ["dropout"]


class Dropout(Function):
    """y = x * keep / (1 - p), keep ~ Bernoulli(1 - p); p = 1 gives zeros."""

    def __init__(self, p):
        self.p = p

    def forward(self, x):
        check_float("dropout", "x", x)
        keep = get_rng().random(x.shape) >= self.p
        scale = 0.0 if self.p >= 1.0 else 1.0 / (1.0 - self.p)
        self.mask = self.xp.asarray((keep * scale).astype(x.dtype))
        return x * self.mask

    def backward(self, gy):
        return (gy * self.mask,)


def dropout(x, p=0.5, training=True):
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p).

    Outside training (``training=False``) or with ``p = 0`` it returns ``x`` unchanged.
    """
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be a probability in [0, 1]; got {p!r}")
    x = as_tensor(x)
    if not training or p == 0:
        return x
    return Dropout(float(p))(x)
