"""Segmentation-aware resampling layers (issue 22): the transposed convolution guided by
embeddings at the output resolution (joint upsampling) and the mask-weighted average
pooling.  Each has a learnable mask hardness lam >= 0 (Eq. 3), kept so as in
``segaware.py``."""
import numpy as np

from .. import functions as F
from .._validate import check_norm
from ..window import pair
from .layers import ConvTranspose2d
from .module import Module
from .segaware import _lam_parameter, _odd_ksize

__all__ = ["SegAwareAvgPool2d", "SegAwareConvTranspose2d"]


class SegAwareConvTranspose2d(ConvTranspose2d):
    """Segmentation-aware transposed convolution: ``forward(x, e)`` ->
    ``F.segaware_conv_transpose2d(x, e, weight, bias, lam, ...)``.

    x (N, C, H, W), e (N, D, OH, OW) embeddings at the output's resolution ->
    y (N, F, OH, OW) with OH as in :class:`ConvTranspose2d`.  weight (C, F, k, k) with
    k odd, bias (F,) zeros, lam () >= 0.  ``padding`` is at most ``dilation*(k//2)``;
    x2 upsampling with k = 5 is ``stride=2, padding=2, output_padding=1``.

    Init: He-normal as :class:`ConvTranspose2d`, times ``k*k / (SH*SW)`` when
    ``normalize``: each output pixel is then reached by about that many taps, whose
    count (lam = 0) Eq. 7's normalisation divides by, so the layer starts at the scale
    of the plain transposed convolution.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, dilation=1, bias=True, norm="l1", normalize=True,
                 lam_init=0.0, dtype=np.float32, rng=None):
        fn = "SegAwareConvTranspose2d"
        k = _odd_ksize(fn, "kernel_size", kernel_size)
        super().__init__(in_channels, out_channels, k, stride, padding, output_padding,
                         dilation, bias, dtype, rng)
        half = k // 2
        if any(p > d * half for p, d in zip(self.padding, self.dilation)):
            raise ValueError(f"{fn}: padding must be at most dilation*(kernel_size//2) = "
                             f"{tuple(d * half for d in self.dilation)}; got {self.padding}")
        self.norm = check_norm(fn, norm)
        self.normalize = bool(normalize)
        if self.normalize:
            self.weight.data *= k * k / (self.stride[0] * self.stride[1])
        self.lam = _lam_parameter(fn, lam_init, self.weight.dtype)

    def forward(self, x, e):
        return F.segaware_conv_transpose2d(x, e, self.weight, self.bias, self.lam, self.stride,
                                           self.padding, self.output_padding, self.dilation,
                                           self.norm, self.normalize)

    def extra_repr(self):
        return super().extra_repr() + f", norm={self.norm!r}, normalize={self.normalize}"


class SegAwareAvgPool2d(Module):
    """Segmentation-aware average pooling: ``forward(x, e)`` ->
    ``F.segaware_avg_pool2d(x, e, ksize, lam, stride, padding, dilation, norm)``.

    x (N, C, H, W), e (N, D, H, W) -> y (N, C, OH, OW).  ``ksize`` odd (an even window
    has no centre pixel to measure Eq. 3 from), ``stride`` None means ``ksize``; lam ()
    >= 0 is the only parameter; lam = 0 is the average over the valid taps.
    """

    def __init__(self, ksize=3, stride=None, padding=None, dilation=1, norm="l1",
                 lam_init=1.0, dtype=np.float32):
        super().__init__()
        fn = "SegAwareAvgPool2d"
        self.ksize = _odd_ksize(fn, "ksize", ksize)
        self.stride = pair(self.ksize if stride is None else stride, fn, "stride", 1)
        self.padding = None if padding is None else pair(padding, fn, "padding", 0)
        self.dilation = pair(dilation, fn, "dilation", 1)
        self.norm = check_norm(fn, norm)
        self.lam = _lam_parameter(fn, lam_init, np.dtype(dtype))

    def forward(self, x, e):
        return F.segaware_avg_pool2d(x, e, self.ksize, self.lam, self.stride, self.padding,
                                     self.dilation, self.norm)

    def extra_repr(self):
        return (f"ksize={self.ksize}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, norm={self.norm!r}")
