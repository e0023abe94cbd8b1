"""Launchers of the segmentation-aware CUDA kernels: im2dist (Sec. 4.2) and the bilateral
filter (Eq. 4).  The masked GEMM of Eq. 7 has its own module, :mod:`.masked_conv`.

Each function has the signature of its NumPy twin in ``segnp/backends/numpy/segaware.py``
after the runtime ``rt`` (which the backend binds).  Kernels are in
``segnp/backends/cuda/segaware.cu``.  Shape letters: N batch, C channels, D embedding
channels, H W input, K = ksize**2 taps (row-major, tap K//2 the centre), OH OW output.
"""
from ...window import NORM_EPS
from ..._validate import NORMS, check_norm
from ._common import (checked_window, finish_mask_grad, image, int32, launch_flat, mask_inv,
                      per_output, real, same_dtype)

__all__ = ["im2dist", "im2dist_backward", "bilateral", "bilateral_backward"]


def im2dist(rt, e, ksize, stride=1, padding=None, dilation=1, norm="l1", *, window=None):
    """Distances between each output's centre embedding and its taps' (Sec. 4.2).

    e (N, D, H, W) -> d (N, K, OH, OW); d[n, k, o] = ||e[:, tap(o, k)] - e[:, centre(o)]||
    for ``norm`` 'l1' (sum |.|), 'l2' (sqrt of sum of squares) or 'l2sq'; 0 where the
    tap is outside the image.
    """
    fn = "im2dist"
    check_norm(fn, norm)
    e = image(rt, fn, "e", e, "(N, D, H, W)")
    N, D, H, W = e.shape
    win = checked_window(fn, H, W, ksize, stride, padding, dilation, window)
    d = rt.xp.empty((N, win.K) + win.out, dtype=e.dtype)
    launch_flat(rt, "segaware.cu", "im2dist_fwd", e.dtype, d.size,
                (e, d, *int32(N, D, *win.ints(), *win.centre, NORMS.index(norm))))
    return d


def im2dist_backward(rt, e, d, gd, ksize, stride=1, padding=None, dilation=1, norm="l1", *,
                     window=None):
    """Gradient of :func:`im2dist`: ge (N, D, H, W) from gd (N, K, OH, OW).

    ``d`` is the forward's output ('l2' divides by it; its gradient is 0 where d = 0).
    Each pixel gathers its terms as the centre and as a tap: no atomics.
    """
    fn = "im2dist_backward"
    check_norm(fn, norm)
    e = image(rt, fn, "e", e, "(N, D, H, W)")
    N, D, H, W = e.shape
    win = checked_window(fn, H, W, ksize, stride, padding, dilation, window)
    shape = (N, win.K) + win.out
    d = per_output(rt, fn, "d", d, shape, "(N, K, OH, OW)")
    gd = per_output(rt, fn, "gd", gd, shape, "(N, K, OH, OW)")
    same_dtype(fn, e=e, d=d, gd=gd)
    ge = rt.xp.empty_like(e)
    launch_flat(rt, "segaware.cu", "im2dist_bwd", e.dtype, ge.size,
                (e, d, gd, ge, *int32(N, D, *win.ints(), *win.centre, NORMS.index(norm))))
    return ge


def _bilateral_inputs(rt, fn, x, m, ksize, stride, padding, dilation, given):
    x = image(rt, fn, "x", x)
    N, C, H, W = x.shape
    win = checked_window(fn, H, W, ksize, stride, padding, dilation, given)
    m = per_output(rt, fn, "m", m, (N, win.K) + win.out, "(N, K, OH, OW)")
    same_dtype(fn, x=x, m=m)
    return x, m, win


def bilateral(rt, x, m, ksize, stride=1, padding=None, dilation=1, *, window=None):
    """Eq. 4: y[n, c, o] = sum_k x[n, c, tap(o, k)] m[n, k, o] / (sum_k m[n, k, o] + NORM_EPS).

    x (N, C, H, W), m (N, K, OH, OW) -> y (N, C, OH, OW).  Taps outside the image add
    nothing to the numerator; m should already be 0 there (the mask of Eq. 3 is), so
    they add nothing to the denominator either.
    """
    fn = "bilateral"
    x, m, win = _bilateral_inputs(rt, fn, x, m, ksize, stride, padding, dilation, window)
    N, C, H, W = x.shape
    y = rt.xp.empty((N, C) + m.shape[2:], dtype=x.dtype)
    launch_flat(rt, "segaware.cu", "bilateral_fwd", x.dtype, y.size,
                (x, m, y, *int32(N, C, *win.ints()), *real(x.dtype, NORM_EPS)))
    return y


def bilateral_backward(rt, x, m, gy, ksize, stride=1, padding=None, dilation=1,
                       need_x=True, need_m=True, *, window=None):
    """Gradients of :func:`bilateral`: (gx (N, C, H, W), gm (N, K, OH, OW)), None where
    not needed.

    gx gathers gy m / (sum m + eps) back to the pixels; gm[k] = inv (G_k - inv sum_j m_j G_j)
    with G_k = sum_c gy_c x_c[tap k] and inv = 1 / (sum m + eps).
    """
    fn = "bilateral_backward"
    x, m, win = _bilateral_inputs(rt, fn, x, m, ksize, stride, padding, dilation, window)
    N, C, H, W = x.shape
    gy = per_output(rt, fn, "gy", gy, (N, C) + m.shape[2:], "(N, C, OH, OW)")
    same_dtype(fn, x=x, gy=gy)
    inv = mask_inv(rt, m)
    gx = gm = None
    if need_x:
        gx = rt.xp.empty_like(x)
        launch_flat(rt, "segaware.cu", "bilateral_bwd_x", x.dtype, gx.size,
                    (gy, m, inv, gx, *int32(N, C, *win.ints())))
    if need_m:
        gm = rt.xp.empty_like(m)
        launch_flat(rt, "segaware.cu", "tap_dot", x.dtype, gm.size,
                    (x, gy, gm, *int32(N, C, *win.ints())))
        finish_mask_grad(rt, m, inv, gm)
    return gx, gm
