"""Max and average pooling over KH x KW windows, with PyTorch's semantics.

Notation: x (N, C, H, W) -> y (N, C, OH, OW); window (oh, ow) covers input rows
``oh*SH - PH ... oh*SH - PH + KH - 1`` (likewise columns).

Output size, as ``torch.nn.functional.max_pool2d``/``avg_pool2d``:
``OH = (H + 2*PH - KH) // SH + 1``, or with ``ceil_mode`` the same division rounded up,
minus one when the last window would start at or past ``H + PH`` (a window that starts
in the bottom padding or beyond is dropped).  A ceil_mode window may run past the
padding ("overhang"); the overhang holds no values.  As in PyTorch, ``padding`` must be
at most half the kernel size.

- max_pool2d: the maximum over the window's input pixels (padding and overhang never
  win).  Its gradient goes to ONE pixel per window: the first maximum in row-major order
  within the window, so ties send everything to the earliest tap.  A NaN in the window
  wins (the last NaN, as in PyTorch's CPU kernel).
- avg_pool2d: the sum over the window's input pixels divided by
  ``count_include_pad=True``: the window's size clipped to the padded image, i.e.
  padding counts but the ceil_mode overhang does not (PyTorch's divisor);
  ``count_include_pad=False``: the number of input pixels in the window.

Both run as a loop over the KH*KW taps; each tap is one strided view of a padded copy of
x, so no im2col buffer is built.
"""
import numpy as np

from ..autograd import Function
from .._validate import check_float, check_ndim
from ..window import pair

__all__ = ["max_pool2d", "avg_pool2d"]


def _out_len(size, k, s, p, ceil_mode):
    span = size + 2 * p - k
    o = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= size + p:
        o -= 1
    return o


def _geometry(fn, x, kernel_size, stride, padding, ceil_mode):
    check_ndim(fn, "x", x, "(N, C, H, W)")
    check_float(fn, "x", x)
    k = pair(kernel_size, fn, "kernel_size", 1)
    s = pair(k if stride is None else stride, fn, "stride", 1)
    p = pair(padding, fn, "padding", 0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{fn}: padding must be at most half the kernel size, i.e. <= "
                         f"({k[0] // 2}, {k[1] // 2}) for kernel_size {k}; got {p}")
    H, W = x.shape[2:]
    o = (_out_len(H, k[0], s[0], p[0], ceil_mode), _out_len(W, k[1], s[1], p[1], ceil_mode))
    if o[0] < 1 or o[1] < 1:
        raise ValueError(f"{fn}: a {k[0]}x{k[1]} window with padding {p} does not fit an "
                         f"input of size ({H}, {W})")
    return k, s, p, o


class _Pool2d(Function):
    """Shared geometry: a padded canvas that holds every window, and its tap views."""

    fn = "pool2d"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        self.args = (kernel_size, stride, padding, bool(ceil_mode))

    def _setup(self, x):
        k, s, p, o = _geometry(self.fn, x, *self.args)
        # Rows -PH .. (OH-1)*SH + KH - 1 - PH of the input are all that any window reads.
        self.k, self.s, self.p, self.o = k, s, p, o
        self.canvas = ((o[0] - 1) * s[0] + k[0], (o[1] - 1) * s[1] + k[1])
        self.x_meta = (x.shape, x.dtype)

    def _pad(self, x, fill):
        N, C, H, W = x.shape
        (PH, PW), (EH, EW) = self.p, self.canvas
        canvas = self.xp.full((N, C, EH, EW), fill, dtype=x.dtype)
        h, w = min(H, EH - PH), min(W, EW - PW)
        canvas[:, :, PH:PH + h, PW:PW + w] = x[:, :, :h, :w]
        return canvas

    def _crop(self, canvas):
        (N, C, H, W), dtype = self.x_meta
        (PH, PW), (EH, EW) = self.p, self.canvas
        h, w = min(H, EH - PH), min(W, EW - PW)
        if (h, w) == (H, W):
            return self.xp.ascontiguousarray(canvas[:, :, PH:PH + H, PW:PW + W])
        gx = self.xp.zeros((N, C, H, W), dtype=dtype)
        gx[:, :, :h, :w] = canvas[:, :, PH:PH + h, PW:PW + w]
        return gx

    def _taps(self):
        """Yield ``(k, (rows, cols))``: tap k's slices of the canvas, one per output."""
        (KH, KW), (SH, SW), (OH, OW) = self.k, self.s, self.o
        for i in range(KH):
            for j in range(KW):
                yield i * KW + j, (slice(i, i + SH * (OH - 1) + 1, SH),
                                   slice(j, j + SW * (OW - 1) + 1, SW))


class MaxPool2d(_Pool2d):
    """The forward pass keeps, per output, the tap k of its maximum (``idx``, the
    argmax, int8), so that the backward pass needs no ``ufunc.at``: for each tap, the
    outputs whose argmax is that tap send gy to distinct canvas pixels (one window
    holds each tap once), so one add per tap collects every gradient.

    The canvas is kept as its SH*SW phases, ``phase[a][b] = canvas[a::SH, b::SW]``, each
    contiguous: tap (i, j) then reads the unit-stride block of phase (i % SH, j % SW)
    at offset (i // SH, j // SW), where a stride-2 view of one canvas made every
    comparison and every add of the taps 2-8x slower (measured on SegNet's pools)."""

    fn = "max_pool2d"

    def forward(self, x):
        self._setup(x)
        N, C = x.shape[:2]
        y = self.xp.empty((N, C) + self.o, dtype=x.dtype)
        idx = self.xp.empty((N, C) + self.o, dtype=_index_dtype(self.k[0] * self.k[1]))

        def run(lo, hi):
            self._forward_images(x[lo:hi], y[lo:hi], idx[lo:hi])

        # The images are independent: the NumPy backend runs them on several cores.
        self.backend.for_runs(run, N, flops=self._work(y.size))
        self.idx = idx if self.needs_input_grad[0] else None
        return y

    def _forward_images(self, x, y, idx):
        """y and idx (n, C, OH, OW) of images x (n, C, H, W)."""
        xp = self.xp
        shape = x.shape[:2]
        phases = [xp.full(shape + ph[2:], -np.inf, dtype=x.dtype)
                  for ph, _, _ in self._phases()]
        for phase, (_, inner, outer) in zip(phases, self._phases()):
            phase[inner] = x[outer]
        taps = self._phase_taps(phases)
        _, first = next(taps)
        xp.copyto(y, first)
        # Start every window at its first in-image tap, so that a window whose pixels are
        # all -inf still points its gradient at a real pixel (PyTorch does the same).
        # Seeding y with tap 0 agrees: where tap 0 is in the image, that tap is 0.
        xp.copyto(idx, xp.broadcast_to(self._first_inside(), y.shape), casting="unsafe")
        # NaN wins, the last one: only then does the comparison need an isnan per tap.
        # A NaN anywhere in x makes its sum NaN (inf - inf only adds a needless check).
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is expected here
            nan = bool(xp.isnan(x.sum()))
        take = xp.empty(y.shape, dtype=bool)
        tap = xp.empty(y.shape, dtype=idx.dtype)
        for k, v in taps:
            xp.greater(v, y, out=take)
            if nan:
                take |= xp.isnan(v)
            xp.maximum(y, v, out=y)  # NaN propagates, as a taken NaN would
            # A window's in-image taps (the only ones that can win) come at or after its
            # first in-image tap in row-major order, so the last tap taken is the
            # largest: a running maximum of k * take, cheaper than a masked copy.
            xp.maximum(idx, xp.multiply(take.view(tap.dtype), tap.dtype.type(k), out=tap),
                       out=idx)

    def _work(self, outputs):
        """About four passes per tap over the outputs, in ``for_runs``'s units."""
        return self.backend.ELEMENT_FLOPS * 4 * outputs * self.k[0] * self.k[1]

    def _phases(self):
        """Per phase (a, b), row-major: its shape, and the block of it that holds image
        pixels with the matching slice of x (inner, outer), both (N, C, rows, cols)."""
        (N, C, H, W), _ = self.x_meta
        (SH, SW), (PH, PW), (EH, EW) = self.s, self.p, self.canvas
        for a in range(SH):
            rows, inner_r, outer_r = _phase_axis(a, SH, PH, H, EH)
            for b in range(SW):
                cols, inner_c, outer_c = _phase_axis(b, SW, PW, W, EW)
                lead = (slice(None), slice(None))
                yield (N, C, rows, cols), lead + (inner_r, inner_c), lead + (outer_r, outer_c)

    def _phase_taps(self, phases):
        """Yield ``(k, view)``: tap k's (N, C, OH, OW) block of its phase."""
        (KH, KW), (SH, SW), (OH, OW) = self.k, self.s, self.o
        for i in range(KH):
            for j in range(KW):
                q, r = i // SH, j // SW
                yield i * KW + j, phases[(i % SH) * SW + j % SW][:, :, q:q + OH, r:r + OW]

    def _first_inside(self):
        (_, KW), (SH, SW), (PH, PW), (OH, OW) = self.k, self.s, self.p, self.o
        i0 = np.maximum(PH - np.arange(OH) * SH, 0)
        j0 = np.maximum(PW - np.arange(OW) * SW, 0)
        return self.backend.asarray(i0[:, None] * KW + j0[None, :])

    def backward(self, gy):
        (N, C, H, W), dtype = self.x_meta
        gx = self.xp.empty((N, C, H, W), dtype=dtype)

        def run(lo, hi):
            self._backward_images(gy[lo:hi], self.idx[lo:hi], gx[lo:hi])

        self.backend.for_runs(run, N, flops=self._work(gy.size))
        return gx

    def _backward_images(self, gy, idx, gx):
        """gx (n, C, H, W) of images whose outputs have gradient gy and argmax idx."""
        xp = self.xp
        shape = gy.shape[:2]
        gphases = [xp.zeros(shape + ph[2:], dtype=gy.dtype) for ph, _, _ in self._phases()]
        mine = xp.empty(gy.shape, dtype=bool)
        part = xp.empty_like(gy)
        for k, view in self._phase_taps(gphases):
            xp.equal(idx, k, out=mine)
            view += xp.multiply(gy, mine, out=part)
        # pixels that no window reads (past the last window) get no gradient
        gx[...] = 0
        for gphase, (_, inner, outer) in zip(gphases, self._phases()):
            gx[outer] = gphase[inner]


def _phase_axis(a, S, P, size, E):
    """Phase a of one axis of the canvas (canvas indices a, a + S, ... < E; canvas index
    e is image index e - P): its length, and the slices of it and of the image that
    hold the image indices h = a - P + S t, 0 <= h < size."""
    n = len(range(a, E, S))
    h0 = (a - P) % S
    t0 = (h0 + P - a) // S
    count = max(0, min(len(range(h0, size, S)), n - t0))
    return n, slice(t0, t0 + count), slice(h0, h0 + S * count, S)


def _index_dtype(taps):
    return np.int8 if taps <= 127 else np.int32


class AvgPool2d(_Pool2d):
    fn = "avg_pool2d"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def _divisor(self, H, W, dtype):
        def counts(size, k, s, p, o):
            start = np.arange(o) * s - p
            end = np.minimum(start + k, size + p)
            if self.count_include_pad:
                return end - start
            return np.minimum(end, size) - np.maximum(start, 0)

        dh = counts(H, self.k[0], self.s[0], self.p[0], self.o[0])
        dw = counts(W, self.k[1], self.s[1], self.p[1], self.o[1])
        return self.backend.asarray((dh[:, None] * dw[None, :]).astype(dtype))

    def forward(self, x):
        self._setup(x)
        canvas = self._pad(x, 0)
        y = self.xp.zeros(x.shape[:2] + self.o, dtype=x.dtype)
        for _, (rows, cols) in self._taps():
            y += canvas[:, :, rows, cols]
        self.divisor = self._divisor(x.shape[2], x.shape[3], x.dtype)
        return y / self.divisor

    def backward(self, gy):
        g = gy / self.divisor
        gcanvas = self.xp.zeros(gy.shape[:2] + self.canvas, dtype=gy.dtype)
        for _, (rows, cols) in self._taps():
            gcanvas[:, :, rows, cols] += g
        return self._crop(gcanvas)


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max pooling of x (N, C, H, W) -> (N, C, OH, OW), as ``torch.nn.functional.max_pool2d``
    (no dilation, no return_indices).  ``stride`` defaults to ``kernel_size``; padding
    never wins the max.  Ties send the gradient to the first maximum of the window in
    row-major order.  See the module docstring for the output size."""
    return MaxPool2d(kernel_size, stride, padding, ceil_mode)(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """Average pooling of x (N, C, H, W) -> (N, C, OH, OW), as
    ``torch.nn.functional.avg_pool2d`` (no divisor_override).  With ``count_include_pad``
    the divisor counts zero padding but not the ceil_mode overhang past it."""
    return AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad)(x)
