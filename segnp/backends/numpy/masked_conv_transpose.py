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
GEMM (F, C) x (C, H*W) and one slice addition.  The images are the pieces spread over
the cores (``threads.py``), one image at a time, so temporaries stay the size of one
image's x and y and no (C*K, H*W) column matrix is ever built.
"""
import numpy as np

from ...window import NORM_EPS
from ..base import ELEMENT_FLOPS
from .threads import for_pieces, for_runs, sum_in_order

__all__ = ["masked_conv_transpose", "masked_conv_transpose_backward"]


class _Canvas:
    """The geometry of the output canvas of one image (see the module docstring)."""

    def __init__(self, win):
        self.win = win
        H, W = win.OH, win.OW  # the input plane
        self.HC = max((H - 1) * win.SH + (win.KS - 1) * win.DH + 1, win.PH + win.H)
        self.WC = max((W - 1) * win.SW + (win.KS - 1) * win.DW + 1, win.PW + win.W)
        self.inner = (slice(win.PH, win.PH + win.H), slice(win.PW, win.PW + win.W))
        rows = (H - 1) * win.SH + 1
        cols = (W - 1) * win.SW + 1
        self.taps = [(slice(ki * win.DH, ki * win.DH + rows, win.SH),
                      slice(kj * win.DW, kj * win.DW + cols, win.SW))
                     for ki in range(win.KS) for kj in range(win.KS)]

    def inverse(self, m, normalize):
        """(HC, WC): 1 / Z on the output pixels (1 without ``normalize``), 0 off them,
        for one image's mask m (K, H, W)."""
        inv = np.zeros((self.HC, self.WC), dtype=m.dtype)
        if normalize:
            z = np.zeros_like(inv)
            for k, tap in enumerate(self.taps):
                z[tap] += m[k]
            inv[self.inner] = 1 / (z[self.inner] + NORM_EPS)
        else:
            inv[self.inner] = 1
        return inv


def _filters(W):
    """W (C, F, KS, KS) as (K, F, C): each tap's product matrix contiguous for BLAS."""
    C, F, KS, _ = W.shape
    return np.ascontiguousarray(W.transpose(2, 3, 1, 0)).reshape(KS * KS, F, C)


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

    def image(n):
        xn = x[n].reshape(C, H * Wd)
        yc = np.zeros((F, cv.HC, cv.WC), dtype=x.dtype)
        xm = np.empty_like(xn)
        prod = np.empty((F, H * Wd), dtype=x.dtype)
        for k, tap in enumerate(cv.taps):
            np.multiply(xn, m[n, k].reshape(-1), out=xm)
            np.matmul(Wk[k], xm, out=prod)
            yc[(slice(None),) + tap] += prod.reshape(F, H, Wd)
        inner = yc[(slice(None),) + cv.inner]
        np.multiply(inner, cv.inverse(m[n], normalize)[cv.inner], out=y[n])

    for_runs(lambda lo, hi: [image(n) for n in range(lo, hi)], N,
             flops=2 * K * C * F * x[:, 0].size + ELEMENT_FLOPS * K * F * x[:, 0].size)
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
    needed).  gW is summed over the images in image order: the same on any number of
    threads.
    """
    win.check_transposed_operands("masked_conv_transpose_backward", x, m, W, gy)
    N, C, H, Wd = x.shape
    F, K, P = W.shape[1], win.K, H * Wd
    cv, Wk = _Canvas(win), _filters(W)
    # C-ordered whatever the inputs' strides: the images write through reshaped views
    gx = np.empty(x.shape, dtype=x.dtype) if need_x else None
    gm = np.empty(m.shape, dtype=x.dtype) if need_m else None

    def image(n):
        xn = x[n].reshape(C, P)
        inv = cv.inverse(m[n], normalize)
        gu = np.zeros((F, cv.HC, cv.WC), dtype=x.dtype)
        np.multiply(gy[n], inv[cv.inner], out=gu[(slice(None),) + cv.inner])
        gW = np.zeros((K, C, F), dtype=x.dtype) if need_W else None
        if need_x:
            gx[n] = 0
        s = np.zeros((cv.HC, cv.WC), dtype=x.dtype) if need_m and normalize else None
        guk = np.empty((F, P), dtype=x.dtype)
        for k, tap in enumerate(cv.taps):
            guk.reshape(F, H, Wd)[...] = gu[(slice(None),) + tap]
            mk = m[n, k].reshape(P)
            if need_x or need_m:
                a = Wk[k].T @ guk  # (C, P): the masked product's gradient
                if need_m:
                    q = gm[n, k].reshape(P)
                    np.einsum("cp,cp->p", a, xn, out=q)
                    if s is not None:
                        s[tap] += (q * mk).reshape(H, Wd)
                if need_x:
                    a *= mk
                    gx[n].reshape(C, P)[...] += a
            if need_W:
                guk *= mk
                np.matmul(xn, guk.T, out=gW[k])
        if s is not None:
            s *= -inv  # gZ, 0 off the output
            for k, tap in enumerate(cv.taps):
                gm[n, k] += s[tap]
        return gW

    def run(lo, hi):
        return [image(n) for n in range(lo, hi)]

    parts = for_pieces(run, N, flops=6 * K * C * F * P * N)
    gW = None
    if need_W:
        gW = sum_in_order(parts, lambda: np.zeros((K, C, F), dtype=x.dtype))
        gW = np.ascontiguousarray(gW.reshape(win.KS, win.KS, C, F).transpose(2, 3, 0, 1))
    return gx, gm, gW
