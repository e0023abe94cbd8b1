"""Segmentation-aware transposed convolution: joint upsampling guided by embeddings at
the output resolution (issue 22; the idea of the pixel-adaptive convolution of Su et
al., CVPR 2019, built on the masks of Eq. 3).

Notation: x (N, C, H, W), W (C, F, KS, KS) with KS odd, e (N, D, OH, OW) at the
*output* resolution, y (N, F, OH, OW), OH as in :func:`conv_transpose2d`.  Input sample
i sits at output pixel ``p(i) = i*stride - padding + dilation*(KS//2)`` and sends tap k
to ``tap_k(i) = i*stride - padding + k*dilation``, exactly as ``conv_transpose2d`` does;
that contribution is weighted by ``m[n, k, i] = exp(-lam ||e[tap_k(i)] - e[p(i)]||)``,
the mask of Eq. 3 between the pixel it lands on and the sample's own position.

The window of these masks is the window of the segmentation-aware convolution this op
is the adjoint of (:meth:`segnp.window.Window.transposed`): the mask is
``segaware_mask`` of e on that window, computed by the existing im2dist kernels, and
the product is its own kernel, ``masked_conv_transpose`` (every backend).
"""
from .._validate import check_float, check_ndim, check_norm, check_same_dtype
from ..autograd import Function, as_tensor
from ..window import Window
from .segaware import SegAwareMask, _embeddings, _lam

__all__ = ["segaware_conv_transpose2d"]


class MaskedConvTranspose2d(Function):
    """(x (N, C, H, W), m (N, K, H, W), W (C, F, KS, KS), b (F,) or None) ->
    y (N, F, OH, OW): the transposed product with the mask given, plus the bias."""

    def __init__(self, window, normalize=True):
        self.win, self.normalize = window, normalize

    def forward(self, x, m, W, b):
        if any(self.needs_input_grad[:3]):
            # one attribute each: segnp.torch saves (and guards against in-place changes)
            # the arrays an op keeps as attributes, not arrays inside a tuple
            self.x, self.m, self.W = x, m, W
        y = self.backend.masked_conv_transpose(x, m, W, self.win, self.normalize)
        if b is not None:
            y += b[:, None, None]
        return y

    def backward(self, gy):
        *need, need_b = self.needs_input_grad
        grads = (None, None, None)
        if any(need):
            grads = self.backend.masked_conv_transpose_backward(self.x, self.m, self.W, gy,
                                                                self.win, self.normalize,
                                                                *need)
        return (*grads, gy.sum(axis=(0, 2, 3)) if need_b else None)


def segaware_conv_transpose2d(x, e, W, b=None, lam=0.0, stride=1, padding=0,
                              output_padding=0, dilation=1, norm="l1", normalize=True):
    """Segmentation-aware transposed convolution (joint upsampling).

    x (N, C, H, W), e (N, D, OH, OW), W (C, F, k, k) with k odd, b (F,) or None ->
    y (N, F, OH, OW), ``OH = (H - 1)*stride - 2*padding + dilation*(k - 1) +
    output_padding + 1`` (likewise OW)::

        y[n, f, o] = sum_{(i, k): tap_k(i) = o} W[c, f, k] x[n, c, i] m[n, k, i] / Z[n, o] + b[f]

    summed over c too, with ``m = exp(-lam ||e[n, :, o] - e[n, :, p(i)]||)`` (Eq. 3's
    distance, ``norm`` 'l1', 'l2' or 'l2sq'), ``p(i) = i*stride - padding +
    dilation*(k//2)`` and ``Z[n, o] = sum over the same (i, k) of m + NORM_EPS`` when
    ``normalize``, else 1.  Taps that leave the output are dropped.  ``padding`` must be
    at most ``dilation*(k//2)`` (so that every p(i) lies in the output); the usual x2
    upsampling with k = 5 is stride 2, padding 2, output_padding 1 (then p(i) = 2i).
    lam = 0 and ``normalize=False`` give exactly :func:`conv_transpose2d`; lam = 0 with
    ``normalize`` divides it by the number of taps reaching each pixel.  Gradients flow
    to x, W, b, e and lam (a float or a 0-d Tensor, >= 0).
    """
    x, e, W, b, lam, win = segaware_conv_transpose2d_args(
        x, e, W, b, lam, stride, padding, output_padding, dilation, norm)
    m = SegAwareMask(win, norm, True)(e, lam)
    return MaskedConvTranspose2d(win, normalize)(x, m, W, b)


def segaware_conv_transpose2d_args(x, e, W, b=None, lam=0.0, stride=1, padding=0,
                                   output_padding=0, dilation=1, norm="l1",
                                   fn="segaware_conv_transpose2d"):
    """Checked (x, e, W, b, lam, window) of :func:`segaware_conv_transpose2d` (also
    the checks of ``segnp.torch``'s twin)."""
    x, W = as_tensor(x), as_tensor(W)
    check_float(fn, "x", x.data)
    check_ndim(fn, "x", x, "(N, C, H, W)")
    check_float(fn, "W", W.data)
    check_ndim(fn, "W", W, "(C, F, k, k)")
    C, F, KH, KW = W.shape
    if C != x.shape[1] or KH != KW:
        raise ValueError(f"{fn}: W must be (C, F, k, k) with C = {x.shape[1]} (x's channels) "
                         f"and a square odd window; got W of shape {W.shape}")
    win = Window.transposed(fn, x.shape[2], x.shape[3], KH, stride, padding, output_padding,
                            dilation)
    e = _embeddings(fn, e)
    if e.shape[0] != x.shape[0] or e.shape[2:] != (win.H, win.W):
        raise ValueError(f"{fn}: e must be (N, D, OH, OW) = ({x.shape[0]}, D, {win.H}, "
                         f"{win.W}), at the output's resolution; got {e.shape}")
    arrays = {"x": x, "e": e, "W": W}
    if b is not None:
        arrays["b"] = b = as_tensor(b)
        if b.shape != (F,):
            raise ValueError(f"{fn}: b must have shape (F,) = ({F},); got {b.shape}")
    check_same_dtype(fn, list(arrays), [a.data for a in arrays.values()])
    check_norm(fn, norm)
    return x, e, W, b, _lam(fn, lam, e), win
