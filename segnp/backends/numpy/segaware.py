"""The segmentation-aware kernels on NumPy (Secs. 3.2, 3.4 and 4.2 of the paper).

Notation: x (N, C, H, W) features, e (N, D, H, W) embeddings, W (F, C, KH, KW) filters
with KH = KW = ksize odd, K = ksize**2 taps in row-major order, d and m (N, K, OH, OW)
distances and masks.  Tap k = (i, j) of output o = (oh, ow) reads input pixel
``(oh*SH - PH + i*DH, ow*SW - PW + j*DW)``; the *centre* of output o is the pixel of tap
K//2, ``(oh*SH + CH, ow*SW + CW)`` with ``CH = DH*(ksize//2) - PH``: with the default
padding ``dilation*(ksize//2)`` that is pixel ``o*stride``.  A padding larger than the
default would put some centres outside the image, where no embedding exists, so it is
rejected.

Sec. 4.2 builds each operator from an image-to-column matrix of K columns.  Here every
kernel loops over the K taps instead: for one tap the outputs whose tap pixel lies inside
the image form a rectangle, and the pixels they read form one strided slice, so a tap
costs a few vectorised array operations and the K-column matrix is never built.  The
masked convolution of Eq. 7, which shares these tap rectangles, is in ``masked_conv.py``.
"""
import numpy as np

from ...window import NORM_EPS, segaware_window
from ..._validate import check_ndim, check_norm, check_same_dtype
from ..base import ELEMENT_FLOPS
from .threads import for_runs

__all__ = ["im2dist", "im2dist_backward", "bilateral", "bilateral_backward"]


# ---- taps as rectangles --------------------------------------------------------------
def _span(offset, S, size, O):
    """Outputs ``lo <= o < hi`` whose input index ``o*S + offset`` lies in [0, size)."""
    lo = max(0, -(offset // S))
    hi = min(O, (size - 1 - offset) // S + 1)
    return lo, max(lo, hi)


def _taps(win):
    """Yield ``(k, rect, tap, centre)`` for each of the K taps.

    ``rect`` is the (rows, cols) slice pair of the outputs whose tap pixel is inside the
    image; ``tap`` and ``centre`` are the slice pairs of the input pixels those outputs
    read at this tap and at their centre.  ``rect`` is None for a tap that lies wholly
    in the padding (its mask is 0 everywhere, so it contributes nothing).
    """
    H, W, KH, KW, OH, OW = win.H, win.W, win.KS, win.KS, win.OH, win.OW
    SH, SW, PH, PW, DH, DW = win.SH, win.SW, win.PH, win.PW, win.DH, win.DW
    ch, cw = win.centre

    def rows_of(lo, hi, S, off):
        return slice(lo * S + off, (hi - 1) * S + off + 1, S)

    for i in range(KH):
        th = i * DH - PH
        lo_h, hi_h = _span(th, SH, H, OH)
        for j in range(KW):
            tw = j * DW - PW
            lo_w, hi_w = _span(tw, SW, W, OW)
            k = i * KW + j
            if hi_h == lo_h or hi_w == lo_w:
                yield k, None, None, None
                continue
            rect = (slice(lo_h, hi_h), slice(lo_w, hi_w))
            tap = (rows_of(lo_h, hi_h, SH, th), rows_of(lo_w, hi_w, SW, tw))
            centre = (rows_of(lo_h, hi_h, SH, ch), rows_of(lo_w, hi_w, SW, cw))
            yield k, rect, tap, centre


def _shifted(x, rect, tap, out, mk=None):
    """``out[:, :, o] = x[:, :, tap pixel of o]`` (times ``mk[:, :, o]`` when given)
    inside ``rect``, 0 outside it."""
    (r, c), OH, OW = rect, out.shape[2], out.shape[3]
    if (r.start, r.stop, c.start, c.stop) != (0, OH, 0, OW):
        out[:, :, :r.start] = 0
        out[:, :, r.stop:] = 0
        out[:, :, r, :c.start] = 0
        out[:, :, r, c.stop:] = 0
    if mk is None:
        out[:, :, r, c] = x[:, :, tap[0], tap[1]]
    else:
        np.multiply(x[:, :, tap[0], tap[1]], mk[:, :, r, c], out=out[:, :, r, c])
    return out


def _check_mask(fn, m, N, K, out):
    check_ndim(fn, "m", m, "(N, K, OH, OW)")
    if tuple(m.shape) != (N, K) + tuple(out):
        raise ValueError(f"{fn}: m must be (N, K, OH, OW) = {(N, K) + tuple(out)}; "
                         f"got {tuple(m.shape)}")


def _norm_grad(delta, dist, norm):
    """d||delta|| / d delta for one tap: delta (N, D, h, w), dist (N, h, w)."""
    if norm == "l1":
        return np.sign(delta)
    if norm == "l2sq":
        return 2 * delta
    # l2: delta / ||delta||, taken as 0 where the embeddings coincide (a finite choice
    # of subgradient, so coincident embeddings never produce NaN).
    safe = np.where(dist > 0, dist, np.inf)
    return delta / safe[:, None]
    # l2: delta / ||delta||, taken as 0 where the embeddings coincide (a finite choice
    # of subgradient, so coincident embeddings never produce NaN).
    safe = np.where(dist > 0, dist, np.inf)
    delta /= safe[:, None]
    return delta


def _mask_sum(m):
    """The denominator of Eqs. 4 and 7: sum_k m_k + eps, (N, OH, OW)."""
    s = m.sum(axis=1)
    s += NORM_EPS
    return s


# ---- im2dist (Sec. 4.2, the distances of Eq. 3) ----------------------------------------
def im2dist(e, ksize, stride=1, padding=None, dilation=1, norm="l1", *, window=None):
    """Distances between each window's centre embedding and each tap's (Sec. 4.2).

    e (N, D, H, W) -> d (N, K, OH, OW), ``d[n, k, o] = ||e[n, :, centre(o)] -
    e[n, :, tap_k(o)]||`` with norm 'l1' (sum |delta|), 'l2' (sqrt(sum delta**2)) or
    'l2sq' (sum delta**2).  d is 0 at taps outside the image; the mask of Eq. 3 is
    ``exp(-lam * d)`` times the tap validity.  ``window`` (a :class:`segnp.window.Window`
    the caller built) replaces ksize, stride, padding and dilation, as in every kernel
    of this module.
    """
    fn = "im2dist"
    check_ndim(fn, "e", e, "(N, D, H, W)")
    check_norm(fn, norm)
    N, D, H, W = e.shape
    win = segaware_window(fn, H, W, ksize, stride, padding, dilation, window)
    d = np.zeros((N, win.K) + win.out, dtype=e.dtype)
    # the images are independent: spread over the cores
    for_runs(lambda lo, hi: _im2dist_images(e[lo:hi], d[lo:hi], win, norm), N,
             flops=ELEMENT_FLOPS * 2 * e.size * win.K)
    return d


def _im2dist_images(e, d, win, norm):
    """d (n, K, OH, OW), zeroed by the caller, filled in for the images e (n, D, H, W)."""
    K = win.K
    mirrored = _mirrored(win)
    for kk, rect, tap, centre in _taps(win):
        if rect is None or kk == K // 2 or (mirrored and kk > K // 2):
            continue  # the centre's distance is 0; mirrored taps are copied below
        delta = e[:, :, centre[0], centre[1]] - e[:, :, tap[0], tap[1]]
        if norm == "l1":
            np.abs(delta, out=delta)
            dist = delta.sum(axis=1)
        else:
            dist = np.einsum("ndhw,ndhw->nhw", delta, delta)
            if norm == "l2":
                np.sqrt(dist, out=dist)
        d[:, kk][(slice(None),) + rect] = dist
        if mirrored:  # tap K-1-k at output tap_k(o) pairs the same two pixels
            d[:, K - 1 - kk][(slice(None),) + tap] = dist


def _mirrored(win):
    """Whether output o is centred on pixel o (stride 1, the default padding): then tap
    K-1-k of output tap_k(o) is pixel o, so taps k and K-1-k see the same pixel pairs
    and only half of the taps need their distances (and gradients) computed."""
    return win.SH == win.SW == 1 and win.centre == (0, 0)


def im2dist_backward(e, d, gd, ksize, stride=1, padding=None, dilation=1, norm="l1", *,
                     window=None):
    """Gradient of :func:`im2dist`: gd (N, K, OH, OW) -> ge (N, D, H, W).

    Each pair contributes ``gd * dnorm/ddelta`` to its centre pixel and the negative to
    its tap pixel.  ``d`` is the forward result (the 'l2' gradient divides by it, and is
    0 where d = 0).  Taps outside the image receive nothing.
    """
    fn = "im2dist_backward"
    check_ndim(fn, "e", e, "(N, D, H, W)")
    check_norm(fn, norm)
    N, D, H, W = e.shape
    win = segaware_window(fn, H, W, ksize, stride, padding, dilation, window)
    _check_mask(fn, gd, N, win.K, win.out)
    ge = np.zeros_like(e)
    for_runs(lambda lo, hi: _im2dist_backward_images(e[lo:hi], d[lo:hi], gd[lo:hi],
                                                     ge[lo:hi], win, norm), N,
             flops=ELEMENT_FLOPS * 4 * e.size * win.K)
    return ge


def _im2dist_backward_images(e, d, gd, ge, win, norm):
    """ge (n, D, H, W), zeroed by the caller, += the gradient through d of the images e."""
    K = win.K
    mirrored = _mirrored(win)
    for kk, rect, tap, centre in _taps(win):
        if rect is None or kk == K // 2 or (mirrored and kk > K // 2):
            continue  # the centre tap's delta is identically 0; mirrors join tap k
        delta = e[:, :, centre[0], centre[1]] - e[:, :, tap[0], tap[1]]
        dist = d[:, kk][(slice(None),) + rect] if norm == "l2" else None
        g = _norm_grad(delta, dist, norm)
        gk = gd[:, kk][(slice(None),) + rect]
        if mirrored:  # the mirror tap's pair is this one reversed: delta -> -delta
            gk = gk + gd[:, K - 1 - kk][(slice(None),) + tap]
        g *= gk[:, None]
        ge[:, :, centre[0], centre[1]] += g
        ge[:, :, tap[0], tap[1]] -= g


# ---- the bilateral filter (Eq. 4) --------------------------------------------------
def _bilateral_setup(fn, x, m, ksize, stride, padding, dilation, window):
    check_ndim(fn, "x", x, "(N, C, H, W)")
    check_same_dtype(fn, ("x", "m"), (x, m))
    N, C, H, W = x.shape
    win = segaware_window(fn, H, W, ksize, stride, padding, dilation, window)
    _check_mask(fn, m, N, win.K, win.out)
    return win


def bilateral(x, m, ksize, stride=1, padding=None, dilation=1, *, window=None):
    """Segmentation-aware bilateral filter (Eq. 4), every channel with the same mask.

    x (N, C, H, W), m (N, K, OH, OW) -> y (N, C, OH, OW)::

        y[n, c, o] = sum_k x[n, c, tap_k(o)] m[n, k, o] / (sum_k m[n, k, o] + NORM_EPS)

    m must already be 0 at taps outside the image.
    """
    fn = "bilateral"
    win = _bilateral_setup(fn, x, m, ksize, stride, padding, dilation, window)
    N, C = x.shape[:2]
    y = np.zeros((N, C) + win.out, dtype=x.dtype)
    for kk, rect, tap, _ in _taps(win):
        if rect is None:
            continue
        y[(slice(None), slice(None)) + rect] += (
            x[:, :, tap[0], tap[1]] * m[:, kk, None][(slice(None), slice(None)) + rect])
    y /= _mask_sum(m)[:, None]
    return y


def bilateral_backward(x, m, gy, ksize, stride=1, padding=None, dilation=1,
                       need_x=True, need_m=True, *, window=None):
    """Gradients of :func:`bilateral`: gy (N, C, OH, OW) -> (gx, gm), None where not
    needed.  With gu = gy / Z: gx gathers ``gu * m_k`` back to each tap's pixels;
    ``gm_k = sum_c gu x_k - sum_k' gm_k' m_k' / Z`` (the second term, through Z, reaches
    outside taps too), which avoids needing y."""
    fn = "bilateral_backward"
    win = _bilateral_setup(fn, x, m, ksize, stride, padding, dilation, window)
    o = win.out
    N, C = x.shape[:2]
    if tuple(gy.shape) != (N, C) + o:
        raise ValueError(f"{fn}: gy must be (N, C, OH, OW) = {(N, C) + o}; "
                         f"got {tuple(gy.shape)}")
    Z = _mask_sum(m)
    gu = gy / Z[:, None]
    gx = np.zeros_like(x) if need_x else None
    gm = np.zeros((N, win.K) + o, dtype=x.dtype) if need_m else None
    for kk, rect, tap, _ in _taps(win):
        if rect is None:
            continue
        out = (slice(None), slice(None)) + rect
        if need_x:
            gx[:, :, tap[0], tap[1]] += gu[out] * m[:, kk, None][out]
        if need_m:
            gm[:, kk][(slice(None),) + rect] = np.einsum(
                "nchw,nchw->nhw", gu[out], x[:, :, tap[0], tap[1]])
    if need_m:
        gm -= (np.einsum("nkhw,nkhw->nhw", gm, m) / Z)[:, None]
    return gx, gm
