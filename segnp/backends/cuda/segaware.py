"""Launchers of the segmentation-aware CUDA kernels: im2dist (Sec. 4.2) and the bilateral
filter (Eq. 4).  The masked GEMM of Eq. 7 has its own module, :mod:`.masked_conv`.

Each function has the signature of its NumPy twin in ``segnp/backends/numpy/segaware.py``
after the runtime ``rt`` (which the backend binds).  Kernels are in
``segnp/backends/cuda/segaware.cu``.  Shape letters: N batch, C channels, D embedding
channels, H W input, K = ksize**2 taps (row-major, tap K//2 the centre), OH OW output.
``win`` is the :class:`segnp.window.Window` the public function built and checked; the
launchers check only that the arrays agree with it (and fit 32-bit indices), and the
runtime checks each launch's dtypes.
"""
import functools

from ...window import NORM_EPS
from ..._validate import NORMS
from ..base import filter_passes, filter_passes_backward
from ._common import (checked_window, contiguous, finish_mask_grad, int32, launch_flat,
                      mask_inv, real)

__all__ = ["im2dist", "im2dist_backward", "bilateral", "bilateral_backward", "bilateral_repeat",
           "bilateral_repeat_backward"]


def im2dist(rt, e, win, norm="l1"):
    """Distances between each output's centre embedding and its taps' (Sec. 4.2).

    e (N, D, H, W) -> d (N, K, OH, OW); d[n, k, o] = ||e[:, tap(o, k)] - e[:, centre(o)]||
    for ``norm`` 'l1' (sum |.|), 'l2' (sqrt of sum of squares) or 'l2sq'; 0 where the
    tap is outside the image.
    """
    checked_window("im2dist", win, e)
    e, = contiguous(rt, e)
    N, D = e.shape[:2]
    d = rt.xp.empty((N, win.K) + win.out, dtype=e.dtype)
    launch_flat(rt, "segaware.cu", "im2dist_fwd", e.dtype, d.size,
                (e, d, *int32(N, D, *win.ints(), *win.centre, NORMS.index(norm))))
    return d


def im2dist_backward(rt, e, d, gd, win, norm="l1"):
    """Gradient of :func:`im2dist`: ge (N, D, H, W) from gd (N, K, OH, OW).

    ``d`` is the forward's output ('l2' divides by it; its gradient is 0 where d = 0).
    Each pixel gathers its terms as the centre and as a tap: no atomics.
    """
    checked_window("im2dist_backward", win, e, d=d, gd=gd)
    e, d, gd = contiguous(rt, e, d, gd)
    N, D = e.shape[:2]
    ge = rt.xp.empty_like(e)
    launch_flat(rt, "segaware.cu", "im2dist_bwd", e.dtype, ge.size,
                (e, d, gd, ge, *int32(N, D, *win.ints(), *win.centre, NORMS.index(norm))))
    return ge


def bilateral(rt, x, m, win):
    """Eq. 4: y[n, c, o] = sum_k x[n, c, tap(o, k)] m[n, k, o] / (sum_k m[n, k, o] + NORM_EPS).

    x (N, C, H, W), m (N, K, OH, OW) -> y (N, C, OH, OW).  Taps outside the image add
    nothing to the numerator; m should already be 0 there (the mask of Eq. 3 is), so
    they add nothing to the denominator either.
    """
    checked_window("bilateral", win, x, m=m)
    x, m = contiguous(rt, x, m)
    N, C = x.shape[:2]
    y = rt.xp.empty((N, C) + win.out, dtype=x.dtype)
    launch_flat(rt, "segaware.cu", "bilateral_fwd", x.dtype, y.size,
                (x, m, y, *int32(N, C, *win.ints()), *real(x.dtype, NORM_EPS)))
    return y


def bilateral_backward(rt, x, m, gy, win, need_x=True, need_m=True):
    """Gradients of :func:`bilateral`: (gx (N, C, H, W), gm (N, K, OH, OW)), None where
    not needed.

    gx gathers gy m / (sum m + eps) back to the pixels; gm[k] = inv (G_k - inv sum_j m_j G_j)
    with G_k = sum_c gy_c x_c[tap k] and inv = 1 / (sum m + eps).
    """
    checked_window("bilateral_backward", win, x, m=m, gy=gy)
    x, m, gy = contiguous(rt, x, m, gy)
    N, C = x.shape[:2]
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


def bilateral_repeat(rt, x, m, win, repeat=1):
    """:func:`bilateral` ``repeat`` times with one mask (stride 1, output of x's size):
    -> (y_1, .., y_repeat).  One launch a pass: each thread reads the mask where it
    lies, so there is nothing to lay out once (the NumPy twin's reason to fuse)."""
    checked_window("bilateral_repeat", win, x, m=m)
    win.check_passes("bilateral_repeat", repeat)
    return filter_passes(functools.partial(bilateral, rt), x, m, win, repeat)


def bilateral_repeat_backward(rt, x, ys, m, gy, win, need_x=True, need_m=True):
    """Gradients of :func:`bilateral_repeat`: :func:`bilateral_backward` pass by pass,
    from the last, with the passes' mask gradients summed -> (gx, gm), None where not
    needed."""
    checked_window("bilateral_repeat_backward", win, x, m=m, gy=gy)
    win.check_pass_outputs("bilateral_repeat_backward", x, ys)
    return filter_passes_backward(functools.partial(bilateral_backward, rt), x, ys, m, gy,
                                  win, need_x, need_m)
