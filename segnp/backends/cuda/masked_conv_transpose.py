"""Launchers of the masked transposed convolution of ``segaware_conv_transpose2d``
(``masked_conv_transpose.cu``), with the signatures of the NumPy twins in
``backends/numpy/masked_conv_transpose.py`` after the runtime ``rt``.

Shapes: x (N, C, H, W) and m (N, K, H, W) on the input plane, W (C, F, KS, KS), y and
gy (N, F, OH, OW); ``win`` is ``Window.transposed``, so win.H, win.W = (OH, OW) and
win.OH, win.OW = (H, W), and ``*win.ints()`` builds the kernels' ``SegWindow``.
"""
from ...window import NORM_EPS
from ._common import grid_1d, int32, plane_limit, real

__all__ = ["masked_conv_transpose", "masked_conv_transpose_backward"]

SOURCE = "masked_conv_transpose.cu"


def _launch(rt, name, dtype, total, args):
    rt.kernel(SOURCE, name, dtype)(grid_1d(rt, total), (rt.threads,), tuple(args))


def _operands(rt, fn, win, x, m, W, gy=None):
    """The arrays checked against the window and the kernels' 32-bit per-image indices,
    and made C-contiguous (kernels ignore strides)."""
    win.check_transposed_operands(fn, x, m, W, gy)
    plane_limit(fn, "OH*OW", win.H * win.W)
    plane_limit(fn, "H*W", win.OH * win.OW)
    return [rt.xp.ascontiguousarray(a) for a in (x, m, W) + (() if gy is None else (gy,))]


def _inv(rt, m, win, normalize):
    """inv (N, OH, OW): 1 / (the mask weights reaching each pixel + NORM_EPS), or ones."""
    N = m.shape[0]
    inv = rt.xp.empty((N, win.H, win.W), dtype=m.dtype)
    _launch(rt, "tconv_inv", m.dtype, inv.size,
            (m, inv, *int32(N, *win.ints()), *real(m.dtype, NORM_EPS), *int32(int(normalize))))
    return inv


def masked_conv_transpose(rt, x, m, W, win, normalize=True):
    """x (N, C, H, W), m (N, K, H, W), W (C, F, KS, KS) -> y (N, F, OH, OW)."""
    x, m, W = _operands(rt, "masked_conv_transpose", win, x, m, W)
    N, C = x.shape[:2]
    F = W.shape[1]
    y = rt.xp.empty((N, F, win.H, win.W), dtype=x.dtype)
    inv = _inv(rt, m, win, normalize)
    if y.size:
        _launch(rt, "tconv_fwd", x.dtype, y.size,
                (x, m, W, inv, y, *int32(N, C, F, *win.ints())))
    return y


def masked_conv_transpose_backward(rt, x, m, W, gy, win, normalize=True, need_x=True,
                                   need_m=True, need_W=True):
    """Gradients of :func:`masked_conv_transpose`: (gx (N, C, H, W), gm (N, K, H, W),
    gW (C, F, KS, KS)), None where not needed.  gm is Q (``tconv_bwd_m``), plus, with
    ``normalize``, the share of each pixel's denominator that its taps feel."""
    x, m, W, gy = _operands(rt, "masked_conv_transpose_backward", win, x, m, W, gy)
    xp = rt.xp
    N, C = x.shape[:2]
    F = W.shape[1]
    inv = _inv(rt, m, win, normalize)
    sizes = int32(N, C, F, *win.ints())
    grads = []
    # (needed, kernel, output like, inputs): each kernel gathers into its own output
    for need, name, like, args in ((need_x, "tconv_bwd_x", x, (gy, m, W)),
                                   (need_m, "tconv_bwd_m", m, (x, gy, W)),
                                   (need_W, "tconv_bwd_w", W, (x, m, gy))):
        g = xp.empty_like(like) if need else None
        if need and g.size:
            _launch(rt, name, x.dtype, g.size, (*args, inv, g, *sizes))
        grads.append(g)
    gx, gm, gW = grads
    if need_m and normalize and gm.size:
        gz = xp.empty_like(inv)
        _launch(rt, "tconv_grad_z", x.dtype, gz.size, (m, gm, inv, gz, *int32(N, *win.ints())))
        _launch(rt, "tconv_finish_m", x.dtype, gm.size, (gz, gm, *int32(N, *win.ints())))
    return gx, gm, gW
