"""Bilinear resizing as two 1-D interpolation matrices, applied with matmul.

Notation: x (N, C, H, W) -> y (N, C, OH, OW).  Bilinear interpolation is separable:
``y[n, c] = A_h @ x[n, c] @ A_w^T`` with A_h (OH, H) and A_w (OW, W), each row holding
the two weights of one output coordinate.  The backward pass is the exact adjoint,
``gx[n, c] = A_h^T @ gy[n, c] @ A_w``, so both directions are plain BLAS products.

Source coordinate of output index o, as ``torch.nn.functional.interpolate(mode='bilinear')``
with an explicit ``size``:

- ``align_corners=True``: ``src = o * (in - 1) / (out - 1)``, and 0 when out == 1;
- ``align_corners=False``: ``src = (o + 0.5) * in / out - 0.5``, clamped below at 0
  (half-pixel centres; the first and last outputs may extrapolate no further than the
  edge pixels).

Then ``i0 = floor(src)``, ``i1 = min(i0 + 1, in - 1)``, ``lam = src - i0`` and the
output is ``(1 - lam) * x[i0] + lam * x[i1]`` along each axis.  The weights are computed
in float64 and cast to x's dtype (PyTorch computes float32 weights for float32 input, so
float32 results can differ in the last bits).
"""
import numbers

import numpy as np

from ..autograd import Function
from .._validate import check_float, check_ndim
from ..window import pair

__all__ = ["resize_bilinear"]


def interp_matrix(in_size, out_size, align_corners=False):
    """The (out_size, in_size) float64 matrix of 1-D linear interpolation weights."""
    o = np.arange(out_size, dtype=np.float64)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = o * scale
    else:
        src = np.maximum((o + 0.5) * (in_size / out_size) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = src - i0
    A = np.zeros((out_size, in_size))
    # add.at, not assignment: at the last pixel i0 == i1 and both weights land there.
    np.add.at(A, (np.arange(out_size), i0), 1.0 - lam)
    np.add.at(A, (np.arange(out_size), i1), lam)
    return A


class ResizeBilinear(Function):
    def __init__(self, size, align_corners=False):
        self.size = pair(size, "resize_bilinear", "size", 1)
        if not isinstance(align_corners, (bool, np.bool_)):
            raise TypeError(f"resize_bilinear: align_corners must be a bool; got "
                            f"{align_corners!r}")
        self.align_corners = bool(align_corners)

    def _matrix(self, in_size, out_size, dtype):
        """interp_matrix on the backend's device, made and copied there once per shape."""
        align, dtype = self.align_corners, np.dtype(dtype)
        return self.backend.constant(
            ("interp_matrix", in_size, out_size, align, dtype.str),
            lambda: interp_matrix(in_size, out_size, align).astype(dtype))

    def forward(self, x):
        check_ndim("resize_bilinear", "x", x, "(N, C, H, W)")
        check_float("resize_bilinear", "x", x)
        N, C, H, W = x.shape
        OH, OW = self.size
        self.Ah = self._matrix(H, OH, x.dtype)
        self.Aw = self._matrix(W, OW, x.dtype)
        self.x_shape = x.shape
        xp = self.xp
        t = xp.matmul(xp.ascontiguousarray(x).reshape(N * C * H, W), self.Aw.T)
        y = xp.matmul(self.Ah, t.reshape(N * C, H, OW))
        return y.reshape(N, C, OH, OW)

    def backward(self, gy):
        xp = self.xp
        N, C, H, W = self.x_shape
        OH, OW = self.size
        gt = xp.matmul(self.Ah.T, xp.ascontiguousarray(gy).reshape(N * C, OH, OW))
        gx = xp.matmul(gt.reshape(N * C * H, OW), self.Aw)
        return gx.reshape(N, C, H, W)


def resize_bilinear(x, size, align_corners=False):
    """Resize x (N, C, H, W) to ``size`` = (OH, OW) (or one int for both) by bilinear
    interpolation, as ``F.interpolate(x, size, mode='bilinear', align_corners=...)``.

    Any output size >= 1 works, larger or smaller than the input; downsampling reads only
    the two pixels around each source coordinate (no anti-aliasing), as PyTorch does.
    """
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (int(size), int(size))
    return ResizeBilinear(size, align_corners)(x)
