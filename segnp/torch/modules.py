"""PyTorch twins of segnp's segmentation-aware modules (``segnp/nn/segaware.py``,
``segnp/nn/crf.py``), and :func:`from_segnp`.

Each twin takes the constructor arguments of its segnp module, with the same defaults
(``dtype`` may be a torch or a NumPy dtype; ``device`` is added), and builds that segnp
module to check them and to initialise: the weights are segnp's own initialisation
(He-normal, times k*k for a normalised convolution; lam, the CRF's weights and
bandwidths at their ``*_init``), drawn by a NumPy generator seeded from PyTorch's
generator, so ``torch.manual_seed`` makes a twin reproducible.  ``rng`` may be a
``torch.Generator`` (seeds the NumPy one) or a ``numpy.random.Generator`` (then the
weights are exactly those of the segnp module built with the same generator).

**Constraints.**  segnp's optimizers project lam onto lam >= 0, and the CRF's
bandwidths onto sigma >= 0.1, after each step.  PyTorch's optimizers do not, so the
twins use the projected value in the forward pass and pass the gradient to the stored
value unchanged: the layer computes with max(lam, 0) and its gradient there, as
segnp's does, while the stored value may stray below the bound.
"""
import numpy as np
import torch

from .. import nn as snn
from .functional import (segaware_bilateral, segaware_conv2d,
                         segaware_conv_transpose2d, segaware_crf)

__all__ = ["SegAwareConv2d", "SegAwareConvTranspose2d", "BilateralFilter", "SegAwareCRF",
           "from_segnp"]

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _numpy_dtype(fn, dtype):
    """A torch dtype as NumPy's; segnp's module checks any other ``dtype``."""
    if not isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _NUMPY_DTYPES:
        raise TypeError(f"{fn}: dtype must be floating (float32 or float64); got {dtype}")
    return _NUMPY_DTYPES[dtype]


def _numpy_rng(rng):
    if rng is None or isinstance(rng, torch.Generator):
        seed = torch.randint(0, 2 ** 62, (), generator=rng).item()
        return np.random.default_rng(seed)
    return rng


def _projected(p, low):
    """max(p, low) in the forward pass, the identity in the backward pass."""
    return p + (p.clamp(min=low) - p).detach()


class _Twin(torch.nn.Module):
    """A PyTorch module holding copies of a segnp module's parameters (in its order)
    and its hyper-parameters (``_CONFIG``)."""

    _SEGNP = None
    _CONFIG = ()

    def _adopt(self, module, device=None):
        for name in self._CONFIG:
            setattr(self, name, getattr(module, name))
        # segnp's extra_repr, borrowed below, reads the settings its conv base names
        self._settings = getattr(module, "_settings", ())
        for name, p in module._parameters.items():
            value = None if p is None else torch.nn.Parameter(
                torch.from_numpy(np.array(p.numpy(), copy=True)).to(device))
            self.register_parameter(name, value)

    @classmethod
    def _from(cls, module, device=None):
        twin = cls.__new__(cls)
        torch.nn.Module.__init__(twin)
        twin._adopt(module, device)
        return twin

    def extra_repr(self):
        return self._SEGNP.extra_repr(self)


class SegAwareConv2d(_Twin):
    """Twin of :class:`segnp.nn.SegAwareConv2d`: ``forward(x, e)`` ->
    :func:`segnp.torch.segaware_conv2d` with ``weight`` (F, C, k, k), ``bias`` (F,) or
    None and ``lam`` (), all ``torch.nn.Parameter``."""

    _SEGNP = snn.SegAwareConv2d
    _CONFIG = ("in_channels", "out_channels", "kernel_size", "stride", "padding",
               "dilation", "norm", "normalize")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=None,
                 dilation=1, bias=True, norm="l1", normalize=True, lam_init=0.0,
                 dtype=torch.float32, rng=None, device=None):
        super().__init__()
        self._adopt(snn.SegAwareConv2d(
            in_channels, out_channels, kernel_size, stride, padding, dilation, bias, norm,
            normalize, lam_init, _numpy_dtype("SegAwareConv2d", dtype), _numpy_rng(rng)),
            device)

    def forward(self, x, e):
        return segaware_conv2d(x, e, self.weight, self.bias, _projected(self.lam, 0.0),
                               self.stride, self.padding, self.dilation, self.norm,
                               self.normalize)


class SegAwareConvTranspose2d(_Twin):
    """Twin of :class:`segnp.nn.SegAwareConvTranspose2d`: ``forward(x, e)`` ->
    :func:`segnp.torch.segaware_conv_transpose2d` with ``weight`` (C, F, k, k),
    ``bias`` (F,) or None and ``lam`` (), all ``torch.nn.Parameter``; e at the output's
    resolution."""

    _SEGNP = snn.SegAwareConvTranspose2d
    _CONFIG = ("in_channels", "out_channels", "kernel_size", "stride", "padding",
               "output_padding", "dilation", "norm", "normalize")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, dilation=1, bias=True, norm="l1", normalize=True,
                 lam_init=0.0, dtype=torch.float32, rng=None, device=None):
        super().__init__()
        self._adopt(snn.SegAwareConvTranspose2d(
            in_channels, out_channels, kernel_size, stride, padding, output_padding,
            dilation, bias, norm, normalize, lam_init,
            _numpy_dtype("SegAwareConvTranspose2d", dtype), _numpy_rng(rng)), device)

    def forward(self, x, e):
        return segaware_conv_transpose2d(x, e, self.weight, self.bias,
                                         _projected(self.lam, 0.0), self.stride,
                                         self.padding, self.output_padding, self.dilation,
                                         self.norm, self.normalize)

    def extra_repr(self):
        # segnp's reads super(), which needs a segnp module: its two parts, named
        return (snn.layers._ConvNd.extra_repr(self)
                + f", norm={self.norm!r}, normalize={self.normalize}")


class BilateralFilter(_Twin):
    """Twin of :class:`segnp.nn.BilateralFilter`: ``forward(x, e)`` ->
    :func:`segnp.torch.segaware_bilateral`; ``lam`` () is the one parameter."""

    _SEGNP = snn.BilateralFilter
    _CONFIG = ("ksize", "dilation", "norm", "repeat", "include_center")

    def __init__(self, ksize=9, dilation=1, norm="l1", repeat=1, lam_init=1.0,
                 include_center=True, dtype=torch.float32, device=None):
        super().__init__()
        self._adopt(snn.BilateralFilter(ksize, dilation, norm, repeat, lam_init,
                                        include_center, _numpy_dtype("BilateralFilter", dtype)),
                    device)

    def forward(self, x, e):
        return segaware_bilateral(x, e, _projected(self.lam, 0.0), self.ksize,
                                  self.dilation, self.norm, self.repeat, self.include_center)


class SegAwareCRF(_Twin):
    """Twin of :class:`segnp.nn.SegAwareCRF`: ``forward(U, e)`` ->
    :func:`segnp.torch.segaware_crf`, with parameters lam, w_b, w_s, spatial_sigma,
    compat and (when ``bilateral_sigma_init`` is given) bilateral_sigma."""

    _SEGNP = snn.SegAwareCRF
    _CONFIG = ("num_classes", "bilateral_ksize", "bilateral_dilation", "spatial_ksize",
               "spatial_dilation", "iterations", "norm", "filter_weights")

    def __init__(self, num_classes, bilateral_ksize=13, bilateral_dilation=9,
                 spatial_ksize=5, iterations=2, spatial_dilation=1, norm="l1",
                 lam_init=1.0, w_b_init=1.0, w_s_init=1.0, spatial_sigma_init=1.0,
                 dtype=torch.float32, bilateral_sigma_init=None, filter_weights="scalar",
                 device=None):
        super().__init__()
        self._adopt(snn.SegAwareCRF(
            num_classes, bilateral_ksize, bilateral_dilation, spatial_ksize, iterations,
            spatial_dilation, norm, lam_init, w_b_init, w_s_init, spatial_sigma_init,
            _numpy_dtype("SegAwareCRF", dtype), bilateral_sigma_init, filter_weights),
            device)

    def _adopt(self, module, device=None):
        super()._adopt(module, device)
        if "bilateral_sigma" not in self._parameters:  # None, as in segnp's module
            self.register_parameter("bilateral_sigma", None)

    def forward(self, U, e):
        if U.ndim == 4 and U.shape[1] != self.num_classes:
            raise ValueError(f"SegAwareCRF: U must be (N, L, H, W) with L = num_classes = "
                             f"{self.num_classes}; got shape {tuple(U.shape)}")
        sigma_min = snn.crf.SIGMA_MIN
        bilateral_sigma = self.bilateral_sigma
        if bilateral_sigma is not None:
            bilateral_sigma = _projected(bilateral_sigma, sigma_min)
        return segaware_crf(U, e, _projected(self.lam, 0.0), self.w_b, self.w_s,
                            _projected(self.spatial_sigma, sigma_min), self.compat,
                            self.bilateral_ksize, self.bilateral_dilation,
                            self.spatial_ksize, self.spatial_dilation, self.iterations,
                            self.norm, bilateral_sigma)


_TWINS = {snn.SegAwareConv2d: SegAwareConv2d,
          snn.SegAwareConvTranspose2d: SegAwareConvTranspose2d,
          snn.BilateralFilter: BilateralFilter, snn.SegAwareCRF: SegAwareCRF}


def from_segnp(module, device=None):
    """The PyTorch twin of a (trained) segnp module, holding copies of its parameters
    (on ``device``, default the CPU) and its hyper-parameters: its forward gives what
    the segnp module's does."""
    twin = _TWINS.get(type(module))
    if twin is None:
        names = ", ".join(f"segnp.nn.{c.__name__}" for c in _TWINS)
        raise TypeError(f"from_segnp: module must be one of {names}; got "
                        f"{type(module).__module__}.{type(module).__name__}")
    return twin._from(module, device)
