"""im2col and col2im on NumPy (Sec. 4.2: "exactly the way Caffe realizes convolution").

im2col copies x into a zero-bordered canvas and reads all windows at once as one strided
view of it.  col2im loops over the KH*KW taps: for each tap the output positions whose
input pixel lies inside the image form one rectangle, and the pixels they read form one
strided slice of x, so a tap costs a single vectorised add and no padded buffer or crop
is needed.  Both return C-contiguous arrays.
"""
import numpy as np

from ...window import conv_geometry
from ..._validate import check_ndim

__all__ = ["im2col", "col2im"]


def _tap_span(t, S, P, D, size, O):
    """Outputs ``lo <= o < hi`` whose input index ``o*S - P + t*D`` lies in [0, size),
    and the input slice they read (None when the tap never falls inside the image)."""
    off = t * D - P
    lo = max(0, -(off // S))
    hi = min(O, (size - 1 - off) // S + 1)
    if hi <= lo:
        return lo, lo, None
    start = lo * S + off
    return lo, hi, slice(start, start + (hi - lo - 1) * S + 1, S)


def _taps(size, ksize, stride, padding, dilation, out):
    """Yield ``(i, j, out_rows, out_cols, in_rows, in_cols)`` for each tap that touches
    the image; in_rows/in_cols are None for a tap that lies wholly in the padding."""
    (H, W), (KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW) = (
        size, ksize, stride, padding, dilation, out)
    for i in range(KH):
        lo_h, hi_h, rows = _tap_span(i, SH, PH, DH, H, OH)
        for j in range(KW):
            lo_w, hi_w, cols = _tap_span(j, SW, PW, DW, W, OW)
            inside = rows is not None and cols is not None
            yield (i, j, slice(lo_h, hi_h), slice(lo_w, hi_w),
                   rows if inside else None, cols if inside else None)


def im2col(x, ksize, stride=1, padding=0, dilation=1):
    """Unfold windows: x (N, C, H, W) -> cols (N, C, KH, KW, OH, OW).

    ``cols[n, c, i, j, oh, ow] = x[n, c, oh*SH - PH + i*DH, ow*SW - PW + j*DW]``, 0 where
    that index falls in the padding.  ``ksize``, ``stride``, ``padding`` and ``dilation``
    are ints or (h, w) pairs.

    x is copied once into a zero-bordered canvas that holds every window; cols is then
    one strided view of the canvas, (N, C, KH, KW, OH, OW), copied in a single call.
    One vectorised copy over all taps beats KH*KW per-tap copies on the small maps of a
    CPU network, where each call's fixed cost is comparable to its work.
    """
    check_ndim("im2col", "x", x, "(N, C, H, W)")
    N, C, H, W = x.shape
    k, s, p, d, o = conv_geometry("im2col", H, W, ksize, stride, padding, dilation)
    canvas = _canvas(x, k, s, p, d, o)
    sn, sc, sh, sw = canvas.strides
    view = np.lib.stride_tricks.as_strided(
        canvas, (N, C) + k + o, (sn, sc, sh * d[0], sw * d[1], sh * s[0], sw * s[1]),
        writeable=False)
    cols = np.empty((N, C) + k + o, dtype=x.dtype)
    np.copyto(cols, view)
    return cols


def _canvas(x, k, s, p, d, o):
    """x placed at (PH, PW) in a zero canvas of the (OH-1)*SH + (KH-1)*DH + 1 rows (likewise
    columns) that the windows span; rows and columns of x no window reads are left out."""
    N, C, H, W = x.shape
    EH = (o[0] - 1) * s[0] + (k[0] - 1) * d[0] + 1
    EW = (o[1] - 1) * s[1] + (k[1] - 1) * d[1] + 1
    if p == (0, 0):
        return x  # EH <= H and EW <= W: the windows read x itself
    h, w = min(H, EH - p[0]), min(W, EW - p[1])
    canvas = np.zeros((N, C, EH, EW), dtype=x.dtype)
    canvas[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x[:, :, :h, :w]
    return canvas


def col2im(cols, size, stride=1, padding=0, dilation=1):
    """Fold windows back: the adjoint of :func:`im2col`, summing overlapping taps.

    cols (N, C, KH, KW, OH, OW) -> x (N, C, H, W) with (H, W) = ``size``; entries that
    im2col would have read from the padding are dropped.
    """
    if cols.ndim != 6:
        raise ValueError(f"col2im: cols must be (N, C, KH, KW, OH, OW); got shape "
                         f"{tuple(cols.shape)}")
    N, C, KH, KW, OH, OW = cols.shape
    H, W = _size_pair(size)
    k, s, p, d, o = conv_geometry("col2im", H, W, (KH, KW), stride, padding, dilation)
    if o != (OH, OW):
        raise ValueError(f"col2im: cols hold a ({OH}, {OW}) output, but size ({H}, {W}) "
                         f"with this window gives {o}")
    x = np.zeros((N, C, H, W), dtype=cols.dtype)
    for i, j, orow, ocol, irow, icol in _taps((H, W), k, s, p, d, o):
        if irow is not None:
            x[:, :, irow, icol] += cols[:, :, i, j, orow, ocol]
    return x


def _size_pair(size):
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return int(size[0]), int(size[1])
    raise ValueError(f"col2im: size must be the image size (H, W); got {size!r}")
