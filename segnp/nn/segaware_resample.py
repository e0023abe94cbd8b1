"""Segmentation-aware resampling layers (issue 22): the transposed convolution guided by
embeddings at the output resolution (joint upsampling) and the mask-weighted average
pooling.  Each has a learnable mask hardness lam >= 0 (Eq. 3), kept so as in
``segaware.py``."""
import numpy as np

from .. import functions as F
from .._validate import check_norm
from ..backends import get_backend
from ..window import pair
from .layers import ConvTranspose2d
from .module import Module
from .segaware import _LamWindow, _lam_parameter, _odd_ksize

__all__ = ["SegAwareAvgPool2d", "SegAwareConvTranspose2d", "SegAwareUpsample"]


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


class SegAwareAvgPool2d(_LamWindow):
    """Segmentation-aware average pooling: ``forward(x, e)`` ->
    ``F.segaware_avg_pool2d(x, e, ksize, lam, stride, padding, dilation, norm)``.

    x (N, C, H, W), e (N, D, H, W) -> y (N, C, OH, OW).  ``ksize`` odd (an even window
    has no centre pixel to measure Eq. 3 from), ``stride`` None means ``ksize``; lam ()
    >= 0 is the only parameter; lam = 0 is the average over the valid taps.
    """

    _settings = ("ksize", "stride", "padding", "dilation", "norm")

    def __init__(self, ksize=3, stride=None, padding=None, dilation=1, norm="l1",
                 lam_init=1.0, dtype=np.float32):
        fn = "SegAwareAvgPool2d"
        super().__init__(fn, ksize, dilation, norm, lam_init, dtype)
        self.stride = pair(self.ksize if stride is None else stride, fn, "stride", 1)
        self.padding = None if padding is None else pair(padding, fn, "padding", 0)

    def forward(self, x, e):
        return F.segaware_avg_pool2d(x, e, self.ksize, self.lam, self.stride, self.padding,
                                     self.dilation, self.norm)


# Added to the denominator of SegAwareUpsample: far below any sum of mask weights that
# float32 can hold, so that it only turns 0/0 (every weight underflowed) into 0.
_TINY = 1e-30


class SegAwareUpsample(Module):
    """Segmentation-aware bilinear upsampling by an integer ``factor`` (joint upsampling,
    issue 22): ``forward(x, e)``, x (N, C, h, w), e (N, D, H, W) at the output's size ->
    y (N, C, H, W).

    Each output pixel is the average of the samples whose bilinear (tent) weight
    reaches it, each weight also multiplied by the mask ``exp(-lam ||e[o] - e[p(i)]||)``
    of Eq. 3 between the pixel and the sample's position, and the weights renormalised::

        y = T(x) / T(1),   T = segaware_conv_transpose2d(., e, tent, normalize=False)

    (numerator and denominator in one call, the ones as an extra channel).  With lam = 0
    it is bilinear interpolation on the grid of x:

    - ``grid="point"``: sample i on output pixel ``factor * i`` (a stride-``factor``
      padded convolution's samples; ``models.grids.upsample_point``), h = ceil(H / f);
    - ``grid="block"``: sample i the mean of pixels [f i, f i + f) (average pooling;
      ``resize_bilinear`` with half-pixel centres), H = f h.

    The tent is fixed; lam () >= 0 is the only parameter.  Its mask reference p(i) is
    the sample's pixel (block grid: the pixel just above and left of the block centre).
    """

    def __init__(self, factor, grid="point", norm="l1", lam_init=1.0, dtype=np.float32):
        super().__init__()
        fn = "SegAwareUpsample"
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"{fn}: factor must be an int >= 1; got {factor!r}")
        if grid not in ("point", "block"):
            raise ValueError(f"{fn}: grid must be 'point' or 'block'; got {grid!r}")
        self.factor, self.grid = factor, grid
        self.norm = check_norm(fn, norm)
        self.lam = _lam_parameter(fn, lam_init, np.dtype(dtype))
        f = factor
        if grid == "point":  # taps -(f-1) .. f-1 around the sample, p(i) = f i
            self.ksize, self.padding = 2 * f - 1, f - 1
            offsets = np.arange(self.ksize) - (f - 1)
        else:  # 2f + 1 taps from f i - P, around the centre f i + (f - 1) / 2; P is the
            # padding with 2P - OP = f + 1, which gives H = f h
            self.ksize, self.padding = 2 * f + 1, (f + 2) // 2
            offsets = np.arange(self.ksize) - self.padding - (f - 1) / 2
        tent = np.clip(1 - np.abs(offsets) / f, 0, None)
        self.tent = np.outer(tent, tent)  # (k, k), weight of tap (ki, kj)

    def _output_padding(self, h, H):
        f, k, P = self.factor, self.ksize, self.padding
        fits = H == f * h if self.grid == "block" else h == -(-H // f)
        if not fits:
            want = f"H = {f} * {h}" if self.grid == "block" else f"ceil(H / {f}) = {h}"
            raise ValueError(f"SegAwareUpsample: a map of {h} samples does not upsample to "
                             f"{H} pixels on the {self.grid} grid (needs {want})")
        return H - ((h - 1) * f - 2 * P + k)

    def forward(self, x, e):
        from ..autograd import as_tensor
        x, e = as_tensor(x), as_tensor(e)
        if x.ndim != 4 or e.ndim != 4 or e.shape[0] != x.shape[0]:
            raise ValueError(f"SegAwareUpsample: x must be (N, C, h, w) and e (N, D, H, W) "
                             f"with the same N; got {x.shape} and {e.shape}")
        (N, C, h, w), (H, W) = x.shape, e.shape[2:]
        op = (self._output_padding(h, H), self._output_padding(w, W))
        xp = get_backend().xp
        ones = as_tensor(xp.ones((N, 1, h, w), dtype=x.dtype))
        eye = np.eye(C + 1, dtype=x.dtype)[:, :, None, None]
        weight = as_tensor(xp.asarray(eye * self.tent.astype(x.dtype)))
        z = F.segaware_conv_transpose2d(F.concat([x, ones], axis=1), e, weight, None, self.lam,
                                        self.factor, self.padding, op, 1, self.norm,
                                        normalize=False)
        return z[:, :C] / (z[:, C:] + _TINY)

    def extra_repr(self):
        return f"factor={self.factor}, grid={self.grid!r}, norm={self.norm!r}"
