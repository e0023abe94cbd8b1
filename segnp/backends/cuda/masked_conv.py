"""Launchers of the masked GEMM, the core of segmentation-aware convolution (Eq. 7):

    y[n, f, o] = sum_{c, k} W[f, c, k] x[n, c, tap(o, k)] m[n, k, o] / (sum_k m[n, k, o] + eps)

(the denominator only when ``normalize``): the fused tiled kernels of ``masked_conv.cu``,
which mask the column tile in shared memory and never store the masked column matrix.
(Sec. 4.2 taken literally, masked columns then one matmul, is the reference they are
tested and timed against: ``tests/composed.py``.)

Shapes: x (N, C, H, W), m (N, K, OH, OW) (already 0 at taps outside the image),
W (F, C, KS, KS) with K = KS*KS, y and gy (N, F, OH, OW).
"""
from ._common import (checked_window, contiguous, finish_mask_grad, int32, mask_inv,
                      plane_limit)

__all__ = ["masked_conv", "masked_conv_backward", "tile_defines"]

# Tile shapes (MG_BM, MG_BN, MG_BK, MG_TM, MG_TN) of masked_conv.cu; see its header.
# 'large' suits F, C >= 64; 'small' wastes less on tiny layers.  Results are the same
# up to rounding; tests run both.
TILES = {"large": (64, 128, 16, 4, 8), "small": (32, 32, 8, 2, 2)}
TILE = "large"


def tile_defines(tile=None):
    """The ``#define``s that build masked_conv.cu with tile shape ``tile`` (default: the
    current ``TILE``), and the threads per block it needs.  tests/test_nvrtc.py compiles
    each shape with exactly these."""
    bm, bn, bk, tm, tn = TILES[TILE if tile is None else tile]
    defines = {"MG_BM": bm, "MG_BN": bn, "MG_BK": bk, "MG_TM": tm, "MG_TN": tn}
    return defines, (bm // tm) * (bn // tn)


def _gemm(rt, name, dtype):
    """The kernel ``name<T>`` built with the current tile shape, and that shape."""
    defines, threads = tile_defines()
    bm, bn, bk = defines["MG_BM"], defines["MG_BN"], defines["MG_BK"]
    return rt.kernel("masked_conv.cu", name, dtype, defines=defines), (bm, bn, bk, threads)


def _cdiv(a, b):
    return -(-a // b)


_GRID_X, _GRID_YZ = 2 ** 31 - 1, 65535


def gemm_grid(fn, N, cols, rows, bm, bn, what):
    """The grid of a masked-GEMM launch over ``N`` images of ``cols`` output columns
    (tiled by ``bn``, folded with the batch into gridDim.x) and ``rows`` output rows
    (tiled by ``bm`` on gridDim.y), or None when there is nothing to compute.
    ValueError naming the limit when a dimension would pass CUDA's."""
    tiles = _cdiv(cols, bn)
    x, y = N * tiles, _cdiv(rows, bm)
    if x == 0 or y == 0:
        return None
    if x > _GRID_X:
        raise ValueError(f"{fn}: N * ceil({what[0]} / {bn}) = {x} blocks exceed CUDA's "
                         f"gridDim.x limit of {_GRID_X}; split the batch")
    if y > _GRID_YZ:
        raise ValueError(f"{fn}: ceil({what[1]} / {bm}) = {y} blocks exceed CUDA's "
                         f"gridDim.y limit of {_GRID_YZ}")
    return x, y




def _inputs(rt, fn, win, x, m, W, **more):
    """The launch checks (the arrays agree with ``win``; 32-bit counts), before any copy,
    which could be huge; then x, m, W and ``more`` (gy) C-contiguous."""
    checked_window(fn, win, x, W, m=m, **more)
    # Besides H*W and OH*OW, the GEMMs' reduction and column counts.
    plane_limit(fn, "C*K", x.shape[1] * win.K)
    plane_limit(fn, "F*K", W.shape[0] * win.K)
    return contiguous(rt, x, m, W, *more.values())


def masked_conv(rt, x, m, W, win, normalize=True):
    """Eq. 7 without bias, fused: x (N, C, H, W), m (N, K, OH, OW), W (F, C, KS, KS)
    -> y (N, F, OH, OW)."""
    fn = "masked_conv"
    x, m, wt = _inputs(rt, fn, win, x, m, W)
    N, C, H, Wd = x.shape
    F = wt.shape[0]
    OH, OW = win.out
    y = rt.xp.empty((N, F, OH, OW), dtype=x.dtype)
    k, (bm, bn, _, threads) = _gemm(rt, "masked_gemm_fwd", x.dtype)
    grid = gemm_grid(fn, N, OH * OW, F, bm, bn, ("OH*OW", "F"))
    if grid is None:  # N = 0 or F = 0 (C = 0 still launches: y is a sum of nothing, 0)
        return y
    inv = mask_inv(rt, m, normalize)
    wk = rt.xp.ascontiguousarray(wt.transpose(0, 2, 3, 1))  # (F, KH, KW, C): tap-major rows
    k(grid, (threads,), (x, m, wk, inv, y, *int32(C, F, *win.ints())))
    return y


def _split(NP, tiles, bk):
    """(S, chunk) for the split reduction of gW: S chunks of ``chunk`` (a multiple of the
    tile depth) cover the N*P positions.  Enough blocks to fill a large GPU while each
    still sums a long run.  It depends only on the shapes, so results are reproducible."""
    S = max(1, min(_cdiv(512, tiles), NP // 512))
    chunk = _cdiv(_cdiv(NP, S), bk) * bk
    return _cdiv(NP, chunk), chunk


def masked_conv_backward(rt, x, m, W, gy, win, normalize=True, need_x=True, need_m=True,
                         need_W=True):
    """Gradients of :func:`masked_conv`: (gx (N, C, H, W), gm (N, K, OH, OW),
    gW (F, C, KS, KS)), None where not needed.

    gx: masked col2im of W^T gy, gathered per pixel.  gW: a GEMM over N*OH*OW split
    into fixed chunks whose partial sums are added in order (deterministic).
    gm: Q_k = sum_c x_c[tap k] (W^T gy)_ck, which is the gradient without the
    denominator; with it, gm_k = inv (Q_k - inv sum_j m_j Q_j) (the quotient rule).
    """
    fn = "masked_conv_backward"
    x, m, wt, gy = _inputs(rt, fn, win, x, m, W, gy=gy)
    xp = rt.xp
    N, C, H, Wd = x.shape
    F = wt.shape[0]
    KS, OH, OW = win.KS, win.OH, win.OW
    K, P = KS * KS, OH * OW
    inv = mask_inv(rt, m, normalize)
    # W as (C, K, F): the A operand of both the gx and the gm GEMMs, row-major.
    wT = xp.ascontiguousarray(wt.reshape(F, C, K).transpose(1, 2, 0)) if need_x or need_m else None
    sizes = int32(C, F, *win.ints())
    gx = gm = gW = None
    # Empty shapes: a grid of None launches nothing; its output is empty, or a sum of
    # nothing (0) where only the reduction is empty (gW when N = 0).
    if need_x:
        gx = xp.empty_like(x)
        k, (bm, bn, _, threads) = _gemm(rt, "masked_gemm_bwd_x", x.dtype)
        grid = gemm_grid(fn, N, H * Wd, C, bm, bn, ("H*W", "C"))
        if grid is not None:
            k(grid, (threads,), (gy, m, wT, inv, gx, *sizes))
    if need_W:
        k, (bm, bn, bk, threads) = _gemm(rt, "masked_gemm_bwd_w", x.dtype)
        grid = gemm_grid(fn, 1, C * K, F, bm, bn, ("C*K", "F"))
        if grid is None or N * P == 0:
            gW = xp.zeros_like(wt)
        else:
            S, chunk = _split(N * P, grid[0] * grid[1], bk)
            part = xp.empty((S, F, KS, KS, C), dtype=x.dtype)  # tap-major columns
            k(grid + (S,), (threads,), (x, m, gy, inv, part, *int32(N), *sizes, *int32(chunk)))
            gW = xp.ascontiguousarray((part.sum(axis=0) if S > 1 else part[0])
                                      .transpose(0, 3, 1, 2))
    if need_m:
        gm = xp.empty_like(m)
        k, (bm, bn, _, threads) = _gemm(rt, "masked_gemm_bwd_m", x.dtype)
        grid = gemm_grid(fn, N, P, K, 1, bn, ("OH*OW", "K"))
        if grid is not None:
            k(grid, (threads,), (x, gy, wT, gm, *sizes))
            if normalize:
                finish_mask_grad(rt, m, inv, gm)
    return gx, gm, gW
