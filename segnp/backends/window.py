"""Window arithmetic shared by every backend: pairs, output sizes, valid taps.

Conventions (issue 3): K = KH*KW taps in row-major order; for an odd window tap K//2
is the centre; the default padding of the segmentation-aware ops is
``dilation * (ksize // 2)``; the centre of output position o is input pixel o*stride.
"""
import numbers

import numpy as np


def pair(value, fn, name, minimum=None):
    """Return ``value`` as a pair of Python ints, checking it is >= ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{fn}: {name} must be an int or a pair of ints; got {value!r}")
        a, b = value
    else:
        a = b = value
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{fn}: {name} must be an int or a pair of ints; got {value!r}")
    a, b = int(a), int(b)
    if minimum is not None and (a < minimum or b < minimum):
        raise ValueError(f"{fn}: {name} must be >= {minimum}; got {value!r}")
    return a, b


def out_size(size, k, s, p, d):
    """Output length of a window of k taps, stride s, padding p, dilation d."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def conv_geometry(fn, H, W, ksize, stride, padding, dilation):
    """Normalise conv-style window arguments and return them with (OH, OW).

    Raises ValueError when the window does not fit the padded input.
    """
    KH, KW = pair(ksize, fn, "ksize", 1)
    SH, SW = pair(stride, fn, "stride", 1)
    PH, PW = pair(padding, fn, "padding", 0)
    DH, DW = pair(dilation, fn, "dilation", 1)
    OH, OW = out_size(H, KH, SH, PH, DH), out_size(W, KW, SW, PW, DW)
    if OH < 1 or OW < 1:
        raise ValueError(
            f"{fn}: a {KH}x{KW} window with dilation ({DH}, {DW}) and padding ({PH}, {PW}) "
            f"does not fit an input of size ({H}, {W})")
    return (KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW)


def segaware_geometry(fn, H, W, ksize, stride=1, padding=None, dilation=1):
    """Like :func:`conv_geometry` for the segmentation-aware ops: ``ksize`` is one odd
    int (K = ksize**2) and ``padding=None`` means ``dilation * (ksize // 2)``."""
    if isinstance(ksize, bool) or not isinstance(ksize, numbers.Integral):
        raise TypeError(f"{fn}: ksize must be an odd int; got {ksize!r}")
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"{fn}: ksize must be odd and positive, so that the window has "
                         f"a centre tap; got {ksize}")
    DH, DW = pair(dilation, fn, "dilation", 1)
    if padding is None:
        padding = (DH * (ksize // 2), DW * (ksize // 2))
    return conv_geometry(fn, H, W, int(ksize), stride, padding, (DH, DW))


def tap_valid(H, W, ksize, stride, padding, dilation, include_center=True, dtype=np.float32):
    """(1, K, OH, OW) array: 1 where tap k of output o falls inside the H x W image.

    With ``include_center=False`` the centre tap (K//2, odd windows only) is 0 too.
    Arguments must already be normalised pairs (see :func:`conv_geometry`).
    """
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = ksize, stride, padding, dilation
    OH, OW = out_size(H, KH, SH, PH, DH), out_size(W, KW, SW, PW, DW)
    # Input row of tap (i, .) at output row o is o*SH - PH + i*DH.
    rows = np.arange(OH)[None, :] * SH - PH + np.arange(KH)[:, None] * DH  # (KH, OH)
    cols = np.arange(OW)[None, :] * SW - PW + np.arange(KW)[:, None] * DW  # (KW, OW)
    rv = (rows >= 0) & (rows < H)
    cv = (cols >= 0) & (cols < W)
    valid = rv[:, None, :, None] & cv[None, :, None, :]  # (KH, KW, OH, OW)
    valid = valid.reshape(1, KH * KW, OH, OW).astype(dtype)
    if not include_center:
        valid[:, (KH * KW) // 2] = 0
    return valid
