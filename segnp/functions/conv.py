"""2-D convolution as im2col followed by one batched matrix product (Sec. 4.2, Fig. 1).

This is the numerator of Eq. 7 with every mask term equal to 1 (Eq. 7 also divides by
the sum of the mask).  Notation: x (N, C, H, W), W (F, C, KH, KW),
b (F,), y (N, F, OH, OW); K = KH*KW taps, so one unfolded window has C*K entries, and
P = OH*OW is the number of output positions.

The layout (N, C*K, P) of the unfolded input is what ``im2col`` returns, reshaped without
a copy, and it keeps every product a BLAS call on contiguous (or transposed) matrices:

- forward   y[n] = W (F, C*K) @ cols[n] (C*K, P)          -> (N, F, P), already NCHW
- gW             = (sum_n cols[n] (C*K, P) @ gy[n]^T (P, F))^T
- gx, two ways, chosen by shape (see ``_gx_by_transposed_conv``):
  col2im(W^T (C*K, F) @ gy[n] (F, P)), or for stride 1 the transposed convolution
  Wflip (C, F*K) @ im2col(gy)[n] (F*K, H*W), Wflip[c, f, i, j] = W[f, c, KH-1-i, KW-1-j]
- gb             = gy summed over N and P
"""
from ..autograd import Function
from .._validate import check_float, check_ndim, check_same_dtype
from ..window import conv_geometry

__all__ = ["conv2d"]


class Conv2d(Function):
    """y[n, f, oh, ow] = b[f] + sum_{c,i,j} W[f, c, i, j] x[n, c, oh*SH - PH + i*DH,
    ow*SW - PW + j*DW], with x zero outside the image (cross-correlation, like PyTorch)."""

    def __init__(self, stride=1, padding=0, dilation=1):
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def forward(self, x, W, b):
        _check_inputs(x, W, b)
        N, C, H, Wd = x.shape
        F, _, KH, KW = W.shape
        k, s, p, d, (OH, OW) = conv_geometry("conv2d", H, Wd, (KH, KW), self.stride,
                                             self.padding, self.dilation)
        cols = self.backend.im2col(x, k, s, p, d).reshape(N, C * KH * KW, OH * OW)
        y = self.xp.matmul(W.reshape(F, C * KH * KW), cols)  # (N, F, P)
        if b is not None:
            y += b[:, None]
        need_x, need_W, _ = self.needs_input_grad
        # The unfolded input is by far the largest thing here: keep it only for gW.
        self.cols = cols if need_W else None
        self.W = W if need_x else None
        self.geometry = (x.shape, W.shape, k, s, p, d, (OH, OW))
        return y.reshape(N, F, OH, OW)

    def backward(self, gy):
        xp = self.xp
        need_x, need_W, need_b = self.needs_input_grad
        (N, C, H, Wd), W_shape, k, s, p, d, (OH, OW) = self.geometry
        F = W_shape[0]
        gy = xp.ascontiguousarray(gy).reshape(N, F, OH * OW)
        gx = gW = gb = None
        if need_b:
            gb = gy.sum(axis=(0, 2))
        if need_W:
            # (C*K, P) @ (P, F) runs faster in BLAS than (F, P) @ (P, C*K) when F is small.
            gWt = xp.matmul(self.cols, gy.transpose(0, 2, 1)).sum(axis=0)  # (C*K, F)
            gW = xp.ascontiguousarray(gWt.T).reshape(W_shape)
        if need_x:
            if _gx_by_transposed_conv(C, F, k, s, p, d):
                gx = self._gx_transposed(gy)
            else:
                gcols = xp.matmul(self.W.reshape(F, -1).T, gy)  # (N, C*K, P)
                gx = self.backend.col2im(gcols.reshape((N, C) + k + (OH, OW)), (H, Wd),
                                         s, p, d)
        return gx, gW, gb

    def _gx_transposed(self, gy):
        """gx as the convolution of gy with the flipped, transposed filters (stride 1):
        input pixel h reads outputs h + PH - i*DH, i.e. tap KH-1-i of a window with
        padding DH*(KH-1) - PH."""
        xp = self.xp
        (N, C, H, Wd), (F, _, KH, KW), k, _, p, d, (OH, OW) = self.geometry
        pad = (d[0] * (KH - 1) - p[0], d[1] * (KW - 1) - p[1])
        cols = self.backend.im2col(gy.reshape(N, F, OH, OW), k, 1, pad, d)
        Wf = xp.ascontiguousarray(self.W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        gx = xp.matmul(Wf.reshape(C, F * KH * KW), cols.reshape(N, F * KH * KW, H * Wd))
        return gx.reshape(N, C, H, Wd)


def _gx_by_transposed_conv(C, F, k, s, p, d):
    """Whether gx is cheaper as a transposed convolution than as a product plus col2im.

    Both do the same multiply-adds.  The product-plus-col2im way writes a (C*K, P)
    buffer per image and folds it back with K strided adds; the transposed convolution
    writes im2col(gy), (F*K, H*W), and reads it once in BLAS, which wins unless gy has
    many more channels than x (measured on 2 cores: ahead up to F = 1.5 C, behind at
    F = 2 C).  It needs stride 1 and a padding of at most DH*(KH-1) (likewise W).
    """
    return (s == (1, 1) and p[0] <= d[0] * (k[0] - 1) and p[1] <= d[1] * (k[1] - 1)
            and 2 * F <= 3 * C)


def _check_inputs(x, W, b):
    check_ndim("conv2d", "x", x, "(N, C, H, W)")
    check_ndim("conv2d", "W", W, "(F, C, KH, KW)")
    check_float("conv2d", "x", x)
    check_float("conv2d", "W", W)
    if x.shape[1] != W.shape[1]:
        raise ValueError(f"conv2d: x has {x.shape[1]} channels but W expects {W.shape[1]}: "
                         f"x (N, C, H, W) = {tuple(x.shape)}, W (F, C, KH, KW) = "
                         f"{tuple(W.shape)}")
    if b is None:
        check_same_dtype("conv2d", ("x", "W"), (x, W))
        return
    check_float("conv2d", "b", b)
    if tuple(b.shape) != (W.shape[0],):
        raise ValueError(f"conv2d: b must have shape (F,) = ({W.shape[0]},) for W of shape "
                         f"{tuple(W.shape)}; got {tuple(b.shape)}")
    check_same_dtype("conv2d", ("x", "W", "b"), (x, W, b))


def conv2d(x, W, b=None, stride=1, padding=0, dilation=1):
    """2-D convolution (cross-correlation) of x (N, C, H, W) with W (F, C, KH, KW).

    ``b`` (F,) is optional; ``stride``, ``padding`` (zeros) and ``dilation`` are ints or
    (h, w) pairs.  Returns y (N, F, OH, OW) with
    ``OH = (H + 2*PH - DH*(KH - 1) - 1) // SH + 1`` (likewise OW), as ``torch.nn.functional
    .conv2d`` with ``groups=1``.  x, W and b must share one floating dtype.
    """
    return Conv2d(stride, padding, dilation)(x, W, b)
