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
the image form a rectangle, and the pixels they read form one strided slice
(``Window.taps`` in ``segnp/window.py``), so a tap costs a few vectorised array
operations and the K-column matrix is never built.  For stride 1 the bilateral filter
and its gx run instead on the zero canvas of ``canvas.py``, where every tap is one
contiguous shift, when that canvas is not much larger than the output.  The masked
convolution of Eq. 7, which shares these taps, is in ``masked_conv.py``.
"""
import numpy as np

from ..base import ELEMENT_FLOPS, filter_passes, filter_passes_backward
from ._common import mask_sum
from .canvas import Canvas
from .threads import for_runs

__all__ = ["im2dist", "im2dist_backward", "bilateral", "bilateral_backward",
           "bilateral_repeat", "bilateral_repeat_backward"]


def _norm_grad(delta, dist, norm):
    """d||delta|| / d delta for one tap, written over delta (N, D, h, w), which the
    caller no longer needs (into a new array for 'l1'); dist (N, h, w)."""
    if norm == "l1":
        # Not in place: NumPy 2.4's sign written over its own input runs a branching
        # loop, 9x slower on mixed signs (float32, 460k random values, one thread:
        # 1.9 ms vs 0.22 ms into a new array), which made the flow row's embedding
        # gradient 2.6x slower (122 vs 47 ms; benchmarks/bench_flow_kernels.py).
        return np.sign(delta)
    if norm == "l2sq":
        return np.multiply(delta, 2, out=delta)
    # l2: delta / ||delta||, taken as 0 where the embeddings coincide (a finite choice
    # of subgradient, so coincident embeddings never produce NaN).
    safe = np.where(dist > 0, dist, np.inf)
    return np.divide(delta, safe[:, None], out=delta)


# ---- im2dist (Sec. 4.2, the distances of Eq. 3) ----------------------------------------
# Images of e per block of im2dist and its backward: as many as fit in this many bytes
# (at least one), so that a tap's differences stay in the cache between its few passes.
# Flow network's embeddings, N=8, D=16, 64x64, 9x9, float32, one thread: backward 47 ->
# 42 ms, forward 17 -> 14 ms at 2 images a block (benchmarks/bench_flow_kernels.py);
# small maps stay in one block.
_DIST_BLOCK_BYTES = 1 << 19


def _in_blocks(e, lo, hi, fn):
    """fn(slice) over images lo..hi of e in blocks of _DIST_BLOCK_BYTES.  The images
    are independent, so the blocks give the same values as one call."""
    step = max(1, _DIST_BLOCK_BYTES // max(1, e[0].nbytes))
    for b in range(lo, hi, step):
        fn(slice(b, min(hi, b + step)))


def im2dist(e, win, norm="l1"):
    """Distances between each window's centre embedding and each tap's (Sec. 4.2).

    e (N, D, H, W) -> d (N, K, OH, OW), ``d[n, k, o] = ||e[n, :, centre(o)] -
    e[n, :, tap_k(o)]||`` with norm 'l1' (sum |delta|), 'l2' (sqrt(sum delta**2)) or
    'l2sq' (sum delta**2).  d is 0 at taps outside the image; the mask of Eq. 3 is
    ``exp(-lam * d)`` times the tap validity.  ``win`` is the
    :class:`segnp.window.Window` the public function built, as for every kernel of
    this module.
    """
    win.check_operands("im2dist", e)
    N = e.shape[0]
    d = np.zeros((N, win.K) + win.out, dtype=e.dtype)
    # the images are independent: spread over the cores
    for_runs(lambda lo, hi: _in_blocks(e, lo, hi, lambda i: _im2dist_images(
        e[i], d[i], win, norm)), N,
             flops=ELEMENT_FLOPS * 2 * e.size * win.K)
    return d


def _im2dist_images(e, d, win, norm):
    """d (n, K, OH, OW), zeroed by the caller, filled in for the images e (n, D, H, W)."""
    K = win.K
    mirrored = _mirrored(win)
    for kk, rect, tap, centre in win.taps():
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


def im2dist_backward(e, d, gd, win, norm="l1"):
    """Gradient of :func:`im2dist`: gd (N, K, OH, OW) -> ge (N, D, H, W).

    Each pair contributes ``gd * dnorm/ddelta`` to its centre pixel and the negative to
    its tap pixel.  ``d`` is the forward result (the 'l2' gradient divides by it, and is
    0 where d = 0).  Taps outside the image receive nothing.
    """
    win.check_operands("im2dist_backward", e, d=d, gd=gd)
    N = e.shape[0]
    ge = np.zeros_like(e)
    for_runs(lambda lo, hi: _in_blocks(e, lo, hi, lambda i: _im2dist_backward_images(
        e[i], d[i], gd[i], ge[i], win, norm)), N,
             flops=ELEMENT_FLOPS * 4 * e.size * win.K)
    return ge


def _im2dist_backward_images(e, d, gd, ge, win, norm):
    """ge (n, D, H, W), zeroed by the caller, += the gradient through d of the images e."""
    K = win.K
    mirrored = _mirrored(win)
    for kk, rect, tap, centre in win.taps():
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
# The canvas (``canvas.py``) serves the filter while it is at most this many times the
# output's area.  Canvas time / rectangles' time, forward and gx, on 64x64 (N=4, C=7,
# float32, one thread; benchmarks/bench_filter_kernels.py): 9x9, area 1.27: 0.61x,
# 0.61x; the CRF's 7x7 at dilation 2, 1.41: 0.79x, 0.75x; 9x9 at dilation 2, 1.56:
# 0.87x, 0.71x; 5x5 at dilation 5, 1.72: 1.14x, 1.12x (11x11 at dilation 2, also 1.72:
# 0.85x); 9x9 at dilation 3, 1.89: 1.22x, 1.27x; a 13x13 window at dilation 9, 7.22:
# 13.9x.  Past about 1.6 the passes over the padding cost more than the rectangles save.
_MOST_PADDING = 1.6


def bilateral(x, m, win):
    """Segmentation-aware bilateral filter (Eq. 4), every channel with the same mask.

    x (N, C, H, W), m (N, K, OH, OW) -> y (N, C, OH, OW)::

        y[n, c, o] = sum_k x[n, c, tap_k(o)] m[n, k, o] / (sum_k m[n, k, o] + NORM_EPS)

    m must already be 0 at taps outside the image.
    """
    win.check_operands("bilateral", x, m=m)
    if Canvas.applies(win, x, _MOST_PADDING):
        cv = Canvas(win, x)
        return _bilateral_canvas(cv, cv.image(), cv.on_outputs(m), mask_sum(m))
    N, C = x.shape[:2]
    y = np.zeros((N, C) + win.out, dtype=x.dtype)
    for kk, rect, tap, _ in win.taps():
        if rect is None:
            continue
        y[(slice(None), slice(None)) + rect] += (
            x[:, :, tap[0], tap[1]] * m[:, kk, None][(slice(None), slice(None)) + rect])
    y /= mask_sum(m)[:, None]
    return y


def _bilateral_canvas(cv, xc, mc, Z):
    """The bilateral filter for stride 1 of the image canvas xc, with the mask on the
    output columns mc and its sum Z: one multiply-add over the canvas per tap, in the
    taps' order (so the sums are those of the rectangles, which skip zeros)."""
    L = cv.L
    yc = np.zeros((cv.C, L), dtype=xc.dtype)
    product = np.empty_like(yc)
    for k, off in enumerate(cv.offsets):
        yc += np.multiply(xc[:, off:off + L], mc[k], out=product)
    return cv.from_outputs(yc, Z)


def bilateral_backward(x, m, gy, win, need_x=True, need_m=True):
    """Gradients of :func:`bilateral`: gy (N, C, OH, OW) -> (gx, gm), None where not
    needed.  With gu = gy / Z: gx gathers ``gu * m_k`` back to each tap's pixels;
    ``gm_k = sum_c gu x_k - sum_k' gm_k' m_k' / Z`` (the second term, through Z, reaches
    outside taps too), which avoids needing y.  For stride 1, gx is gathered on the
    canvas (``canvas.py``) while the canvas is at most ``_MOST_PADDING`` times the
    output; gm stays on the taps' rectangles, where its sum over the channels runs
    faster (it reads x in place, the canvas would copy it)."""
    win.check_operands("bilateral_backward", x, m=m, gy=gy)
    o = win.out
    N, C = x.shape[:2]
    Z = mask_sum(m)
    gu = gy / Z[:, None]
    gx = None
    rect_gx = need_x and not Canvas.applies(win, x, _MOST_PADDING)  # gx on the taps
    if rect_gx:
        gx = np.zeros_like(x)
    elif need_x:
        cv = Canvas(win, x)
        gx = _bilateral_gx_canvas(cv, cv.on_outputs(m), cv.on_outputs(gu))
    gm = np.zeros((N, win.K) + o, dtype=x.dtype) if need_m else None
    for kk, rect, tap, _ in win.taps():
        if rect is None or not (need_m or rect_gx):
            continue
        out = (slice(None), slice(None)) + rect
        if rect_gx:
            gx[:, :, tap[0], tap[1]] += gu[out] * m[:, kk, None][out]
        if need_m:
            gm[:, kk][(slice(None),) + rect] = np.einsum(
                "nchw,nchw->nhw", gu[out], x[:, :, tap[0], tap[1]])
    if need_m:
        gm -= (np.einsum("nkhw,nkhw->nhw", gm, m) / Z)[:, None]
    return gx, gm


def _bilateral_gx_canvas(cv, mc, guc):
    """gx of the bilateral filter for stride 1: gu = gy / Z and the mask lie on the
    output columns (guc, mc), 0 elsewhere, so each tap's share is one multiply-add over
    the canvas, in the taps' order (the rectangles' sums, which skip only zeros)."""
    L = cv.L
    gxc = cv.zeros(cv.C, cv.tail)
    product = np.empty_like(guc)
    for k, off in enumerate(cv.offsets):
        gxc[:, off:off + L] += np.multiply(guc, mc[k], out=product)
    return cv.from_image(gxc)


# The bytes of one operand's column block in bilateral_repeat_backward's sum for gm.
_GM_BLOCK_BYTES = 1 << 19


def bilateral_repeat(x, m, win, repeat=1):
    """The bilateral filter (Eq. 4) ``repeat`` times with one mask, for a window whose
    output has x's size (stride 1, the default padding): y_0 = x, y_r = bilateral(y_{r-1},
    m) -> (y_1, .., y_repeat), each (N, C, H, W); the backward pass reads them all.

    The same sums as ``repeat`` calls of :func:`bilateral`; on the canvas the mask is
    laid out and summed once, not once a pass.
    """
    win.check_operands("bilateral_repeat", x, m=m)
    win.check_passes("bilateral_repeat", repeat)
    if Canvas.applies(win, x, _MOST_PADDING):
        cv = Canvas(win, x)
        mc, Z = cv.on_outputs(m), mask_sum(m)
        return filter_passes(lambda y, m, win: _bilateral_canvas(cv, cv.image(y), mc, Z),
                             x, m, win, repeat)
    return filter_passes(bilateral, x, m, win, repeat)


def bilateral_repeat_backward(x, ys, m, gy, win, need_x=True, need_m=True):
    """Gradients of :func:`bilateral_repeat` (ys its outputs, gy that of the last):
    (gx (N, C, H, W), gm (N, K, H, W)), None where not needed.  With gu_r = g_r / Z, g_r
    the gradient of y_r and y_0 = x, every pass adds to the mask's gradient::

        gm[k, o] = sum_r sum_c gu_r[c, o] (y_{r-1}[c, tap_k(o)] - y_r[c, o])

    (``bilateral_backward``'s correction through Z, ``sum_k' gm_k' m_k' / Z``, is
    ``sum_c gu_r y_r``: one product a pass, not one a tap, since the outputs are
    kept).  On the canvas the mask is laid out and summed once, and the terms of every
    pass are summed tap by tap at the end."""
    R = len(ys)
    win.check_operands("bilateral_repeat_backward", x, m=m, gy=gy)
    win.check_pass_outputs("bilateral_repeat_backward", x, ys)
    # one pass keeps bilateral_backward (and its sums, bit for bit: the rows that filter
    # once are unchanged); so do windows too wide for the canvas
    if not (Canvas.applies(win, x, _MOST_PADDING) and R > 1):
        return filter_passes_backward(bilateral_backward, x, ys, m, gy, win, need_x,
                                      need_m)
    cv = Canvas(win, x)
    mc, Z, L, C = cv.on_outputs(m), mask_sum(m), cv.L, cv.C
    if need_m:
        # every pass's gu and input as canvases, stacked (R C rows) for one sum a tap;
        # pass r fills rows (R - 1 - r) C.. (the order the passes are visited)
        gu = np.empty((R * C, L), dtype=x.dtype)
        inp = np.empty((R * C, L + cv.tail), dtype=x.dtype)
        correction = np.zeros(L, dtype=x.dtype)
    g = gy
    for r in reversed(range(R)):
        rows = slice((R - 1 - r) * C, (R - r) * C)
        guc = cv.on_outputs(g, Z, out=gu[rows] if need_m else None)
        if need_m:
            cv.image(ys[r - 1] if r else x, out=inp[rows])
            correction += np.einsum("cl,cl->l", guc, cv.on_outputs(ys[r]))
        g = _bilateral_gx_canvas(cv, mc, guc) if (need_x or r > 0) else None
    gm = None
    if need_m:
        gmc = np.empty((cv.K, L), dtype=x.dtype)
        # Column blocks small enough that a block of gu and the inputs it meets stay in
        # the cache over all K taps (whole rows are re-read from memory a tap): the
        # flow network's backward (16 passes of 2 channels, 8 images of 64x64, 9x9,
        # float32, one thread, gm only) 86 -> 63 ms (benchmarks/bench_flow_kernels.py).
        # Each column's sum over j is the same, in the same order.
        step = max(512, _GM_BLOCK_BYTES // (gu.shape[0] * gu.itemsize))
        for l0 in range(0, L, step):
            l1 = min(L, l0 + step)
            for k, off in enumerate(cv.offsets):
                np.einsum("jl,jl->l", gu[:, l0:l1], inp[:, l0 + off:l1 + off],
                          out=gmc[k, l0:l1])
        gmc -= correction
        gm = cv.from_outputs(gmc)
    return g, gm
