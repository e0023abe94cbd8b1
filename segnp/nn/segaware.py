"""Segmentation-aware layers (Secs. 3.2 and 3.4): the convolution of Eq. 7 and the
bilateral filter of Eq. 4, each with a learnable mask hardness lam (Eq. 3).

**The lam rule.**  lam is a ``Parameter`` whose ``constraint`` clips it at 0: optimizers
take their step on the unconstrained value and then call ``apply_constraint()``, so lam
stays >= 0 (projected gradient descent).  The gradient of lam is that of
``m = exp(-lam * d)``, ``-sum(gm * d * m)``, which at lam = 0 is ``-sum(gm * d)``: it
does not vanish, so a layer that starts at lam = 0 (a plain convolution, or a box
filter) can switch its mask on when that lowers the loss, and a step that would make
lam negative stops it at 0.
"""
import numbers

import numpy as np

from .. import functions as F
from ..autograd import Parameter
from .._validate import check_norm, int_at_least, odd_size
from ..window import pair
from . import init
from .layers import _ConvNd
from .module import Module

__all__ = ["SegAwareConv2d", "BilateralFilter", "clip_nonnegative"]


def clip_nonnegative(a):
    """The constraint of every lam: the projection onto lam >= 0."""
    return a.clip(0, None)


def _lam_parameter(fn, lam_init, dtype):
    if isinstance(lam_init, bool) or not isinstance(lam_init, numbers.Real) \
            or not lam_init >= 0:
        raise ValueError(f"{fn}: lam_init must be a float >= 0; got {lam_init!r}")
    return Parameter(np.asarray(lam_init, dtype=dtype), constraint=clip_nonnegative)


def _odd_ksize(fn, name, value):
    if isinstance(value, (tuple, list)):
        a, b = pair(value, fn, name, 1)
        if a != b:
            raise ValueError(f"{fn}: {name} must be square (one odd int); got {value!r}")
        value = a
    return odd_size(fn, name, value)


class SegAwareConv2d(_ConvNd):
    """Segmentation-aware convolution (Eq. 7): ``forward(x, e)`` ->
    ``F.segaware_conv2d(x, e, weight, bias, lam, ...)``.

    x (N, C, H, W), e (N, D, H, W) embeddings at x's resolution -> y (N, F, OH, OW).
    weight (F, C, k, k) with k odd, bias (F,) zeros, lam () >= 0 (see the module
    docstring for how it is kept so).  With lam = 0 the layer is a plain convolution
    (``normalize=False``) or one divided by its number of valid taps (``normalize=True``).

    Init: the weight is He-normal (fan_in, ReLU gain), multiplied by k*k when
    ``normalize`` is True: Eq. 7 then divides by the k*k valid taps of an interior
    window, and the product starts the layer as the He-initialised convolution.  (To
    convert a trained ``Conv2d`` to ``normalize=True``, multiply its weight by k*k.)
    """

    _settings = ("stride", "padding", "dilation", "norm", "normalize")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=None,
                 dilation=1, bias=True, norm="l1", normalize=True, lam_init=0.0,
                 dtype=np.float32, rng=None):
        fn = "SegAwareConv2d"
        k = _odd_ksize(fn, "kernel_size", kernel_size)
        super().__init__(fn, in_channels, out_channels, k, stride, padding, dilation, bias,
                         dtype, rng, gain=init.RELU_GAIN * (k * k if normalize else 1))
        self.norm = check_norm(fn, norm)
        self.normalize = bool(normalize)
        self.lam = _lam_parameter(fn, lam_init, self.weight.dtype)

    def forward(self, x, e):
        return F.segaware_conv2d(x, e, self.weight, self.bias, self.lam, self.stride,
                                 self.padding, self.dilation, self.norm, self.normalize)


class _LamWindow(Module):
    """The common part of the layers whose only parameter is lam: an odd square window,
    its dilation and the distance norm of Eq. 3 (BilateralFilter, SegAwareAvgPool2d).
    ``_settings`` names the attributes ``extra_repr`` shows, as in ``layers._ConvNd``."""

    def __init__(self, fn, ksize, dilation, norm, lam_init, dtype):
        super().__init__()
        self.ksize = _odd_ksize(fn, "ksize", ksize)
        self.dilation = pair(dilation, fn, "dilation", 1)
        self.norm = check_norm(fn, norm)
        self.lam = _lam_parameter(fn, lam_init, np.dtype(dtype))

    def extra_repr(self):
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in self._settings)


class BilateralFilter(_LamWindow):
    """Segmentation-aware bilateral filter (Eq. 4): ``forward(x, e)`` ->
    ``F.segaware_bilateral(x, e, lam, ksize, dilation, norm, repeat)``.

    x (N, C, H, W), e (N, D, H, W) -> y (N, C, H, W), every channel smoothed with the
    same mask, ``repeat`` times (Table 1's x2 and x4 variants).  lam () >= 0 is the
    only parameter (see the module docstring); lam = 0 is the box filter.
    """

    _settings = ("ksize", "dilation", "norm", "repeat", "include_center")

    def __init__(self, ksize=9, dilation=1, norm="l1", repeat=1, lam_init=1.0,
                 include_center=True, dtype=np.float32):
        super().__init__("BilateralFilter", ksize, dilation, norm, lam_init, dtype)
        self.repeat = int_at_least("BilateralFilter", "repeat", repeat, 1)
        self.include_center = bool(include_center)

    def forward(self, x, e):
        return F.segaware_bilateral(x, e, self.lam, self.ksize, self.dilation, self.norm,
                                    self.repeat, self.include_center)
