"""Weight initialisers: fill a Parameter (or any Tensor) in place and return it.

Random values are drawn on the host in float64 from a NumPy ``Generator`` and then
cast to the tensor's dtype, so a float32 model and a float64 model built from the same
seed start from the same weights (up to rounding), on every backend.  ``rng`` defaults
to the library generator ``segnp.random.get_rng()``, which ``segnp.manual_seed`` seeds.

Fans of a weight of shape (F, C, KH, KW): fan_in = C * KH * KW, fan_out = F * KH * KW
(for a 2-d (F, C) weight, the receptive field is 1; for a 1-d one both fans are its size).
"""
import math

import numpy as np

from ..autograd import Tensor
from ..backends import get_backend

__all__ = ["calculate_fans", "he_normal", "he_uniform", "xavier_uniform", "xavier_normal",
           "normal", "uniform", "zeros", "constant"]

RELU_GAIN = math.sqrt(2.0)


def _rng(rng):
    if rng is None:
        from ..random import get_rng  # late: segnp.random imports nothing from nn
        return get_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"init: rng must be a numpy.random.Generator or None; got "
                        f"{type(rng).__name__}")
    return rng


def _check_tensor(fn, tensor):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{fn}: expected a Tensor or Parameter to fill; got "
                        f"{type(tensor).__name__}")
    if tensor.dtype.kind != "f":
        raise TypeError(f"{fn}: the tensor must be floating-point; got dtype {tensor.dtype}")


def _fill(tensor, values):
    tensor.data[...] = get_backend().asarray(np.asarray(values).astype(tensor.dtype))
    return tensor


def calculate_fans(shape, fn="calculate_fans"):
    """(fan_in, fan_out) of a weight of ``shape``: (F, C, *kernel) or (F, C) or (F,)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0 or 0 in shape:
        raise ValueError(f"{fn}: fans need a weight with at least one dimension and no "
                         f"zero size; got shape {shape}")
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan(fn, shape, mode):
    fan_in, fan_out = calculate_fans(shape, fn)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise ValueError(f"{fn}: mode must be 'fan_in' or 'fan_out'; got {mode!r}")


def he_normal(tensor, mode="fan_in", gain=RELU_GAIN, rng=None):
    """He (Kaiming) normal init: N(0, std^2) with std = gain / sqrt(fan).

    The default gain sqrt(2) keeps the activation variance constant through ReLUs
    (He et al., 2015); it is what Caffe's "msra" filler gives.
    """
    _check_tensor("he_normal", tensor)
    std = gain / math.sqrt(_fan("he_normal", tensor.shape, mode))
    return _fill(tensor, _rng(rng).normal(0.0, std, size=tensor.shape))


def he_uniform(tensor, mode="fan_in", gain=RELU_GAIN, rng=None):
    """He (Kaiming) uniform init: U(-b, b) with b = gain * sqrt(3 / fan) (same variance)."""
    _check_tensor("he_uniform", tensor)
    bound = gain * math.sqrt(3.0 / _fan("he_uniform", tensor.shape, mode))
    return _fill(tensor, _rng(rng).uniform(-bound, bound, size=tensor.shape))


def xavier_uniform(tensor, gain=1.0, rng=None):
    """Glorot / Xavier uniform init: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out))."""
    _check_tensor("xavier_uniform", tensor)
    fan_in, fan_out = calculate_fans(tensor.shape, "xavier_uniform")
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _fill(tensor, _rng(rng).uniform(-bound, bound, size=tensor.shape))


def xavier_normal(tensor, gain=1.0, rng=None):
    """Glorot / Xavier normal init: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    _check_tensor("xavier_normal", tensor)
    fan_in, fan_out = calculate_fans(tensor.shape, "xavier_normal")
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _fill(tensor, _rng(rng).normal(0.0, std, size=tensor.shape))


def normal(tensor, mean=0.0, std=0.01, rng=None):
    """N(mean, std^2), Caffe's "gaussian" filler (DeepLab initialises its classifier so)."""
    _check_tensor("normal", tensor)
    if not std >= 0:
        raise ValueError(f"normal: std must be >= 0; got {std}")
    return _fill(tensor, _rng(rng).normal(mean, std, size=tensor.shape))


def uniform(tensor, low=0.0, high=1.0, rng=None):
    """U(low, high)."""
    _check_tensor("uniform", tensor)
    if not high >= low:
        raise ValueError(f"uniform: expected low <= high; got low={low}, high={high}")
    return _fill(tensor, _rng(rng).uniform(low, high, size=tensor.shape))


def zeros(tensor):
    """Fill with 0 (biases)."""
    _check_tensor("zeros", tensor)
    return _fill(tensor, np.zeros(tensor.shape))


def constant(tensor, value):
    """Fill with ``value``."""
    _check_tensor("constant", tensor)
    return _fill(tensor, np.full(tensor.shape, float(value)))
