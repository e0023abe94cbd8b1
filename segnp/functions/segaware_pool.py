"""Segmentation-aware average pooling (issue 22): the normalised, mask-weighted average
over each window, the bilateral filter of Eq. 4 taken with a stride.

Notation: x (N, C, H, W), e (N, D, H, W), K = ksize**2 taps, y (N, C, OH, OW)::

    y[n, c, o] = sum_k x[n, c, tap_k(o)] m[n, k, o] / (sum_k m[n, k, o] + NORM_EPS)

with ``m = exp(-lam ||e[tap_k(o)] - e[centre(o)]||)`` at taps inside the image (Eq. 3),
the centre of output o being pixel ``o * stride`` (the segmentation-aware window
convention, ``segnp.window``).  It is a composition, not a kernel of its own: the mask
(``SegAwareMask``, im2dist) and the filter (``Bilateral``, Eq. 4) already take any
stride on every backend, and with them it is the bilateral filter at stride 1 by
construction, with the same gradients to x, e and lam.

An even ``ksize`` is refused: the window would have no centre pixel, and Eq. 3 measures
every tap against the centre's embedding.  ``ksize=3, stride=2`` is the
segmentation-aware counterpart of a 2x2 pooling (each output centred on an even pixel,
its window reaching one pixel further on each side).
"""
from .._validate import check_float, check_ndim, check_norm
from ..autograd import as_tensor
from ..window import Window
from .segaware import Bilateral, _embeddings, _mask

__all__ = ["segaware_avg_pool2d"]


def segaware_avg_pool2d(x, e, ksize, lam=0.0, stride=None, padding=None, dilation=1,
                        norm="l1"):
    """Segmentation-aware average pooling: x (N, C, H, W), e (N, D, H, W) ->
    y (N, C, OH, OW), the mask-weighted average of each window (module docstring).

    ``ksize`` one odd int; ``stride`` None means ``ksize``; ``padding`` None means
    ``dilation * (ksize // 2)`` (at most that); ``norm`` 'l1', 'l2' or 'l2sq'; lam >= 0, a
    float or a 0-d Tensor.  With stride 1 it is :func:`segaware_bilateral`; with lam = 0
    the average over the taps inside the image (``avg_pool2d`` with
    ``count_include_pad=False``, up to NORM_EPS).  Gradients flow to x, e and lam.
    """
    fn = "segaware_avg_pool2d"
    x = as_tensor(x)
    check_float(fn, "x", x.data)
    check_ndim(fn, "x", x, "(N, C, H, W)")
    e = _embeddings(fn, e, x)
    check_norm(fn, norm)
    win = Window.segaware(fn, x.shape[2], x.shape[3], ksize,
                          ksize if stride is None else stride, padding, dilation)
    return Bilateral(win)(x, _mask(fn, e, lam, win, norm, True))
