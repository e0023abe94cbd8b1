"""The masked convolution of Eq. 7 the way Sec. 4.2 describes it, on the CUDA tier:
build the masked columns (C*K x OH*OW per image), then one matmul (cuBLAS on a GPU).
The reference the fused kernels of ``segnp/backends/cuda/masked_conv.py`` are tested
(``test_cuda_segaware.py``) and timed (``benchmarks/bench_gpu.py``, ``gpu_verify.py``)
against; same signatures as theirs, with the runtime ``rt`` first.
"""
from segnp.backends.cuda._common import int32, launch_flat, mask_inv
from segnp.backends.cuda.masked_conv import _inputs

__all__ = ["masked_conv_composed", "masked_conv_composed_backward"]


def _columns(rt, x, m, win):
    """Masked columns (N, C*K, OH*OW): x[n, c, tap(o, k)] m[n, k, o]."""
    N, C = x.shape[:2]
    cols = rt.xp.empty((N, C * win.K, win.OH * win.OW), dtype=x.dtype)
    launch_flat(rt, "segaware.cu", "masked_im2col", x.dtype, cols.size,
                (x, m, cols, *int32(N, C, *win.ints())))
    return cols


def masked_conv_composed(rt, x, m, W, win, normalize=True):
    """:func:`masked_conv` the way Sec. 4.2 describes it: materialised masked columns
    times W by one matmul.  Same shapes and result; about C*K*OH*OW*N more memory."""
    fn = "masked_conv_composed"
    x, m, wt = _inputs(rt, fn, win, x, m, W)
    N, F = x.shape[0], wt.shape[0]
    OH, OW = win.out
    cols = _columns(rt, x, m, win)
    y = rt.xp.matmul(wt.reshape(F, -1), cols)
    y *= mask_inv(rt, m, normalize).reshape(N, 1, OH * OW)
    return y.reshape(N, F, OH, OW)


def masked_conv_composed_backward(rt, x, m, W, gy, win, normalize=True, need_x=True,
                                  need_m=True, need_W=True):
    """Gradients of :func:`masked_conv_composed` by matmuls on materialised columns:
    (gx, gm, gW) as in :func:`masked_conv_backward`."""
    fn = "masked_conv_composed_backward"
    x, m, wt, gy = _inputs(rt, fn, win, x, m, W, gy=gy)
    xp, (N, C), F = rt.xp, x.shape[:2], wt.shape[0]
    K, P = win.K, win.OH * win.OW
    inv = mask_inv(rt, m, normalize).reshape(N, 1, P)
    gyn = gy.reshape(N, F, P) * inv
    gx = gm = gW = None
    if need_W:
        gW = xp.matmul(gyn, _columns(rt, x, m, win).transpose(0, 2, 1)).sum(axis=0)
        gW = gW.reshape(wt.shape)
    if need_x or need_m:
        gcols = xp.matmul(wt.reshape(F, C * K).T, gyn)  # gradient of the masked columns
    if need_x:
        gx = xp.empty_like(x)
        launch_flat(rt, "segaware.cu", "masked_col2im", x.dtype, gx.size,
                    (xp.ascontiguousarray(gcols), m, gx, *int32(N, C, *win.ints())))
    if need_m:
        plain = _columns(rt, x, xp.ones_like(m), win)
        gm = (gcols * plain).reshape(N, C, K, P).sum(axis=1)  # inv * Q of the fused path
        if normalize:
            gm -= inv * (m.reshape(N, K, P) * gm).sum(axis=1, keepdims=True)
        gm = gm.reshape((N, K) + win.out)
    return gx, gm, gW
