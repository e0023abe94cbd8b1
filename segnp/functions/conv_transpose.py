"""Transposed 2-D convolution ("deconvolution", FlowNet's refinement, Sec. 5.2).

It is the adjoint of :func:`~segnp.functions.conv2d` with respect to its input, so it
is built from the same two kernels with their roles swapped: the forward pass is
conv2d's input gradient (a matrix product, then col2im), and the input gradient is a
conv2d (im2col, then a matrix product).

Notation: x (N, C, H, W), W (C, F, KH, KW) (in channels first, as PyTorch and Caffe
store it), b (F,), y (N, F, OH, OW) with

    OH = (H - 1) * SH - 2 * PH + DH * (KH - 1) + OPH + 1        (likewise OW)

K = KH*KW taps; P = H*W input positions.  Every input pixel (h, w) scatters
W[c, :, i, j] x[n, c, h, w] onto output pixel (h*SH - PH + i*DH, w*SW - PW + j*DW):

- forward   cols[n] = W^T (F*K, C) @ x[n] (C, P);  y = col2im(cols) + b
- gx[n]     = W (C, F*K) @ im2col(gy)[n] (F*K, P)
- gW        = sum_n x[n] (C, P) @ im2col(gy)[n]^T (P, F*K)
- gb        = gy summed over N, OH, OW

``output_padding`` (OPH, OPW) adds rows and columns at the bottom and right, which
only the bias reaches; it resolves the ambiguity of a strided conv2d, whose
input sizes SH*k ... SH*k + SH - 1 all give the same output size, so it must be < stride.
"""
from ..autograd import Function
from .._validate import check_float, check_ndim, check_same_dtype
from ..window import conv_geometry, transposed_geometry

__all__ = ["conv_transpose2d"]

FN = "conv_transpose2d"


def transpose_geometry(H, W, ksize, stride, padding, output_padding, dilation):
    """Normalised (k, s, p, d) pairs and the output size (OH, OW) of a transposed
    convolution of an H x W input (:func:`segnp.window.transposed_geometry`)."""
    k, s, p, _, d, (OH, OW) = transposed_geometry(FN, H, W, ksize, stride, padding,
                                                  output_padding, dilation)
    # The conv2d this is the adjoint of maps (OH, OW) back to exactly (H, W).
    back = conv_geometry(FN, OH, OW, k, s, p, d)[4]
    assert back == (H, W), (back, H, W)
    return k, s, p, d, (OH, OW)


class ConvTranspose2d(Function):
    """y[n, f, h*SH - PH + i*DH, w*SW - PW + j*DW] += W[c, f, i, j] x[n, c, h, w],
    summed over n's c, h, w, i, j (outputs outside y dropped), plus b[f]."""

    def __init__(self, stride=1, padding=0, output_padding=0, dilation=1):
        self.stride, self.padding = stride, padding
        self.output_padding, self.dilation = output_padding, dilation

    def forward(self, x, W, b):
        _check_inputs(x, W, b)
        N, C, H, Wd = x.shape
        _, F, KH, KW = W.shape
        k, s, p, d, (OH, OW) = transpose_geometry(H, Wd, (KH, KW), self.stride,
                                                  self.padding, self.output_padding,
                                                  self.dilation)
        x2 = self.xp.ascontiguousarray(x).reshape(N, C, H * Wd)
        cols = self.xp.matmul(W.reshape(C, F * KH * KW).T, x2)  # (N, F*K, P)
        y = self.backend.col2im(cols.reshape(N, F, KH, KW, H, Wd), (OH, OW), s, p, d)
        if b is not None:
            y += b[:, None, None]
        need_x, need_W, _ = self.needs_input_grad
        self.x = x2 if need_W else None
        self.W = W if need_x else None
        self.geometry = (x.shape, W.shape, k, s, p, d)
        return y

    def backward(self, gy):
        xp = self.xp
        need_x, need_W, need_b = self.needs_input_grad
        (N, C, H, Wd), W_shape, k, s, p, d = self.geometry
        F = W_shape[1]
        gx = gW = gb = None
        if need_b:
            gb = gy.sum(axis=(0, 2, 3))
        if need_x or need_W:
            gcols = self.backend.im2col(xp.ascontiguousarray(gy), k, s, p, d)
            gcols = gcols.reshape(N, F * k[0] * k[1], H * Wd)
            if need_x:
                gx = xp.matmul(self.W.reshape(C, -1), gcols).reshape(N, C, H, Wd)
            if need_W:
                gW = xp.matmul(self.x, gcols.transpose(0, 2, 1)).sum(axis=0).reshape(W_shape)
        return gx, gW, gb


def _check_inputs(x, W, b):
    check_ndim(FN, "x", x, "(N, C, H, W)")
    check_ndim(FN, "W", W, "(C, F, KH, KW)")
    check_float(FN, "x", x)
    check_float(FN, "W", W)
    if x.shape[1] != W.shape[0]:
        raise ValueError(f"{FN}: x has {x.shape[1]} channels but W expects {W.shape[0]}: "
                         f"x (N, C, H, W) = {tuple(x.shape)}, W (C, F, KH, KW) = "
                         f"{tuple(W.shape)}")
    if b is None:
        check_same_dtype(FN, ("x", "W"), (x, W))
        return
    check_float(FN, "b", b)
    if tuple(b.shape) != (W.shape[1],):
        raise ValueError(f"{FN}: b must have shape (F,) = ({W.shape[1]},) for W of shape "
                         f"{tuple(W.shape)}; got {tuple(b.shape)}")
    check_same_dtype(FN, ("x", "W", "b"), (x, W, b))


def conv_transpose2d(x, W, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    """Transposed convolution of x (N, C, H, W) with W (C, F, KH, KW) -> y (N, F, OH, OW).

    The adjoint of ``conv2d(., W, stride=stride, padding=padding, dilation=dilation)``
    in x (for every y: <conv2d(y, W), x> = <y, conv_transpose2d(x, W)>), plus the bias
    ``b`` (F,).  ``stride``, ``padding``, ``output_padding`` (< stride) and
    ``dilation`` are ints or (h, w) pairs; OH is given in the module docstring and
    matches ``torch.nn.functional.conv_transpose2d`` with ``groups=1``.
    """
    return ConvTranspose2d(stride, padding, output_padding, dilation)(x, W, b)
