"""im2col and col2im on NumPy (Sec. 4.2: "exactly the way Caffe realizes convolution").

Both loop over the KH*KW taps of the window; each tap is one strided slice of the
padded image, so the work per tap is a single vectorised copy (or add).
"""
import numpy as np

from ..window import conv_geometry
from ..._validate import check_ndim


def _tap_slices(i, j, stride, dilation, out):
    (SH, SW), (DH, DW), (OH, OW) = stride, dilation, out
    return (slice(i * DH, i * DH + SH * (OH - 1) + 1, SH),
            slice(j * DW, j * DW + SW * (OW - 1) + 1, SW))


def im2col(x, ksize, stride=1, padding=0, dilation=1):
    """Unfold windows: x (N, C, H, W) -> cols (N, C, KH, KW, OH, OW).

    ``cols[n, c, i, j, oh, ow] = x[n, c, oh*SH - PH + i*DH, ow*SW - PW + j*DW]``, 0 where
    that index falls in the padding.  ``ksize``, ``stride``, ``padding`` and ``dilation``
    are ints or (h, w) pairs.
    """
    check_ndim("im2col", "x", x, "(N, C, H, W)")
    N, C, H, W = x.shape
    (KH, KW), s, (PH, PW), d, o = conv_geometry("im2col", H, W, ksize, stride, padding, dilation)
    xp_ = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW))) if PH or PW else x
    cols = np.empty((N, C, KH, KW) + o, dtype=x.dtype)
    for i in range(KH):
        for j in range(KW):
            rs, cs = _tap_slices(i, j, s, d, o)
            cols[:, :, i, j] = xp_[:, :, rs, cs]
    return cols


def col2im(cols, size, stride=1, padding=0, dilation=1):
    """Fold windows back: the adjoint of :func:`im2col`, summing overlapping taps.

    cols (N, C, KH, KW, OH, OW) -> x (N, C, H, W) with (H, W) = ``size``.
    """
    if cols.ndim != 6:
        raise ValueError(f"col2im: cols must be (N, C, KH, KW, OH, OW); got shape {cols.shape}")
    N, C, KH, KW, OH, OW = cols.shape
    H, W = size
    _, s, (PH, PW), d, o = conv_geometry("col2im", H, W, (KH, KW), stride, padding, dilation)
    if o != (OH, OW):
        raise ValueError(f"col2im: cols hold a ({OH}, {OW}) output, but size {size} with this "
                         f"window gives {o}")
    x = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=cols.dtype)
    for i in range(KH):
        for j in range(KW):
            rs, cs = _tap_slices(i, j, s, d, o)
            x[:, :, rs, cs] += cols[:, :, i, j]
    return x[:, :, PH:PH + H, PW:PW + W]
