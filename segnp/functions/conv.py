"""2-D convolution as im2col followed by a matrix product (Sec. 4.2, Fig. 1).

This is the numerator of Eq. 7 with every mask term equal to 1 (Eq. 7 also divides by
the sum of the mask).  Notation: x (N, C, H, W), W (F, C, KH, KW),
b (F,), y (N, F, OH, OW); K = KH*KW taps, so one unfolded window has C*K entries, and
P = OH*OW is the number of output positions.

- forward   y[n] = W (F, C*K) @ im2col(x)[n] (C*K, P) + b
- gW             = (sum_n im2col(x)[n] (C*K, P) @ gy[n]^T (P, F))^T
- gx             = col2im(W^T (C*K, F) @ gy[n] (F, P)), or for stride 1 the same sums as
                   the convolution of gy with the flipped, transposed filters
- gb             = gy summed over N and P

The backend kernels ``conv2d`` and ``conv2d_backward`` do the products (the NumPy one in
blocks of rows spread over the cores, never unfolding the whole batch); the unfolded
input is not kept between forward and backward, only x and W.
"""
from ..autograd import Function, as_tensor
from .._validate import check_conv_shapes, check_float, check_same_dtype

__all__ = ["conv2d"]


class Conv2d(Function):
    """y[n, f, oh, ow] = b[f] + sum_{c,i,j} W[f, c, i, j] x[n, c, oh*SH - PH + i*DH,
    ow*SW - PW + j*DW], with x zero outside the image (cross-correlation, like PyTorch)."""

    def __init__(self, stride=1, padding=0, dilation=1):
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def forward(self, x, W, b):
        y = self.backend.conv2d(x, W, self.stride, self.padding, self.dilation)
        if b is not None:
            y += b[:, None, None]
        need_x, need_W, _ = self.needs_input_grad
        # gx needs W and gW needs x: keep only what the backward will read.
        self.x = x if need_W else None
        self.W = W
        self.x_shape = x.shape
        return y

    def backward(self, gy):
        need_x, need_W, need_b = self.needs_input_grad
        gx = gW = gb = None
        if need_x or need_W:
            # Without gW the kernel reads only x's shape: a stand-in of no memory will do
            # (on a GPU an empty array of x's size would be allocated for nothing).
            x = self.x
            if x is None:
                x = self.xp.broadcast_to(self.xp.zeros((), self.W.dtype), self.x_shape)
            gx, gW = self.backend.conv2d_backward(x, self.W, gy, self.stride, self.padding,
                                                  self.dilation, need_x, need_W)
        if need_b:
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gW, gb


def _check_inputs(x, W, b):
    check_conv_shapes("conv2d", x, W)
    check_float("conv2d", "x", x)
    check_float("conv2d", "W", W)
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
    x, W = as_tensor(x), as_tensor(W)
    b = None if b is None else as_tensor(b)
    _check_inputs(x, W, b)
    return Conv2d(stride, padding, dilation)(x, W, b)
