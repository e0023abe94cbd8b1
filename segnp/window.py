"""Window arithmetic, below every layer: pairs, output sizes, valid taps, the taps as
rectangles of outputs (:func:`tap_rects`), the :class:`Window` of a
segmentation-aware op, and the eps of Eqs. 4 and 7.

Conventions (issue 3): K = KH*KW taps in row-major order; for an odd window tap K//2
is the centre; the default padding of the segmentation-aware ops is
``dilation * (ksize // 2)``; the centre of output position o is input pixel o*stride.
``backends/cuda/window.cuh`` is the CUDA side of this module.
"""
import functools
import operator
from dataclasses import astuple, dataclass

import numpy as np

from ._validate import check_shape, is_int

# Added to the mask sum in the denominators of Eqs. 4 and 7 so that a window whose
# every tap is masked away gives 0 rather than 0/0.
NORM_EPS = 1e-6


def pair(value, fn, name, minimum=None):
    """Return ``value`` as a pair of Python ints, checking it is >= ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{fn}: {name} must be an int or a pair of ints; got {value!r}")
        a, b = value
    else:
        a = b = value
    for v in (a, b):
        if not is_int(v):
            raise TypeError(f"{fn}: {name} must be an int or a pair of ints; got {value!r}")
    a, b = int(a), int(b)
    if minimum is not None and (a < minimum or b < minimum):
        raise ValueError(f"{fn}: {name} must be >= {minimum}; got {value!r}")
    return a, b


def out_size(size, k, s, p, d):
    """Output length of a window of k taps, stride s, padding p, dilation d."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def conv_geometry(fn, H, W, ksize, stride, padding, dilation):
    """Normalise conv-style window arguments and return them with (OH, OW).

    Raises ValueError when the window does not fit the padded input.
    """
    KH, KW = pair(ksize, fn, "ksize", 1)
    SH, SW = pair(stride, fn, "stride", 1)
    PH, PW = pair(padding, fn, "padding", 0)
    DH, DW = pair(dilation, fn, "dilation", 1)
    OH, OW = out_size(H, KH, SH, PH, DH), out_size(W, KW, SW, PW, DW)
    if OH < 1 or OW < 1:
        raise ValueError(
            f"{fn}: a {KH}x{KW} window with dilation ({DH}, {DW}) and padding ({PH}, {PW}) "
            f"does not fit an input of size ({H}, {W})")
    return (KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW)


def conv_backward_geometry(fn, x, W, gy, stride, padding, dilation):
    """:func:`conv_geometry` of a convolution of x (N, C, H, W) with W (F, C, KH, KW),
    after checking that its output gradient gy is (N, F, OH, OW)."""
    k, s, p, d, o = conv_geometry(fn, x.shape[2], x.shape[3], W.shape[2:], stride, padding,
                                  dilation)
    want = (x.shape[0], W.shape[0]) + o
    if tuple(gy.shape) != want:
        raise ValueError(f"{fn}: gy must have shape (N, F, OH, OW) = {want}; got "
                         f"{tuple(gy.shape)}")
    return k, s, p, d, o


def segaware_geometry(fn, H, W, ksize, stride=1, padding=None, dilation=1):
    """Like :func:`conv_geometry` for the segmentation-aware ops: ``ksize`` is one odd
    int (K = ksize**2) and ``padding=None`` means ``dilation * (ksize // 2)``."""
    if not is_int(ksize):
        raise TypeError(f"{fn}: ksize must be an odd int; got {ksize!r}")
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"{fn}: ksize must be odd and positive, so that the window has "
                         f"a centre tap; got {ksize}")
    DH, DW = pair(dilation, fn, "dilation", 1)
    if padding is None:
        padding = (DH * (ksize // 2), DW * (ksize // 2))
    return conv_geometry(fn, H, W, int(ksize), stride, padding, (DH, DW))


def transposed_geometry(fn, H, W, ksize, stride, padding, output_padding, dilation):
    """Normalised (k, s, p, op, d) pairs and the output size (OH, OW) of a transposed
    convolution of an H x W input, ``OH = (H - 1)*SH - 2*PH + DH*(KH - 1) + OPH + 1``;
    ValueError when the output would be empty or output_padding is not below the stride
    (it picks one of the stride's input sizes that a strided convolution maps alike)."""
    KH, KW = pair(ksize, fn, "ksize", 1)
    SH, SW = pair(stride, fn, "stride", 1)
    PH, PW = pair(padding, fn, "padding", 0)
    OPH, OPW = pair(output_padding, fn, "output_padding", 0)
    DH, DW = pair(dilation, fn, "dilation", 1)
    if OPH >= SH or OPW >= SW:
        raise ValueError(f"{fn}: output_padding must be smaller than stride ({SH}, {SW}); "
                         f"got ({OPH}, {OPW})")
    OH = (H - 1) * SH - 2 * PH + DH * (KH - 1) + OPH + 1
    OW = (W - 1) * SW - 2 * PW + DW * (KW - 1) + OPW + 1
    if OH < 1 or OW < 1:
        raise ValueError(f"{fn}: padding ({PH}, {PW}) crops more than a {KH}x{KW} window "
                         f"with stride ({SH}, {SW}) produces from an input of size "
                         f"({H}, {W}); the output would be ({OH}, {OW})")
    return (KH, KW), (SH, SW), (PH, PW), (OPH, OPW), (DH, DW), (OH, OW)


def _centre_padding(fn, KS, padding, dilation, why):
    """ValueError unless padding <= dilation * (KS // 2) on both axes (``why`` says what
    that rule keeps)."""
    (PH, PW), (DH, DW), half = padding, dilation, KS // 2
    if PH > DH * half or PW > DW * half:
        raise ValueError(f"{fn}: padding must be at most dilation*(ksize//2) = "
                         f"({DH * half}, {DW * half}) {why}; got ({PH}, {PW})")


@dataclass(frozen=True)
class Window:
    """The window of a segmentation-aware op on an H x W input, worked out once.

    The public functions (``segnp.functions.segaware``) build it with
    :meth:`segaware` and hand it to every kernel and launcher, which read its fields
    instead of working the arithmetic out again.  Its fields are those of the
    ``SegWindow`` struct of ``backends/cuda/window.cuh``, in the same order, so
    ``*window.ints()`` is the argument list the CUDA kernels build that struct from.

    KS x KS taps (KS odd, K = KS**2 in row-major order, tap K//2 the centre), stride
    (SH, SW), padding (PH, PW) <= dilation * (KS // 2), dilation (DH, DW), output
    OH x OW.  The centre of output (oh, ow) is input pixel (oh*SH + CH, ow*SW + CW).
    """
    H: int
    W: int
    KS: int
    OH: int
    OW: int
    SH: int
    SW: int
    PH: int
    PW: int
    DH: int
    DW: int

    @classmethod
    def segaware(cls, fn, H, W, ksize, stride=1, padding=None, dilation=1):
        """Check the arguments of a segmentation-aware op (errors name ``fn``) and build
        its window: ``ksize`` one odd int, ``padding=None`` meaning ``dilation *
        (ksize // 2)``, and no padding above that, since it would put window centres,
        the reference embeddings of Eq. 3, outside the image."""
        (KS, _), (SH, SW), (PH, PW), (DH, DW), (OH, OW) = segaware_geometry(
            fn, H, W, ksize, stride, padding, dilation)
        _centre_padding(fn, KS, (PH, PW), (DH, DW),
                        "so that the centre of every window lies in the image")
        return cls(int(H), int(W), KS, OH, OW, SH, SW, PH, PW, DH, DW)

    @classmethod
    def transposed(cls, fn, H, W, ksize, stride=1, padding=0, output_padding=0, dilation=1):
        """The window of a segmentation-aware *transposed* convolution of an H x W input
        (``segaware_conv_transpose2d``), whose output is (OH, OW) with
        ``OH = (H - 1)*SH - 2*PH + DH*(KS - 1) + OPH + 1`` as in ``conv_transpose2d``.

        It is the window of the segmentation-aware convolution that op is the adjoint
        of, so its *image* is the transposed op's output and its *outputs* are the
        input samples: ``win.H, win.W`` = (OH, OW) and ``win.OH, win.OW`` = (H, W).
        Input sample i sends tap k to pixel ``tap_k(i) = i*S - P + k*D`` of the output
        and sits at ``p(i) = i*S - P + D*(KS//2)``, the window's centre, so
        :meth:`segaware`'s rule (padding at most ``dilation * (ksize // 2)``) is what
        keeps every p(i) inside the output, and ``im2dist`` of this window gives the
        distances ``||e[tap_k(i)] - e[p(i)]||`` of the op's mask.
        """
        if not is_int(ksize) or ksize < 1 or ksize % 2 == 0:
            raise ValueError(f"{fn}: the kernel size must be odd and positive, so that "
                             f"every input sample has a centre tap; got {ksize!r}")
        (KS, _), (SH, SW), (PH, PW), _, (DH, DW), (OH, OW) = transposed_geometry(
            fn, H, W, int(ksize), stride, padding, output_padding, dilation)
        _centre_padding(fn, KS, (PH, PW), (DH, DW),
                        "so that every input sample's position p(i) = i*stride - padding + "
                        "dilation*(ksize//2) lies in the output")
        return cls(OH, OW, KS, int(H), int(W), SH, SW, PH, PW, DH, DW)

    def check_transposed_operands(self, fn, x, m, W, gy=None):
        """What a transposed kernel keeps of the checks (the public function made the
        rest): x (N, C, H, W) and the mask m (N, K, H, W) on the input plane, W (C, F,
        KS, KS), and gy (N, F, OH, OW) on the output plane of :meth:`transposed`."""
        N, C = x.shape[:2]
        F = W.shape[1] if W.ndim == 4 else -1
        want = [("x", x, (N, C, self.OH, self.OW), "(N, C, H, W)"),
                ("m", m, (N, self.K, self.OH, self.OW), "(N, K, H, W)"),
                ("W", W, (C, F, self.KS, self.KS), "(C, F, KS, KS)")]
        if gy is not None:
            want.append(("gy", gy, (N, F, self.H, self.W), "(N, F, OH, OW)"))
        for name, a, shape, letters in want:
            if tuple(a.shape) != shape:
                raise ValueError(f"{fn}: {name} must be {letters} = {shape} for this "
                                 f"window; got {tuple(a.shape)}")

    K = property(lambda self: self.KS * self.KS, doc="The number of taps, KS**2.")
    ksize = property(lambda self: (self.KS, self.KS), doc="(KH, KW) = (KS, KS).")
    stride = property(lambda self: (self.SH, self.SW), doc="(SH, SW).")
    padding = property(lambda self: (self.PH, self.PW), doc="(PH, PW).")
    dilation = property(lambda self: (self.DH, self.DW), doc="(DH, DW).")
    out = property(lambda self: (self.OH, self.OW), doc="(OH, OW).")

    @property
    def centre(self):
        """(CH, CW): the centre tap's offset; (0, 0) with the default padding."""
        return self.DH * (self.KS // 2) - self.PH, self.DW * (self.KS // 2) - self.PW

    def ints(self):
        """The fields in ``SegWindow`` order: H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW."""
        return astuple(self)

    def of(self, fn, H, W):
        """This window, after checking that it was built for an H x W input."""
        if (self.H, self.W) != (H, W):
            raise ValueError(f"{fn}: the window was built for a ({self.H}, {self.W}) "
                             f"input; got ({H}, {W})")
        return self

    def check_operands(self, fn, x, W=None, **per_output):
        """The one check a kernel keeps, an invariant of its launch: its arrays agree
        with this window.  x (N, C, H, W) is the input the window was built for; W, if
        given, is (F, C, KS, KS); each array of ``per_output`` is (N, K, OH, OW), except
        ``gy``, (N, F, OH, OW) ((N, C, OH, OW) without W).  Ranks, dtypes and the other
        arguments were checked once, by the public function."""
        N, C, H, Wd = x.shape
        self.of(fn, H, Wd)
        F, letters = C, "(N, C, OH, OW)"
        if W is not None:
            F, letters = W.shape[0], "(N, F, OH, OW)"
            check_shape(fn, "W", W, (F, C, self.KS, self.KS), "(F, C, KS, KS)")
        for name, a in per_output.items():
            if name == "gy":
                check_shape(fn, name, a, (N, F) + self.out, letters)
            else:
                check_shape(fn, name, a, (N, self.K) + self.out, "(N, K, OH, OW)")

    def check_passes(self, fn, repeat):
        """The launch check of the repeated bilateral filter's forward pass: a pass's
        output is the next pass's input, so the window keeps the input's size (stride 1,
        the default padding), and ``repeat`` >= 1."""
        self._check_keeps_size(fn)
        if repeat < 1:
            raise ValueError(f"{fn}: repeat must be >= 1; got {repeat}")

    def check_pass_outputs(self, fn, x, ys):
        """The same for its backward pass, handed the passes' outputs ``ys`` rather than
        their count: at least one, each of x's shape."""
        self._check_keeps_size(fn)
        if not ys:
            raise ValueError(f"{fn}: ys must hold at least one pass's output, each "
                             f"(N, C, H, W) = {tuple(x.shape)}; got none")
        for r, y in enumerate(ys):
            check_shape(fn, f"ys[{r}]", y, tuple(x.shape), "(N, C, H, W)")

    def _check_keeps_size(self, fn):
        if self.out != (self.H, self.W):
            raise ValueError(f"{fn}: win must keep the input's size (stride 1, the default "
                             f"padding): its output (OH, OW) must be {(self.H, self.W)}; "
                             f"got {self.out}")

    def taps(self):
        """The ``(k, rect, tap, centre)`` of each of the K taps, as :func:`tap_rects`
        gives them, and ``centre``: the slices of the centre pixels of the outputs
        ``rect`` (all three None for a tap that lies wholly in the padding).  A tuple,
        worked out once per window: a training step asks for the same few windows
        thousands of times."""
        return _window_taps(self)


@functools.lru_cache(maxsize=512)
def _window_taps(win):
    CH, CW = win.centre
    taps = []
    for i, j, rect, tap in tap_rects((win.H, win.W), win.ksize, win.stride, win.padding,
                                     win.dilation, win.out):
        k = i * win.KS + j
        if rect is None:
            taps.append((k, None, None, None))
            continue
        r, c = rect
        taps.append((k, rect, tap, (_read(r.start, r.stop, win.SH, CH),
                                    _read(c.start, c.stop, win.SW, CW))))
    return tuple(taps)


# ---- taps as rectangles ----------------------------------------------------------------
# For one tap of a window the outputs whose tap pixel lies inside the image form a
# rectangle, and the pixels they read form one strided slice of the input: the NumPy
# kernels loop over the K taps and do a few array operations on each rectangle rather
# than build the K-column matrix of Sec. 4.2.
def _span(off, S, size, O):
    """Outputs ``lo <= o < hi`` (of O) whose input index ``o*S + off`` lies in [0, size)."""
    lo = max(0, -(off // S))
    return lo, max(lo, min(O, (size - 1 - off) // S + 1))


def _read(lo, hi, S, off):
    """The input slice that outputs ``lo <= o < hi`` read at ``o*S + off``."""
    return slice(lo * S + off, (hi - 1) * S + off + 1, S)


def tap_rects(size, ksize, stride, padding, dilation, out):
    """The ``(i, j, rect, tap)`` of each tap (i, j) of a KH x KW window, row-major, as a
    tuple (worked out once per geometry and then looked up).

    ``rect`` is the (rows, cols) slice pair of the outputs whose tap pixel
    ``(oh*SH - PH + i*DH, ow*SW - PW + j*DW)`` lies inside the (H, W) = ``size`` image,
    and ``tap`` the slice pair of those pixels, of the same shape.  Both are None for a
    tap that lies wholly in the padding.  Arguments are normalised pairs, as
    :func:`conv_geometry` returns them.
    """
    return _tap_rects(*(tuple(operator.index(v) for v in a)
                        for a in (size, ksize, stride, padding, dilation, out)))


@functools.lru_cache(maxsize=512)
def _tap_rects(size, ksize, stride, padding, dilation, out):
    (H, W), (KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW) = (
        size, ksize, stride, padding, dilation, out)
    rects = []
    for i in range(KH):
        th = i * DH - PH
        lo_h, hi_h = _span(th, SH, H, OH)
        for j in range(KW):
            tw = j * DW - PW
            lo_w, hi_w = _span(tw, SW, W, OW)
            if hi_h == lo_h or hi_w == lo_w:
                rects.append((i, j, None, None))
                continue
            rects.append((i, j, (slice(lo_h, hi_h), slice(lo_w, hi_w)),
                          (_read(lo_h, hi_h, SH, th), _read(lo_w, hi_w, SW, tw))))
    return tuple(rects)


def tap_valid(H, W, ksize, stride, padding, dilation, include_center=True, dtype=np.float32):
    """(1, K, OH, OW) array: 1 where tap k of output o falls inside the H x W image.

    With ``include_center=False`` the centre tap (K//2, odd windows only) is 0 too.
    Arguments must already be normalised pairs (see :func:`conv_geometry`).
    """
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = ksize, stride, padding, dilation
    OH, OW = out_size(H, KH, SH, PH, DH), out_size(W, KW, SW, PW, DW)
    # Input row of tap (i, .) at output row o is o*SH - PH + i*DH.
    rows = np.arange(OH)[None, :] * SH - PH + np.arange(KH)[:, None] * DH  # (KH, OH)
    cols = np.arange(OW)[None, :] * SW - PW + np.arange(KW)[:, None] * DW  # (KW, OW)
    rv = (rows >= 0) & (rows < H)
    cv = (cols >= 0) & (cols < W)
    valid = rv[:, None, :, None] & cv[None, :, None, :]  # (KH, KW, OH, OW)
    valid = valid.reshape(1, KH * KW, OH, OW).astype(dtype)
    if not include_center:
        valid[:, (KH * KW) // 2] = 0
    return valid
