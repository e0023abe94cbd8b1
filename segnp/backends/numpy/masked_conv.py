"""The masked convolution of Eq. 7 on NumPy (Sec. 4.2's masked GEMM).

Notation as in ``segaware.py``: x (N, C, H, W) features, W (F, C, KH, KW) filters with
KH = KW = ksize odd, K = ksize**2 taps in row-major order, m (N, K, OH, OW) the mask
of Eq. 3, y (N, F, OH, OW).  Tap k of output o reads input pixel ``tap_k(o)``; for one
tap the outputs whose tap lies inside the image form a rectangle (``Window.taps``).

Sec. 4.2 multiplies W by a masked image-to-column matrix of C*K rows.  With stride 1
(``_Flat``) that matrix is built and used a cache-sized chunk of columns at a time,
every tap being a column-shifted view of one zero-padded canvas of x, and the chunks are
spread over the cores (``threads.py``).  Other strides
accumulate ``y += W_k @ (x_k * m_k)`` with one BLAS call per tap over the whole batch.
Either way the temporaries stay far below a whole im2col buffer.
"""
import numpy as np
from scipy.linalg import blas as _blas

from ._common import mask_sum, shifted
from .canvas import Canvas
from .threads import for_pieces, for_runs, sum_in_order

__all__ = ["masked_conv", "masked_conv_backward"]


# ---- the masked convolution (Eq. 7, Sec. 4.2's masked GEMM) -------------------------
def _filters_by_tap(W):
    """W (F, C, KH, KW) as (K, F, C): each tap's filter matrix contiguous for BLAS."""
    F, C, KH, KW = W.shape
    return np.ascontiguousarray(W.transpose(2, 3, 0, 1)).reshape(KH * KW, F, C)


def masked_conv(x, m, W, win, normalize=True):
    """Segmentation-aware convolution without bias (Eq. 7).

    x (N, C, H, W), m (N, K, OH, OW), W (F, C, k, k) -> y (N, F, OH, OW)::

        y[n, f, o] = sum_{c,k} W[f, c, k] x[n, c, tap_k(o)] m[n, k, o] / Z[n, o]

    with ``Z = sum_k m[n, k, o] + NORM_EPS`` when ``normalize`` and 1 otherwise.  m must
    already be 0 at taps outside the image (the mask functions multiply by the tap
    validity), so outside taps count in neither the sum nor Z.  Stride 1 runs on
    column chunks of a padded canvas (``_Flat``).  Other strides do one GEMM per tap:
    ``y += W_k @ (x_k * m_k)`` over (F, C) x (C, N*OH*OW).  The products live
    channels-first, (C, N, OH, OW), so that the whole batch is one matrix: K BLAS calls
    in all rather than N*K, which keeps a multi-threaded BLAS from paying its start-up
    cost N times per tap.
    """
    win.check_operands("masked_conv", x, W, m=m)
    if _flat_applies(win, x, W):
        return _Flat(win, x, m, W).forward(normalize)
    o = win.out
    N, C = x.shape[:2]
    F, P = W.shape[0], N * o[0] * o[1]
    a = np.empty((C, N) + o, dtype=x.dtype)
    a_nc = a.transpose(1, 0, 2, 3)  # the same buffer seen as (N, C, OH, OW)
    y = np.zeros((F, P), dtype=x.dtype)
    Wt = _filters_by_tap(W)
    for kk, rect, tap, _ in win.taps():
        if rect is None:
            continue
        shifted(x, rect, tap, a_nc, m[:, kk, None])
        _gemm_accumulate(y, Wt[kk], a.reshape(C, P))
    y = y.reshape((F, N) + o).transpose(1, 0, 2, 3)
    out = np.empty((N, F) + o, dtype=x.dtype)
    if normalize:  # the division and the move to (N, F, OH, OW) in one pass
        return np.divide(y, mask_sum(m)[:, None], out=out)
    np.copyto(out, y)
    return out


def _gemm_accumulate(c, a, b):
    """``c += a @ b`` in place by one BLAS call with beta = 1, no temporary product.

    c (M, P) and a (M, K), b (K, P) must be C-contiguous: BLAS, column-major, sees each
    of them transposed, so it computes ``c^T += b^T a^T``.
    """
    if c.size == 0 or a.shape[1] == 0:   # BLAS refuses empty operands; nothing to add
        return
    gemm = _blas.get_blas_funcs("gemm", (c,))
    out = gemm(1.0, b.T, a.T, beta=1.0, c=c.T, overwrite_c=True)
    if not np.shares_memory(out, c):  # a copy was made: a layout promise was broken
        raise RuntimeError("masked_conv: the BLAS product did not accumulate in place")


def masked_conv_backward(x, m, W, gy, win, normalize=True, need_x=True, need_m=True,
                         need_W=True):
    """Gradients of :func:`masked_conv`: gy (N, F, OH, OW) -> (gx, gm, gW).

    gx (N, C, H, W), gm (N, K, OH, OW), gW (F, C, k, k); None where not needed.  The
    forward products are recomputed tap by tap rather than cached.  With gu = gy / Z:

    - ``gW_k = sum_{n,o} gu[n, :, o] (x_k m_k)[n, :, o]^T``;
    - ``gx`` gathers ``(W_k^T gu) * m_k`` back to each tap's pixels;
    - ``gm_k = sum_c (W_k^T gu) x_k``, and with ``normalize`` every k also gets
      ``-sum_f gu y`` (the derivative through Z), computed as ``-sum_k gm_k m_k / Z``
      so that y is not needed.  gm is therefore nonzero at outside taps too (through Z).

    As in the forward pass, gu and the per-tap buffers are channels-first (F or C, N,
    OH, OW): two GEMMs per tap over the whole batch.
    """
    win.check_operands("masked_conv_backward", x, W, m=m, gy=gy)
    if _flat_applies(win, x, W):
        return _Flat(win, x, m, W).backward(gy, normalize, need_x, need_m, need_W)
    o = win.out
    N, C = x.shape[:2]
    F, K, P = W.shape[0], win.K, N * o[0] * o[1]
    Wt = _filters_by_tap(W)
    gu = np.empty((F, N) + o, dtype=x.dtype)  # channels-first, for whole-batch GEMMs
    if normalize:  # the division and the move to (F, N, OH, OW) in one pass
        Z = mask_sum(m)
        np.divide(gy.transpose(1, 0, 2, 3), Z, out=gu)
    else:
        np.copyto(gu, gy.transpose(1, 0, 2, 3))
    gu = gu.reshape(F, P)
    gx = np.zeros_like(x) if need_x else None
    gm = np.zeros((N, K) + o, dtype=x.dtype) if need_m else None
    gW = np.zeros((K, F, C), dtype=x.dtype) if need_W else None
    xk = np.empty((C, N) + o, dtype=x.dtype) if (need_m or need_W) else None
    ga = np.empty((C, P), dtype=x.dtype) if (need_x or need_m) else None
    for kk, rect, tap, _ in win.taps():
        if rect is None:
            continue
        mk = m[:, kk, None]
        if xk is not None:
            shifted(x, rect, tap, xk.transpose(1, 0, 2, 3))
        if ga is not None:
            np.matmul(Wt[kk].T, gu, out=ga)
            if need_m:
                # explicit sizes: a -1 cannot be inferred when N or C is 0
                HW = o[0] * o[1]
                gm[:, kk] = np.einsum("cnp,cnp->np", ga.reshape(C, N, HW),
                                      xk.reshape(C, N, HW)).reshape((N,) + o)
            if need_x:
                ga_nc = ga.reshape((C, N) + o).transpose(1, 0, 2, 3)
                ga_nc *= mk
                gx[:, :, tap[0], tap[1]] += ga_nc[(slice(None), slice(None)) + rect]
        if need_W:
            xk_nc = xk.transpose(1, 0, 2, 3)
            xk_nc *= mk
            gW[kk] = np.matmul(gu, xk.reshape(C, P).T)
    if need_m and normalize:
        gm -= (np.einsum("nkhw,nkhw->nhw", gm, m) / Z)[:, None]
    if need_W:
        gW = np.ascontiguousarray(gW.reshape(win.ksize + (F, C)).transpose(2, 3, 0, 1))
    return gx, gm, gW


# ---- stride 1: taps as column offsets of a padded canvas -------------------------------
# Bytes of one chunk's column buffer (K*C, chunk): it and the canvas columns the chunk
# reads stay in a core's cache between the mask products and the GEMM.  The chunks are
# spread over the cores (``threads.py``), BLAS single-threaded in each; their size
# depends on the shapes only, never on the number of threads, so neither do the results.
# (N=8, C=F=64, 128x128, forward+backward, 2 cores, min of 7 alternating rounds: chunks
# of 0.5, 1, 2, 4 and 32 MiB on two threads 0.405, 0.334, 0.306, 0.301 and 0.334 s; one
# 32 MiB chunk at a time with BLAS on two threads, as before the threads, 0.371 s.)
_CHUNK_BYTES = 4 << 20
_MIN_CHUNK = 256  # columns: narrower GEMMs lose more to call overhead than cache saves
_MIN_RUNS = 4


def _flat_applies(win, x, W):
    """Whether the canvas path below handles this call: stride 1 and no empty axis."""
    return Canvas.applies(win, x) and W.shape[0] > 0


class _Flat(Canvas):
    """Eq. 7 for stride 1 on the zero canvas of ``canvas.py``: every tap's input is a
    column-shifted view of one array, so there is no per-tap copy, and the columns
    split into chunks that fit the cache.  Each chunk builds the masked columns
    (K*C, chunk) of Sec. 4.2 and does one GEMM with all C*K filter taps.

    The chunks run on several threads.  Each writes only its own columns of y, gm and
    gx; the gx a chunk's taps send past its last column, and its share of gW, are added
    afterwards in chunk order, so the sums do not depend on the number of threads.
    """

    def __init__(self, win, x, m, W):
        super().__init__(win, x)
        self.m, self.W, self.F = m, W, W.shape[0]
        # At least _MIN_RUNS chunks where that leaves them _MIN_CHUNK wide, so that small
        # layers spread over the cores too (a rule of the shapes, not of the threads).
        chunk = _CHUNK_BYTES // (x.itemsize * self.K * max(self.C, self.F))
        self.chunk = max(_MIN_CHUNK, min(chunk, -(-self.L // _MIN_RUNS)))

    def _canvas(self):
        return self.image(), self.on_outputs(self.m)

    def _chunks(self):
        for j0 in range(0, self.L, self.chunk):
            yield j0, min(self.L, j0 + self.chunk)

    def _masked_columns(self, xc, mc, j0, j1, cols):
        """cols[k*C + c, q - j0] = x_k[c, q] m_k[q] for canvas columns j0 <= q < j1."""
        C = self.C
        for k, off in enumerate(self.offsets):
            np.multiply(xc[:, j0 + off:j1 + off], mc[k, j0:j1], out=cols[k * C:(k + 1) * C])

    def _filters(self):
        """W (F, C, KH, KW) as (F, K*C), the row order of the masked columns."""
        F, C, K = self.F, self.C, self.K
        return np.ascontiguousarray(self.W.reshape(F, C, K).transpose(0, 2, 1)).reshape(F, K * C)

    def _flops(self):
        return 2 * self.K * self.C * self.F * self.L

    def forward(self, normalize):
        xc, mc = self._canvas()
        W2 = self._filters()
        yc = np.empty((self.F, self.L), dtype=xc.dtype)
        chunks = list(self._chunks())

        def run(lo, hi):
            cols = np.empty((self.K * self.C, self.chunk), dtype=xc.dtype)
            for j0, j1 in chunks[lo:hi]:
                c = cols[:, :j1 - j0]
                self._masked_columns(xc, mc, j0, j1, c)
                np.matmul(W2, c, out=yc[:, j0:j1])

        for_runs(run, len(chunks), flops=self._flops())
        return self.from_outputs(yc, mask_sum(self.m) if normalize else None)

    def backward(self, gy, normalize, need_x, need_m, need_W):
        C, F, K = self.C, self.F, self.K
        xc, mc = self._canvas()
        W2 = self._filters()
        Z = mask_sum(self.m) if normalize else None
        guc = self.on_outputs(gy, Z)
        gxc = self.zeros(C, self.tail) if need_x else None
        gmc = np.empty((K, self.L), dtype=xc.dtype) if need_m else None
        chunks = list(self._chunks())
        spill = self.tail

        def run(lo, hi):
            cols = np.empty((K * C, self.chunk), dtype=xc.dtype)
            return [self._backward_chunk(xc, mc, W2, guc, gxc, gmc, j0, j1, cols, need_W)
                    for j0, j1 in chunks[lo:hi]]

        parts = for_pieces(run, len(chunks), flops=2 * self._flops())
        gx = gm = gW = None
        if need_x:
            # Each chunk wrote its own columns; what its taps sent past its end is added
            # now, chunk by chunk: the same sums in the same order on any number of threads.
            for (_, j1), (_, tail) in zip(chunks, parts):
                gxc[:, j1:j1 + spill] += tail
            gx = self.from_image(gxc)
        if need_m:
            gm = self.from_outputs(gmc)
            if normalize:
                gm -= (np.einsum("nkhw,nkhw->nhw", gm, self.m) / Z)[:, None]
        if need_W:
            # gW as (K*C, F): (K*C, chunk) @ (chunk, F) runs faster in BLAS than the
            # transpose; the chunks' products are added in chunk order.
            gWt = sum_in_order([part for part, _ in parts],
                               lambda: np.zeros((K * C, F), dtype=xc.dtype))
            gW = np.ascontiguousarray(gWt.reshape(K, C, F).transpose(2, 1, 0)).reshape(
                self.W.shape)
        return gx, gm, gW

    def _backward_chunk(self, xc, mc, W2, guc, gxc, gmc, j0, j1, cols, need_W):
        """One chunk of output columns: returns (its gW product or None, the part of gx
        its taps send past j1, or None).  Writes gm[:, j0:j1] and gx[:, j0:j1]."""
        C = self.C
        gu, c = guc[:, j0:j1], cols[:, :j1 - j0]
        gWt = tail = None
        if need_W:
            self._masked_columns(xc, mc, j0, j1, c)
            gWt = c @ gu.T
        if gxc is None and gmc is None:
            return gWt, tail
        np.matmul(W2.T, gu, out=c)  # the columns' gradient, before the mask
        if gxc is not None:
            spill = self.tail
            tail = np.zeros((C, spill), dtype=c.dtype)  # columns j1 .. j1 + spill - 1
        for k, off in enumerate(self.offsets):
            ga, xk = c[k * C:(k + 1) * C], xc[:, j0 + off:j1 + off]
            if gmc is not None:
                np.einsum("cp,cp->p", ga, xk, out=gmc[k, j0:j1])
            if gxc is not None:
                ga *= mc[k, j0:j1]
                # canvas columns j0+off .. j1+off: this chunk's own up to j1, the tail after
                own = max(0, j1 - j0 - off)
                gxc[:, j0 + off:j1] += ga[:, :own]
                tail[:, max(0, off - (j1 - j0)):off] += ga[:, own:]
        return gWt, tail
