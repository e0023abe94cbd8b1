"""Stride-1 windows as column offsets of one zero-padded canvas, shared by the NumPy
kernels of Eq. 4 (``segaware.py``: the bilateral filter and its gx) and Eq. 7
(``masked_conv.py``).

An (N, R, H, W) array is laid out channels-first on a canvas (R, N*HP*WP + tail), image
n at rows ``n*HP + PH ..`` and columns ``PW ..`` of its HP x WP block, HP = H + 2*PH,
WP = W + 2*PW, zeros around it.  Output o = (n, oh, ow) of a stride-1 window is canvas
column ``q = (n*HP + oh)*WP + ow`` and tap (i, j) of it is column ``q + i*DH*WP + j*DW``:
every tap is one contiguous shift of the whole canvas, instead of a rectangle of each
image (``Window.taps``), so a tap costs a few long vectorised operations.  Canvas columns
that are no output (ow >= OW, oh >= OH) get a mask and a gradient of 0, so they add
nothing anywhere, and are cut away at the end.  A tap that leaves the image reads the
canvas's zeros: what it adds is 0, as the rectangles' skipping it would give.
"""
import numpy as np

from ..base import ELEMENT_FLOPS
from .threads import for_runs


class Canvas:
    """The canvas of one stride-1 window ``win`` and its input x (N, C, H, W)."""

    def __init__(self, win, x):
        N, C, H, Wd = x.shape
        self.win, self.x = win, x
        self.N, self.C, self.K = N, C, win.K
        self.HP, self.WP = H + 2 * win.PH, Wd + 2 * win.PW
        self.L = N * self.HP * self.WP
        ks = range(win.KS)
        self.offsets = [i * win.DH * self.WP + j * win.DW for i in ks for j in ks]
        self.tail = self.offsets[-1]  # the columns the last tap reads past L

    @staticmethod
    def applies(win, x, most=None):
        """Whether a call can run on a canvas: stride 1 and no empty axis; and, with
        ``most``, a canvas at most that many times the outputs' area.  A wide dilated
        window pads so much (a 13x13 window at dilation 9 makes a 64x64 canvas 172x172) that
        the passes over the padding cost more than the rectangles save: then a
        per-tap kernel, whose work is only the products, keeps its rectangles."""
        if not (win.SH == win.SW == 1 and min(x.shape[:2]) > 0):
            return False
        HP, WP = win.H + 2 * win.PH, win.W + 2 * win.PW
        return most is None or HP * WP <= most * win.OH * win.OW

    def grid(self, a):
        """A (R, L) canvas-column array as (R, N, HP, WP)."""
        return a[:, :self.L].reshape(a.shape[0], self.N, self.HP, self.WP)

    def outputs(self, a):
        """The (R, N, OH, OW) outputs within a (R, L) canvas-column array."""
        return self.grid(a)[:, :, :self.win.OH, :self.win.OW]

    def inner(self, a):
        """The (R, N, H, W) image pixels within a (R, L + tail) canvas."""
        w = self.win
        return self.grid(a)[:, :, w.PH:w.PH + w.H, w.PW:w.PW + w.W]

    def by_image(self, fn, elements):
        """``fn(images)`` on runs of images (a slice), spread over the cores: the passes
        over whole canvases are memory-bound copies, one image independent of another."""
        for_runs(lambda lo, hi: fn(slice(lo, hi)), self.N, flops=ELEMENT_FLOPS * elements)

    def zeros(self, rows, tail=0):
        """An (rows, L + tail) canvas of zeros, zeroed image by image on the cores."""
        a = np.empty((rows, self.L + tail), dtype=self.x.dtype)
        a[:, self.L:] = 0
        grid = self.grid(a)
        self.by_image(lambda i: grid[:, i].fill(0), a.size)
        return a

    def _new(self, fn, rows, cols, out):
        """A new (rows, cols) array of x's dtype, or ``out`` once checked to be one.  An
        ``out`` of another dtype would be cast into silently, and one with other columns
        (a tail too long, or none) filled without complaint; C order is what the
        callers promise, so that each tap is a shift along contiguous rows."""
        if out is None:
            return np.empty((rows, cols), dtype=self.x.dtype)
        if out.shape != (rows, cols) or out.dtype != self.x.dtype \
                or not out.flags.c_contiguous:
            raise ValueError(f"Canvas.{fn}: out must be a C-contiguous {(rows, cols)} "
                             f"{self.x.dtype} array; got {out.shape} {out.dtype}"
                             f"{'' if out.flags.c_contiguous else ', not C-contiguous'}")
        return out

    def image(self, a=None, out=None):
        """x, or an array ``a`` of x's shape (the bilateral filter's later passes), on a
        (C, L + tail) canvas, zeros around each image; written into ``out`` (a C-ordered
        (C, L + tail) array) when given."""
        a = self.x if a is None else a
        xc = self._new("image", self.C, self.L + self.tail, out)
        xc[:, self.L:] = 0
        xg, inner = self.grid(xc), self.inner(xc)

        def fill(i):
            xg[:, i] = 0
            inner[:, i] = a[i].transpose(1, 0, 2, 3)

        self.by_image(fill, 2 * xc.size)
        return xc

    def on_outputs(self, a, Z=None, out=None):
        """a (N, R, OH, OW) on the output columns of an (R, L) array, 0 at the other
        columns; divided by Z (N, OH, OW) when given (gy / Z, in the same pass); written
        into ``out`` (a C-ordered (R, L) array) when given."""
        ac = self._new("on_outputs", a.shape[1], self.L, out)
        grid, cols = self.grid(ac), self.outputs(ac)

        def fill(i):
            grid[:, i] = 0
            if Z is None:
                cols[:, i] = a[i].transpose(1, 0, 2, 3)
            else:
                np.divide(a[i].transpose(1, 0, 2, 3), Z[i], out=cols[:, i])

        self.by_image(fill, 2 * ac.size)
        return ac

    def from_outputs(self, ac, Z=None):
        """The outputs of an (R, L) array as (N, R, OH, OW), divided by Z when given."""
        out = self.outputs(ac).transpose(1, 0, 2, 3)
        a = np.empty(out.shape, dtype=ac.dtype)

        def finish(i):
            if Z is None:
                np.copyto(a[i], out[i])
            else:  # the division and the move to (N, R, OH, OW) in one pass
                np.divide(out[i], Z[i][:, None], out=a[i])

        self.by_image(finish, 2 * a.size)
        return a

    def from_image(self, ac):
        """The image pixels of an (R, L + tail) canvas as (N, R, H, W)."""
        inner = self.inner(ac)
        a = np.empty((self.N, ac.shape[0], self.win.H, self.win.W), dtype=ac.dtype)
        self.by_image(lambda i: np.copyto(a[i], inner[:, i].transpose(1, 0, 2, 3)),
                      2 * a.size)
        return a
