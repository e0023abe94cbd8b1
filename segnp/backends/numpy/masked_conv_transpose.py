"""The masked transposed convolution, the core of ``segaware_conv_transpose2d``, on NumPy.

Notation: x (N, C, H, W) input samples, W (C, F, KS, KS) filters (in channels first,
as ``conv_transpose2d`` stores them), K = KS**2 taps in row-major order, m (N, K, H, W)
the mask of each sample's taps, y (N, F, OH, OW).  ``win`` is
:meth:`segnp.window.Window.transposed`: win.H, win.W = (OH, OW) and win.OH, win.OW =
(H, W).  Sample i sends tap k = (ki, kj) to output pixel ``tap_k(i) = (ih*SH - PH +
ki*DH, iw*SW - PW + kj*DW)``; taps that leave the output are dropped (m is 0 there)::

    y[n, f, o] = sum_{(i, k): tap_k(i) = o} sum_c W[c, f, k] x[n, c, i] m[n, k, i] / Z[n, o]

with ``Z[n, o] = sum_{(i, k): tap_k(i) = o} m[n, k, i] + NORM_EPS`` (``normalize``) or 1.
That is the adjoint, in x, of the masked convolution of Eq. 7 on an OH x OW image.

How: the output is accumulated on a canvas of ``(H-1)*SH + (KS-1)*DH + 1`` rows (at
least PH + OH; likewise columns) whose row r is output row r - PH, so that every tap's
target pixels are one strided slice of it, ``[ki*DH : : SH, kj*DW : : SW]``, and no tap
needs clipping; rows outside the output are cut away at the end.  The mask is a
per-sample scalar of each tap, so it commutes with the channel product: a tap costs one
GEMM (F, C) x (C, n*H*W) and one slice addition.  The pieces spread over the cores
(``threads.py``) are runs of n images, channels first, with n fixed by the shapes alone
(so results do not depend on the threads): temporaries stay the size of a few images'
x and y, and no (C*K, H*W) column matrix is ever built.
"""
import numpy as np

from ...window import NORM_EPS
from ..base import ELEMENT_FLOPS
from .threads import for_pieces, for_runs, sum_in_order

__all__ = ["masked_conv_transpose", "masked_conv_transpose_backward"]


class _Canvas:
    """The geometry of the output canvas (see the module docstring)."""

    def __init__(self, win):
        self.win = win
        H, W = win.OH, win.OW  # the input plane
        self.HC = max((H - 1) * win.SH + (win.KS - 1) * win.DH + 1, win.PH + win.H)
        self.WC = max((W - 1) * win.SW + (win.KS - 1) * win.DW + 1, win.PW + win.W)
        self.inner = (slice(win.PH, win.PH + win.H), slice(win.PW, win.PW + win.W))
        rows = (H - 1) * win.SH + 1
        cols = (W - 1) * win.SW + 1
        # (..., rows, cols) slices of the pixels that tap k of every sample reaches
        self.taps = [(Ellipsis, slice(ki * win.DH, ki * win.DH + rows, win.SH),
                      slice(kj * win.DW, kj * win.DW + cols, win.SW))
                     for ki in range(win.KS) for kj in range(win.KS)]
        self.out = (Ellipsis,) + self.inner

    def zeros(self, lead, dtype):
        return np.zeros(tuple(lead) + (self.HC, self.WC), dtype=dtype)

    def inverse(self, m, normalize):
        """(n, HC, WC): 1 / Z on the output pixels (1 without ``normalize``), 0 off them,
        for the mask m (n, K, H, W) of n images."""
        inv = self.zeros(m.shape[:1], m.dtype)
        if normalize:
            z = self.zeros(m.shape[:1], m.dtype)
            for k, tap in enumerate(self.taps):
                z[tap] += m[:, k]
            inv[self.out] = 1 / (z[self.out] + NORM_EPS)
        else:
            inv[self.out] = 1
        return inv


# Pieces: runs of images whose x or y (the larger) holds about this many elements, and
# at least _MIN_PIECES of them where the batch allows (so that small layers spread over
# the cores too): a rule of the shapes, never of the threads.
_PIECE_ELEMENTS = 1 << 18
_MIN_PIECES = 4


def _pieces(x, F):
    N, C, H, W = x.shape
    n = max(1, min(-(-N // _MIN_PIECES), _PIECE_ELEMENTS // max(1, max(C, F) * H * W)))
    return [(lo, min(N, lo + n)) for lo in range(0, N, n)]


def _filters(W):
    """W (C, F, KS, KS) as (K, F, C): each tap's product matrix contiguous for BLAS."""
    C, F, KS, _ = W.shape
    return np.ascontiguousarray(W.transpose(2, 3, 1, 0)).reshape(KS * KS, F, C)


def _channels_first(a):
    """(n, C, H, W) -> a contiguous (C, n*H*W): one matrix for the run's GEMMs."""
    n, C, H, W = a.shape  # explicit sizes: a -1 cannot be inferred when C is 0
    return np.ascontiguousarray(a.transpose(1, 0, 2, 3)).reshape(C, n * H * W)


def masked_conv_transpose(x, m, W, win, normalize=True):
    """The masked transposed convolution without bias (see the module docstring).

    x (N, C, H, W), m (N, K, H, W) (0 at taps that leave the output), W (C, F, KS, KS),
    ``win`` = ``Window.transposed(...)`` -> y (N, F, OH, OW).
    """
    win.check_transposed_operands("masked_conv_transpose", x, m, W)
    N, C, H, Wd = x.shape
    F, K = W.shape[1], win.K
    cv, Wk = _Canvas(win), _filters(W)
    y = np.empty((N, F, win.H, win.W), dtype=x.dtype)
    pieces = _pieces(x, F)

    def piece(lo, hi):
        n, mn = hi - lo, m[lo:hi]
        xc = _channels_first(x[lo:hi])
        yc = cv.zeros((F, n), x.dtype)
        xm, prod = np.empty_like(xc), np.empty((F, xc.shape[1]), dtype=x.dtype)
        for k, tap in enumerate(cv.taps):
            np.multiply(xc, mn[:, k].reshape(-1), out=xm)
            np.matmul(Wk[k], xm, out=prod)
            yc[tap] += prod.reshape(F, n, H, Wd)
        yc *= cv.inverse(mn, normalize)
        y[lo:hi] = yc[cv.out].transpose(1, 0, 2, 3)

    for_runs(lambda a, b: [piece(*p) for p in pieces[a:b]], len(pieces),
             flops=(2 * C + ELEMENT_FLOPS) * K * F * N * H * Wd)
    return y


def masked_conv_transpose_backward(x, m, W, gy, win, normalize=True, need_x=True,
                                   need_m=True, need_W=True):
    """Gradients of :func:`masked_conv_transpose`: gy (N, F, OH, OW) -> (gx (N, C, H, W),
    gm (N, K, H, W), gW (C, F, KS, KS)), None where not needed.

    With gu = gy / Z on the canvas (0 off the output) and gu_k its slice at tap k
    (F, H*W): ``gW_k = x (gu_k m_k)^T``; ``gx = sum_k (W_k gu_k) m_k``;
    ``Q_k = sum_c x (W_k gu_k)``, which is gm without ``normalize``.  With it, every
    tap reaching o also feels Z[o]: ``gm_k(i) = Q_k(i) + gZ[tap_k(i)]`` with
    ``gZ[o] = -(1/Z[o]) sum_{(i,k) -> o} m_k(i) Q_k(i)`` (= -sum_f gu y, so y is not
    needed).  gW is summed over the pieces in piece order: the same on any number of
    threads.
    """
    win.check_transposed_operands("masked_conv_transpose_backward", x, m, W, gy)
    N, C, H, Wd = x.shape
    F, K = W.shape[1], win.K
    cv, Wk = _Canvas(win), _filters(W)
    gx = np.empty(x.shape, dtype=x.dtype) if need_x else None
    gm = np.empty(m.shape, dtype=x.dtype) if need_m else None
    pieces = _pieces(x, F)

    def piece(lo, hi):
        n, mn = hi - lo, m[lo:hi]
        xc = _channels_first(x[lo:hi])
        inv = cv.inverse(mn, normalize)
        gu = cv.zeros((F, n), x.dtype)
        gu[cv.out] = gy[lo:hi].transpose(1, 0, 2, 3)
        gu *= inv
        gW = np.zeros((K, C, F), dtype=x.dtype) if need_W else None
        gxc = np.zeros_like(xc) if need_x else None
        q = np.empty((K, n, H, Wd), dtype=x.dtype) if need_m else None
        s = cv.zeros((n,), x.dtype) if need_m and normalize else None
        guk = np.empty((F, n, H, Wd), dtype=x.dtype)
        g2 = guk.reshape(F, n * H * Wd)
        for k, tap in enumerate(cv.taps):
            guk[...] = gu[tap]
            mk = mn[:, k].reshape(-1)
            if need_x or need_m:
                a = Wk[k].T @ g2  # (C, n*H*W): the masked product's gradient
                if need_m:
                    qk = q[k].reshape(-1)
                    np.einsum("cp,cp->p", a, xc, out=qk)
                    if s is not None:
                        s[tap] += q[k] * mn[:, k]
                if need_x:
                    a *= mk
                    gxc += a
            if need_W:
                g2 *= mk
                np.matmul(xc, g2.T, out=gW[k])
        if need_x:
            gx[lo:hi] = gxc.reshape(C, n, H, Wd).transpose(1, 0, 2, 3)
        if need_m:
            if s is not None:
                s *= -inv  # gZ, 0 off the output
                for k, tap in enumerate(cv.taps):
                    q[k] += s[tap]
            gm[lo:hi] = q.transpose(1, 0, 2, 3)
        return gW

    parts = for_pieces(lambda a, b: [piece(*p) for p in pieces[a:b]], len(pieces),
                       flops=6 * K * C * F * N * H * Wd)
    gW = None
    if need_W:
        gW = sum_in_order(parts, lambda: np.zeros((K, C, F), dtype=x.dtype))
        gW = np.ascontiguousarray(gW.reshape(win.KS, win.KS, C, F).transpose(2, 3, 0, 1))
    return gx, gm, gW
