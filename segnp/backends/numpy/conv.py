"""im2col, col2im and the convolution built on them, on NumPy (Sec. 4.2: "exactly the
way Caffe realizes convolution").

im2col copies x into a zero-bordered canvas and reads all windows at once as one strided
view of it.  col2im loops over the KH*KW taps: for each tap the output positions whose
input pixel lies inside the image form one rectangle, and the pixels they read form one
strided slice of x, so a tap costs a single vectorised add and no padded buffer or crop
is needed.  Both return C-contiguous arrays.

:func:`conv2d` and :func:`conv2d_backward` never unfold the whole batch.  They unfold a
block of output rows of one image at a time (about ``BLOCK_BYTES``, so it is still in
cache when BLAS reads it) and multiply it straight into its place in the output, with
the blocks spread over the cores (``threads.py``).  Each output element is the same sum
of the same C*K products as with one im2col of the batch; only BLAS's order of adding
them may differ for a block of rows (where a whole image fits in one block, as on the
networks here, the products are the very same calls).  The number of threads never
changes a bit, since every block runs with BLAS single-threaded (inside
``threads.serial()`` BLAS threads as configured and may round differently).  Nothing
the size of the unfolded batch is allocated or kept.
"""
import numpy as np

from ...window import conv_backward_geometry, conv_geometry, tap_rects
from ..._validate import check_conv_shapes, check_float, check_ndim
from .threads import for_pieces, for_runs, sum_in_order

__all__ = ["im2col", "col2im", "conv2d", "conv2d_backward"]

# One block of unfolded columns (C*K, rows*OW): small enough to stay in a core's cache
# between the copy that writes it and the product that reads it (measured on 2 cores,
# C=F=64 at 128x128: blocks of 1-2 MiB ran 20 % faster than 8 MiB ones).
BLOCK_BYTES = 2 << 20


def im2col(x, ksize, stride=1, padding=0, dilation=1):
    """Unfold windows: x (N, C, H, W) -> cols (N, C, KH, KW, OH, OW).

    ``cols[n, c, i, j, oh, ow] = x[n, c, oh*SH - PH + i*DH, ow*SW - PW + j*DW]``, 0 where
    that index falls in the padding.  ``ksize``, ``stride``, ``padding`` and ``dilation``
    are ints or (h, w) pairs.

    x is copied once into a zero-bordered canvas that holds every window; cols is then
    one strided view of the canvas, (N, C, KH, KW, OH, OW), copied in a single call.
    One vectorised copy over all taps beats KH*KW per-tap copies on the small maps of a
    CPU network, where each call's fixed cost is comparable to its work.
    """
    check_ndim("im2col", "x", x, "(N, C, H, W)")
    N, C, H, W = x.shape
    k, s, p, d, o = conv_geometry("im2col", H, W, ksize, stride, padding, dilation)
    canvas = _canvas(x, k, s, p, d, o)
    sn, sc, sh, sw = canvas.strides
    view = np.lib.stride_tricks.as_strided(
        canvas, (N, C) + k + o, (sn, sc, sh * d[0], sw * d[1], sh * s[0], sw * s[1]),
        writeable=False)
    cols = np.empty((N, C) + k + o, dtype=x.dtype)
    np.copyto(cols, view)
    return cols


def _canvas(x, k, s, p, d, o):
    """x placed at (PH, PW) in a zero canvas of the (OH-1)*SH + (KH-1)*DH + 1 rows (likewise
    columns) that the windows span; rows and columns of x no window reads are left out."""
    N, C, H, W = x.shape
    EH = (o[0] - 1) * s[0] + (k[0] - 1) * d[0] + 1
    EW = (o[1] - 1) * s[1] + (k[1] - 1) * d[1] + 1
    if p == (0, 0):
        return x  # EH <= H and EW <= W: the windows read x itself
    # max(0, ...): with OH = 1 the one window may end above PH, wholly in the padding
    h, w = max(0, min(H, EH - p[0])), max(0, min(W, EW - p[1]))
    canvas = np.zeros((N, C, EH, EW), dtype=x.dtype)
    canvas[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x[:, :, :h, :w]
    return canvas


def col2im(cols, size, stride=1, padding=0, dilation=1):
    """Fold windows back: the adjoint of :func:`im2col`, summing overlapping taps.

    cols (N, C, KH, KW, OH, OW) -> x (N, C, H, W) with (H, W) = ``size``; entries that
    im2col would have read from the padding are dropped.
    """
    if cols.ndim != 6:
        raise ValueError(f"col2im: cols must be (N, C, KH, KW, OH, OW); got shape "
                         f"{tuple(cols.shape)}")
    N, C, KH, KW, OH, OW = cols.shape
    H, W = _size_pair(size)
    k, s, p, d, o = conv_geometry("col2im", H, W, (KH, KW), stride, padding, dilation)
    if o != (OH, OW):
        raise ValueError(f"col2im: cols hold a ({OH}, {OW}) output, but size ({H}, {W}) "
                         f"with this window gives {o}")
    x = np.zeros((N, C, H, W), dtype=cols.dtype)
    _fold_into(x, cols, k, s, p, d, o)
    return x


def _fold_into(x, cols, k, s, p, d, o):
    """x += col2im(cols): each tap's rectangle of outputs added to the pixels it read."""
    for i, j, rect, tap in tap_rects(x.shape[2:], k, s, p, d, o):
        if rect is not None:
            x[:, :, tap[0], tap[1]] += cols[:, :, i, j, rect[0], rect[1]]


def _size_pair(size):
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return int(size[0]), int(size[1])
    raise ValueError(f"col2im: size must be the image size (H, W); got {size!r}")


def _window_rows(canvas, n, r0, r1, k, s, d, OW, buf):
    """The unfolded columns of output rows r0:r1 of image n, (C*K, (r1-r0)*OW), written
    into the front of the flat buffer ``buf``: im2col restricted to those rows."""
    C = canvas.shape[1]
    _, sc, sh, sw = canvas.strides
    shape = (C,) + k + (r1 - r0, OW)
    view = np.lib.stride_tricks.as_strided(
        canvas[n, :, r0 * s[0]:], shape,
        (sc, sh * d[0], sw * d[1], sh * s[0], sw * s[1]), writeable=False)
    cols = buf[:C * k[0] * k[1] * (r1 - r0) * OW].reshape(shape)
    np.copyto(cols, view)
    return cols.reshape(C * k[0] * k[1], (r1 - r0) * OW)


def _unfolded_product(canvas, Wm, k, s, d, o, y, also=None):
    """y[n] (F, OH*OW) = Wm (F, C*K) @ im2col(image n of canvas), by blocks of rows.

    ``also(n, r0, r1, cols)``, if given, is called with each block's unfolded columns
    while they are in cache; its results are returned in block order."""
    N, F, _ = y.shape
    (OH, OW), CK = o, Wm.shape[1]
    rows = max(1, min(OH, BLOCK_BYTES // max(1, CK * OW * y.itemsize)))
    blocks = [(n, r0, min(r0 + rows, OH)) for n in range(N) for r0 in range(0, OH, rows)]

    def run(lo, hi):
        buf = np.empty(CK * rows * OW, dtype=y.dtype)
        done = []
        for n, r0, r1 in blocks[lo:hi]:
            cols = _window_rows(canvas, n, r0, r1, k, s, d, OW, buf)
            np.matmul(Wm, cols, out=y[n, :, r0 * OW:r1 * OW])
            if also is not None:
                done.append(also(n, r0, r1, cols))
        return done

    work = 2 * y.size * CK * (1 if also is None else 2)
    return for_pieces(run, len(blocks), flops=work)


def conv2d(x, W, stride=1, padding=0, dilation=1):
    """y (N, F, OH, OW) = the convolution (cross-correlation) of x (N, C, H, W) with
    W (F, C, KH, KW), no bias: ``y[n] = W (F, C*K) @ im2col(x)[n] (C*K, OH*OW)``.

    x and W share one floating dtype; ``stride``, ``padding`` and ``dilation`` are ints
    or (h, w) pairs, as for :func:`im2col`.
    """
    check_conv_shapes("conv2d", x, W)
    check_float("conv2d", "x", x)
    check_float("conv2d", "W", W)
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    k, s, p, d, o = conv_geometry("conv2d", H, Wd, (KH, KW), stride, padding, dilation)
    y = np.empty((N, F, o[0] * o[1]), dtype=np.result_type(x, W))
    Wm = np.ascontiguousarray(W, dtype=y.dtype).reshape(F, C * KH * KW)
    _unfolded_product(_canvas(x, k, s, p, d, o), Wm, k, s, d, o, y)
    return y.reshape((N, F) + o)


def conv2d_backward(x, W, gy, stride=1, padding=0, dilation=1, need_x=True,
                    need_W=True):
    """(gx, gW) of :func:`conv2d` for the output gradient gy (N, F, OH, OW); None for the
    one not needed.  With K = KH*KW and P = OH*OW:

    - gx, for stride 1 (and a padding of at most DH*(KH-1), likewise W) unless gy has
      many more channels than x, as the convolution of gy with the flipped, transposed
      filters ``Wflip[c, f, i, j] = W[f, c, KH-1-i, KW-1-j]`` at padding DH*(KH-1) - PH;
      otherwise ``col2im(W^T (C*K, F) @ gy[n] (F, P))`` (see ``_gx_by_transposed_conv``);
    - gW, with gx by the transposed convolution, from the same unfolded blocks B of gy,
      ``Wflip's gradient (C, F*K) = sum over blocks x_block @ B^T`` (one unfolding serves
      both); otherwise ``(sum_n im2col(x)[n] (C*K, P) @ gy[n]^T (P, F))^T``.  Either way
      the products are added in block (image) order.
    """
    check_conv_shapes("conv2d_backward", x, W)
    for name, a in (("x", x), ("W", W), ("gy", gy)):
        check_float("conv2d_backward", name, a)
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    k, s, p, d, o = conv_backward_geometry("conv2d_backward", x, W, gy, stride, padding,
                                           dilation)
    dtype = np.result_type(x, W, gy)
    g = np.ascontiguousarray(gy, dtype=dtype).reshape(N, F, o[0] * o[1])
    Wm = np.ascontiguousarray(W, dtype=dtype).reshape(F, C * KH * KW)
    transposed = need_x and _gx_by_transposed_conv(C, F, k, s, p, d)
    gW = gx = None
    if need_W and not transposed:
        gW = _grad_W(x, g, k, s, p, d, o).T.reshape(W.shape)
    if need_x:
        gx = np.empty((N, C, H * Wd), dtype=dtype)
        if transposed:  # gW, if needed, from the same unfolded blocks of gy
            gx, gW = _grad_x_transposed(x, W, g, k, p, d, o, gx, need_W)
        else:
            _grad_x_by_fold(Wm, g, k, s, p, d, o, gx.reshape(N, C, H, Wd))
        gx = gx.reshape(N, C, H, Wd)
    return gx, gW


def _grad_x_transposed(x, W, g, k, p, d, o, gx, need_W):
    """gx (N, C, H*W) as the convolution of gy with the flipped, transposed filters
    Wflip (C, F*K), stride 1: input pixel h reads outputs h + PH - i*DH, tap KH-1-i of a
    window with padding DH*(KH-1) - PH.  With ``need_W`` also gW from the same unfolded
    blocks of gy, B (F*K, rows*W): ``gWflip (C, F*K) = sum over blocks x_block (C,
    rows*W) @ B^T``, the blocks' products added in block order.  Returns (gx, gW or None)."""
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    dtype = gx.dtype
    pad = (d[0] * (KH - 1) - p[0], d[1] * (KW - 1) - p[1])
    Wf = np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), dtype=dtype)
    gcanvas = _canvas(g.reshape((N, F) + o), k, (1, 1), pad, d, (H, Wd))
    also = None
    if need_W:
        xf = np.ascontiguousarray(x, dtype=dtype).reshape(N, C, H * Wd)

        def also(n, r0, r1, cols):
            return xf[n, :, r0 * Wd:r1 * Wd] @ cols.T

    parts = _unfolded_product(gcanvas, Wf.reshape(C, F * KH * KW), k, (1, 1), d, (H, Wd),
                              gx, also)
    if not need_W:
        return gx, None
    gWf = sum_in_order(parts, lambda: np.zeros((C, F * KH * KW), dtype=dtype))
    gWf = gWf.reshape(C, F, KH, KW)[:, :, ::-1, ::-1]
    return gx, np.ascontiguousarray(gWf.transpose(1, 0, 2, 3))


def _gx_by_transposed_conv(C, F, k, s, p, d):
    """Whether gx is cheaper as a transposed convolution than as a product plus col2im.

    Both do the same multiply-adds.  The product-plus-col2im way writes a (C*K, P)
    buffer per image and folds it back with K strided adds; the transposed convolution
    unfolds gy, (F*K, H*W), and reads it once in BLAS, which wins unless gy has many
    more channels than x (measured on 2 cores: ahead up to F = 1.5 C, behind at F = 2 C).
    It needs stride 1 and a padding of at most DH*(KH-1) (likewise W).
    """
    return (s == (1, 1) and p[0] <= d[0] * (k[0] - 1) and p[1] <= d[1] * (k[1] - 1)
            and 2 * F <= 3 * C)


def _grad_W(x, g, k, s, p, d, o):
    """sum_n im2col(x)[n] @ g[n]^T, (C*K, F): one product per image, over all P, so that
    the sum runs in the same order as one batched product would."""
    N, C = x.shape[:2]
    CK, P = C * k[0] * k[1], o[0] * o[1]
    canvas = _canvas(x, k, s, p, d, o)

    def run(lo, hi):
        buf = np.empty(CK * P, dtype=g.dtype)
        return [_window_rows(canvas, n, 0, o[0], k, s, d, o[1], buf) @ g[n].T
                for n in range(lo, hi)]

    parts = for_pieces(run, N, flops=2 * N * CK * P * g.shape[1])
    return sum_in_order(parts, lambda: np.zeros((CK, g.shape[1]), dtype=g.dtype))


def _grad_x_by_fold(Wm, g, k, s, p, d, o, gx):
    """gx[n] = col2im(Wm^T (C*K, F) @ g[n] (F, P)), image by image."""
    N, C = gx.shape[:2]
    gx[...] = 0

    def run(lo, hi):
        for n in range(lo, hi):
            cols = (Wm.T @ g[n]).reshape((1, C) + k + o)
            _fold_into(gx[n:n + 1], cols, k, s, p, d, o)

    for_runs(run, N, flops=2 * Wm.size * g.shape[2] * N)
