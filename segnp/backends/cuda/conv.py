"""Launchers of ``conv.cu``: im2col and col2im on a GPU or the emulator, and the
convolution as im2col (or col2im) around one batched matrix product.

Same names, arguments and results as ``backends/numpy/conv.py``; float32/float64 only
(the runtime refuses other dtypes when it instantiates a kernel).
"""
from ..._validate import check_conv_shapes, check_ndim
from ...window import conv_backward_geometry, conv_geometry
from ._common import int32, launch_flat

__all__ = ["im2col", "col2im", "conv2d", "conv2d_backward"]


def im2col(rt, x, ksize, stride=1, padding=0, dilation=1):
    """x (N, C, H, W) -> cols (N, C, KH, KW, OH, OW), 0 where a tap reads padding."""
    check_ndim("im2col", "x", x, "(N, C, H, W)")
    N, C, H, W = x.shape
    k, s, p, d, o = conv_geometry("im2col", H, W, ksize, stride, padding, dilation)
    cols = rt.xp.empty((N, C) + k + o, dtype=x.dtype)
    _launch(rt, "im2col_kernel", x, cols, (N, C, H, W, *k, *o, *s, *p, *d))
    return cols


def col2im(rt, cols, size, stride=1, padding=0, dilation=1):
    """cols (N, C, KH, KW, OH, OW) -> x (N, C, H, W) with (H, W) = ``size``: the adjoint
    of :func:`im2col`, each pixel gathering the column entries copied from it."""
    if cols.ndim != 6:
        raise ValueError(f"col2im: cols must be (N, C, KH, KW, OH, OW); got shape "
                         f"{tuple(cols.shape)}")
    N, C, KH, KW, OH, OW = cols.shape
    if not (isinstance(size, (tuple, list)) and len(size) == 2):
        raise ValueError(f"col2im: size must be the image size (H, W); got {size!r}")
    H, W = int(size[0]), int(size[1])
    k, s, p, d, o = conv_geometry("col2im", H, W, (KH, KW), stride, padding, dilation)
    if o != (OH, OW):
        raise ValueError(f"col2im: cols hold a ({OH}, {OW}) output, but size ({H}, {W}) "
                         f"with this window gives {o}")
    x = rt.xp.empty((N, C, H, W), dtype=cols.dtype)
    _launch(rt, "col2im_kernel", cols, x, (N, C, H, W, *k, *o, *s, *p, *d))
    return x


def _launch(rt, name, src, out, sizes):
    """conv.cu's grid-stride kernel ``name``, one item per element of ``out``, from
    ``src`` (any layout: kernels ignore strides, so it goes contiguous)."""
    if out.size:
        launch_flat(rt, "conv.cu", name, src.dtype, out.size,
                    (rt.xp.ascontiguousarray(src), out, *int32(*sizes)))


def conv2d(rt, x, W, stride=1, padding=0, dilation=1):
    """y (N, F, OH, OW) = W (F, C*K) @ im2col(x)[n] (C*K, OH*OW), no bias."""
    check_conv_shapes("conv2d", x, W)
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    cols = im2col(rt, x, (KH, KW), stride, padding, dilation)
    OH, OW = cols.shape[4:]
    y = rt.xp.matmul(W.reshape(F, C * KH * KW), cols.reshape(N, C * KH * KW, OH * OW))
    return y.reshape(N, F, OH, OW)


def conv2d_backward(rt, x, W, gy, stride=1, padding=0, dilation=1, need_x=True,
                    need_W=True):
    """(gx, gW) of :func:`conv2d`: gW = (sum_n im2col(x)[n] @ gy[n]^T)^T and
    gx = col2im(W^T (C*K, F) @ gy[n] (F, P)); None for the one not needed."""
    check_conv_shapes("conv2d_backward", x, W)
    xp = rt.xp
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    k, s, p, d, o = conv_backward_geometry("conv2d_backward", x, W, gy, stride, padding,
                                           dilation)
    g = xp.ascontiguousarray(gy).reshape(N, F, o[0] * o[1])
    gx = gW = None
    if need_W:
        cols = im2col(rt, x, k, s, p, d).reshape(N, C * KH * KW, o[0] * o[1])
        gW = xp.ascontiguousarray(xp.matmul(cols, g.transpose(0, 2, 1)).sum(axis=0).T)
        gW = gW.reshape(W.shape)
    if need_x:
        gcols = xp.matmul(W.reshape(F, C * KH * KW).T, g).reshape((N, C) + k + o)
        gx = col2im(rt, gcols, (H, Wd), s, p, d)
    return gx, gW
