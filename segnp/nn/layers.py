"""Standard layers: thin Modules that hold settings (and Parameters) and call ``segnp.functions``.

Shapes are NCHW throughout: x is (N, C, H, W), a convolution weight is (F, C, KH, KW).
"""
import numbers

import numpy as np

from .. import functions as F
from .._validate import positive_int
from ..autograd import Parameter
from ..window import pair
from . import init
from .module import Module

__all__ = ["Conv2d", "ConvTranspose2d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Identity",
           "MaxPool2d", "AvgPool2d", "Dropout", "Upsample"]


def _float_dtype(fn, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{fn}: dtype must be floating (float32 or float64); got {dtype}")
    return dtype


class _ConvNd(Module):
    """What the convolution modules share, as PyTorch's ``_ConvNd``: the checked channel
    counts and window settings, a He-normal weight, a bias of zeros, and ``extra_repr``.

    ``kernel_size`` comes normalised by the subclass (a (KH, KW) pair, or the one odd
    int of a segmentation-aware window); ``padding`` None (the segmentation-aware
    default) is kept.  The weight is (F, C, KH, KW), or (C, F, KH, KW) with
    ``transposed``, where He's fan is the layout's fan_out; ``gain`` scales He's std.
    ``_settings`` names the attributes ``extra_repr`` shows after kernel_size.
    """

    _settings = ("stride", "padding", "dilation")

    def __init__(self, fn, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 bias, dtype, rng, transposed=False, gain=init.RELU_GAIN):
        super().__init__()
        self.in_channels = positive_int(fn, "in_channels", in_channels)
        self.out_channels = positive_int(fn, "out_channels", out_channels)
        self.kernel_size = kernel_size
        self.stride = pair(stride, fn, "stride", 1)
        self.padding = None if padding is None else pair(padding, fn, "padding", 0)
        self.dilation = pair(dilation, fn, "dilation", 1)
        dtype = _float_dtype(fn, dtype)
        k = kernel_size if isinstance(kernel_size, tuple) else (kernel_size, kernel_size)
        channels = (self.in_channels, self.out_channels)
        shape = (channels if transposed else channels[::-1]) + k
        self.weight = init.he_normal(Parameter(np.zeros(shape, dtype)),
                                     mode="fan_out" if transposed else "fan_in", gain=gain,
                                     rng=rng)
        self.register_parameter(
            "bias", Parameter(np.zeros(self.out_channels, dtype)) if bias else None)

    def extra_repr(self):
        s = ", ".join([f"{self.in_channels}, {self.out_channels}",
                       f"kernel_size={self.kernel_size!r}"]
                      + [f"{name}={getattr(self, name)!r}" for name in self._settings])
        return s + ("" if self.bias is not None else ", bias=False")


class Conv2d(_ConvNd):
    """2-d convolution (cross-correlation, as in every framework): y = W * x + b.

    weight: (F, C, KH, KW), He-normal (fan_in, ReLU gain), Caffe's "msra" filler.
    bias: (F,), zeros (PyTorch draws it uniformly instead; zeros is the Caffe default).
    x: (N, C, H, W) -> y: (N, F, OH, OW) with OH = (H + 2 PH - DH (KH - 1) - 1) // SH + 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, bias=True, dtype=np.float32, rng=None):
        fn = "Conv2d"
        super().__init__(fn, in_channels, out_channels, pair(kernel_size, fn, "kernel_size", 1),
                         stride, padding, dilation, bias, dtype, rng)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)


class ConvTranspose2d(_ConvNd):
    """Transposed 2-d convolution (FlowNet's "deconvolution"): the adjoint of a Conv2d
    in its input, plus a bias (see :func:`segnp.functions.conv_transpose2d`).

    weight: (C, F, KH, KW), in channels first as in PyTorch and Caffe; He-normal over
    C*KH*KW (the products summed into one output pixel at stride 1: the fan_out of this
    layout).  bias: (F,), zeros.
    x: (N, C, H, W) -> y: (N, F, OH, OW) with OH = (H - 1) SH - 2 PH + DH (KH - 1) + OPH + 1.
    """

    _settings = ("stride", "padding", "output_padding", "dilation")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, dilation=1, bias=True, dtype=np.float32, rng=None):
        fn = "ConvTranspose2d"
        super().__init__(fn, in_channels, out_channels, pair(kernel_size, fn, "kernel_size", 1),
                         stride, padding, dilation, bias, dtype, rng, transposed=True)
        self.output_padding = pair(output_padding, fn, "output_padding", 0)
        if any(op >= s for op, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"{fn}: output_padding must be smaller than stride "
                             f"{self.stride}; got {self.output_padding}")

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.dilation)


class ReLU(Module):
    """max(x, 0), elementwise."""

    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    """x for x > 0, slope * x otherwise."""

    def __init__(self, slope=0.01):
        super().__init__()
        self.slope = float(slope)

    def forward(self, x):
        return F.leaky_relu(x, self.slope)

    def extra_repr(self):
        return f"slope={self.slope}"


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Identity(Module):
    """Returns its input: a placeholder where a switch turns a layer off."""

    def forward(self, x):
        return x


class MaxPool2d(Module):
    """Max over KH x KW windows; ``stride`` defaults to ``kernel_size`` (PyTorch, Caffe)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """Mean over KH x KW windows (``count_include_pad`` as in PyTorch)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, ceil_mode={self.ceil_mode}")


class Dropout(Module):
    """Zeroes each element with probability p while training and scales the rest by
    1 / (1 - p) (inverted dropout); the identity after ``eval()``.

    p must be in [0, 1): unlike PyTorch, p = 1 (a layer that outputs only zeros) is
    refused as a likely mistake; ``F.dropout`` still accepts it."""

    def __init__(self, p=0.5):
        super().__init__()
        if not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be a float in [0, 1); got {p!r}")
        self.p = float(p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Upsample(Module):
    """Bilinear resize of (N, C, H, W) to (N, C, OH, OW).

    Give exactly one of ``size`` (an int or (OH, OW)) and ``scale_factor`` (a number or
    a pair); with a scale factor, OH = floor(H * scale).  The interpolation then maps
    output to input through the sizes, like PyTorch with ``recompute_scale_factor=True``
    (it differs from PyTorch's default only when H * scale is not an integer).
    Only bilinear interpolation exists: PyTorch's ``Upsample`` defaults to
    ``mode='nearest'``, so compare with ``mode='bilinear'`` there.
    """

    def __init__(self, size=None, scale_factor=None, align_corners=False):
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ValueError(f"Upsample: give exactly one of size and scale_factor; got "
                             f"size={size!r}, scale_factor={scale_factor!r}")
        self.size = None if size is None else pair(size, "Upsample", "size", 1)
        if scale_factor is not None:
            sf = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) \
                else (scale_factor, scale_factor)
            if len(sf) != 2 or not all(isinstance(s, numbers.Real) and s > 0 for s in sf):
                raise ValueError(f"Upsample: scale_factor must be a positive number or a "
                                 f"pair of them; got {scale_factor!r}")
            scale_factor = (float(sf[0]), float(sf[1]))
        self.scale_factor = scale_factor
        self.align_corners = bool(align_corners)

    def output_size(self, H, W):
        """(OH, OW) for an input of H x W."""
        if self.size is not None:
            return self.size
        OH = int(np.floor(H * self.scale_factor[0]))
        OW = int(np.floor(W * self.scale_factor[1]))
        if OH < 1 or OW < 1:
            raise ValueError(f"Upsample: scale_factor {self.scale_factor} turns an input of "
                             f"size ({H}, {W}) into an empty output ({OH}, {OW})")
        return OH, OW

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"Upsample: x must be (N, C, H, W); got shape {x.shape}")
        return F.resize_bilinear(x, self.output_size(x.shape[2], x.shape[3]),
                                 self.align_corners)

    def extra_repr(self):
        what = f"size={self.size}" if self.size is not None \
            else f"scale_factor={self.scale_factor}"
        return f"{what}, align_corners={self.align_corners}"
