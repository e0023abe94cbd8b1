"""Moving maps between the resolutions of a network without shifting them.

A feature map at stride s samples the input on one of two grids, and resizing it back
is exact only if the interpolation knows which:

* **block grid**: sample i is the centre of input block [s i, s i + s), at
  ``s i + (s - 1) / 2``.  Un-padded s x s pooling (VGG's 2x2 pools) makes it.
  Half-pixel bilinear resizing (``align_corners=False``) assumes exactly this grid
  when the output is s times the input, so :func:`upsample_block` resizes to
  (s h, s w) and crops to the wanted size (ceil-mode pooling left a partial last block).
* **point grid**: sample i sits on input pixel ``s i``.  Padded windows with stride s
  make it: a 3x3 stride-2 window with padding 1 (DeepLab's pools, FlowNet's strided
  convolutions) is centred on pixel 2 i, and gives ceil(H / s) samples.
  :func:`upsample_point` interpolates at ``y / s`` (``align_corners=True`` onto
  s (h - 1) + 1 pixels), then repeats the last row and column to reach the wanted size;
  :func:`subsample_point` picks every s-th pixel, which lands on the samples exactly.

Upsampling a point-grid map with plain half-pixel resizing would shift it by
(s - 1) / 2 input pixels: 3.5 pixels at output stride 8, enough to blur every boundary
that the segmentation-aware layers sharpen.
"""
import numpy as np

from .. import functions as F

__all__ = ["upsample_block", "upsample_point", "subsample_point"]


def _check(fn, x, stride, size):
    if x.ndim != 4:
        raise ValueError(f"{fn}: x must be (N, C, h, w); got shape {tuple(x.shape)}")
    H, W = size
    h, w = x.shape[2:]
    if not (-(-H // stride) == h and -(-W // stride) == w):
        raise ValueError(f"{fn}: a map of ({h}, {w}) samples at stride {stride} does not "
                         f"cover ({H}, {W}); expected ({-(-H // stride)}, {-(-W // stride)})")


def upsample_block(x, stride, size):
    """Block-grid map x (N, C, h, w) at ``stride`` -> (N, C, H, W) with h = ceil(H / s)."""
    H, W = size
    _check("upsample_block", x, stride, size)
    h, w = x.shape[2:]
    y = F.resize_bilinear(x, (stride * h, stride * w))
    if (stride * h, stride * w) != (H, W):
        y = y[:, :, :H, :W]
    return y


def _extend(y, axis, size):
    # clamp beyond the last sample, as bilinear resizing does at its edges
    n = y.shape[axis]
    if n == size:
        return y
    idx = np.minimum(np.arange(size), n - 1)
    return y[:, :, idx] if axis == 2 else y[:, :, :, idx]


def upsample_point(x, stride, size):
    """Point-grid map x (N, C, h, w) at ``stride`` -> (N, C, H, W), h = ceil(H / s):
    pixel (y, x) gets x's bilinear value at (y / s, x / s), clamped at the last sample."""
    H, W = size
    _check("upsample_point", x, stride, size)
    h, w = x.shape[2:]
    y = F.resize_bilinear(x, (stride * (h - 1) + 1, stride * (w - 1) + 1), align_corners=True)
    return _extend(_extend(y, 2, H), 3, W)


def subsample_point(x, stride):
    """(N, C, H, W) -> (N, C, ceil(H / s), ceil(W / s)): the pixels of the point grid."""
    if stride == 1:
        return x
    return x[:, :, ::stride, ::stride]
