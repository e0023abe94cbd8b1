"""Segmentation-aware operators (Secs. 3.2 and 3.4 of the paper), differentiable.

- :func:`im2dist`: the distance between each window's centre embedding and each tap's
  (Sec. 4.2), e (N, D, H, W) -> d (N, K, OH, OW);
- :func:`segaware_mask`: the mask of Eq. 3, ``m = exp(-lam * d) * valid``;
- :func:`segaware_bilateral`: the segmentation-aware bilateral filter of Eq. 4;
- :func:`segaware_conv2d`: the segmentation-aware convolution of Eq. 7.

Windows have an odd ``ksize``; K = ksize**2 taps in row-major order, tap K//2 is the
centre, the default padding is ``dilation * (ksize // 2)`` (the "same" output for stride
1) and the centre of output o is input pixel ``o * stride``.  A smaller padding is
allowed (the centre is still tap K//2, whose pixel is then shifted by ``dilation *
(ksize // 2) - padding``); a larger one is an error, since it would put window centres,
the reference embeddings of Eq. 3, outside the image.  Taps outside the image count in
neither the numerator nor the denominator of Eqs. 4 and 7 (normalised convolution:
missing data is not zero data).

The filter and the convolution are compositions: a mask Function (from e and lam) feeds
a masked-product Function (with x, and W for Eq. 7).  The mask is (N, K, OH, OW), small
next to the features, and the bilateral filter reuses one mask for ``repeat`` passes.
"""
import numbers

from .._validate import check_float, check_ndim, check_norm, check_same_dtype, int_at_least
from ..autograd import Function, Tensor, as_tensor
from ..window import Window

__all__ = ["im2dist", "segaware_mask", "segaware_bilateral", "segaware_conv2d"]


class Im2Dist(Function):
    """e (N, D, H, W) -> d (N, K, OH, OW), 0 at taps outside the image (Sec. 4.2).

    ``window`` is the :class:`segnp.window.Window` the public function built; every
    kernel call of these Functions reads it instead of working the geometry out again."""

    def __init__(self, window, norm="l1"):
        self.win, self.norm = window, norm

    def forward(self, e):
        d = self.backend.im2dist(e, self.win, self.norm)
        if self.needs_input_grad[0]:
            self.e, self.d = e, d
        return d

    def backward(self, gd):
        return (self.backend.im2dist_backward(self.e, self.d, gd, self.win, self.norm),)


class SegAwareMask(Function):
    """(e (N, D, H, W), lam 0-d) -> m (N, K, OH, OW) = exp(-lam * d) * valid (Eq. 3).

    valid is 0 at taps outside the image and, without ``include_center``, at the centre.
    dm/dlam = -d m, so at lam = 0 the gradient of lam is -sum(gm * d * valid), which
    does not vanish: a mask can switch itself on from lam = 0.
    """

    def __init__(self, window, norm="l1", include_center=True):
        self.win, self.norm, self.include_center = window, norm, include_center

    def forward(self, e, lam):
        xp, w = self.xp, self.win
        valid = self.backend.tap_valid(w, self.include_center, dtype=e.dtype)
        d = self.backend.im2dist(e, w, self.norm)
        lam_dtype, lam = lam.dtype, lam.astype(e.dtype)
        m = xp.exp(-lam * d)
        m *= valid
        if any(self.needs_input_grad):
            self.d, self.m, self.lam, self.lam_dtype = d, m, lam, lam_dtype
            self.e = e if self.needs_input_grad[0] else None
        return m

    def backward(self, gm):
        need_e, need_lam = self.needs_input_grad
        gmm = gm * self.m
        glam = None
        if need_lam:
            glam = self.xp.asarray(-(gmm * self.d).sum(), dtype=self.lam_dtype).reshape(())
        ge = None
        if need_e:
            gmm *= -self.lam
            ge = self.backend.im2dist_backward(self.e, self.d, gmm, self.win, self.norm)
        return ge, glam


class MaskedConv2d(Function):
    """(x (N, C, H, W), m (N, K, OH, OW), W (F, C, k, k), b (F,) or None) -> y
    (N, F, OH, OW): Eq. 7 with the mask given, plus the bias."""

    def __init__(self, window, normalize=True):
        self.win, self.normalize = window, normalize

    def forward(self, x, m, W, b):
        y = self.backend.masked_conv(x, m, W, self.win, self.normalize)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        if any(self.needs_input_grad[:3]):
            self.x, self.m, self.W = x, m, W
        return y

    def backward(self, gy):
        need_x, need_m, need_W, need_b = self.needs_input_grad
        gx = gm = gW = None
        if need_x or need_m or need_W:
            gx, gm, gW = self.backend.masked_conv_backward(
                self.x, self.m, self.W, gy, self.win, self.normalize, need_x, need_m, need_W)
        gb = gy.sum(axis=(0, 2, 3)) if need_b else None
        return gx, gm, gW, gb


class Bilateral(Function):
    """(x (N, C, H, W), m (N, K, OH, OW)) -> y (N, C, OH, OW): Eq. 4 with the mask given."""

    def __init__(self, window):
        self.win = window

    def forward(self, x, m):
        if any(self.needs_input_grad):
            self.x, self.m = x, m
        return self.backend.bilateral(x, m, self.win)

    def backward(self, gy):
        need_x, need_m = self.needs_input_grad
        return self.backend.bilateral_backward(self.x, self.m, gy, self.win, need_x, need_m)


class BilateralRepeat(Function):
    """(x (N, C, H, W), m (N, K, H, W)) -> y (N, C, H, W): Eq. 4 ``repeat`` times with one
    mask, y_r = bilateral(y_{r-1}, m), y_0 = x (stride 1).  One Function rather than
    ``repeat`` :class:`Bilateral` nodes: the backend lays the mask out once for all the
    passes, and sums the passes' mask gradients itself."""

    def __init__(self, window, repeat):
        self.win, self.repeat = window, repeat

    def forward(self, x, m):
        ys = self.backend.bilateral_repeat(x, m, self.win, self.repeat)
        if any(self.needs_input_grad):
            self.x, self.m = x, m
            if self.repeat > 1:
                # the NumPy canvas's backward reads the output too, so segnp.torch saves
                # it (an op's kept inputs and outputs), and refuses an in-place change
                # of it before backward; one pass keeps only x and m, as Bilateral does
                self.passes, self.y = ys[:-1], ys[-1]
        return ys[-1]

    def backward(self, gy):
        need_x, need_m = self.needs_input_grad
        if self.repeat == 1:
            return self.backend.bilateral_backward(self.x, self.m, gy, self.win, need_x,
                                                   need_m)
        return self.backend.bilateral_repeat_backward(
            self.x, self.passes + (self.y,), self.m, gy, self.win, need_x, need_m)


# ---- argument checks shared by the wrappers -----------------------------------------
def _embeddings(fn, e, x=None):
    """e as a Tensor, checked to be a float (N, D, H, W) array matching x's N, H, W (the
    caller checks that x and e share a dtype, with its other arrays)."""
    e = as_tensor(e)
    check_float(fn, "e", e.data)
    if x is None:
        check_ndim(fn, "e", e, "(N, D, H, W)")
        return e
    if e.ndim != 4 or e.shape[0] != x.shape[0] or e.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"{fn}: embeddings must be (N, D, H, W) with the same N, H, W as x of shape "
            f"{x.shape}; got e of shape {e.shape}")
    return e


def _lam(fn, lam, e):
    """lam as a 0-d Tensor of e's dtype (a float) or as given (a Tensor); lam >= 0."""
    if hasattr(lam, "ndim") and hasattr(lam, "dtype") and not isinstance(lam, Tensor):
        lam = as_tensor(lam)  # a 0-d array is a constant lam
    if isinstance(lam, Tensor):
        if lam.ndim != 0:
            raise ValueError(f"{fn}: lam must be a float or a 0-d Tensor; got a Tensor of "
                             f"shape {lam.shape}")
        check_float(fn, "lam", lam.data)
        value = float(lam.item())
    elif isinstance(lam, numbers.Real) and not isinstance(lam, bool):
        value = float(lam)
        lam = as_tensor(value, like=e)
    else:
        raise TypeError(f"{fn}: lam must be a float or a 0-d Tensor; got {type(lam).__name__}")
    if not 0 <= value < float("inf"):
        # exp(-inf * 0) at the centre tap would be NaN
        rule = "finite" if value == float("inf") else ">= 0"
        raise ValueError(f"{fn}: lam (the hardness of Eq. 3) must be {rule}; got {value}")
    return lam


# ---- the checks of each public function -------------------------------------------
# Each validates its function's arguments once (errors name ``fn``) and builds the
# window; the wrappers below and segnp.torch (on arrays from PyTorch tensors) call them.
def im2dist_args(e, ksize, stride=1, padding=None, dilation=1, norm="l1", fn="im2dist"):
    """Checked (e, window) of :func:`im2dist`."""
    e = _embeddings(fn, e)
    check_norm(fn, norm)
    return e, Window.segaware(fn, e.shape[2], e.shape[3], ksize, stride, padding, dilation)


def segaware_mask_args(e, lam, ksize, stride=1, padding=None, dilation=1, norm="l1",
                       fn="segaware_mask"):
    """Checked (e, lam, window) of :func:`segaware_mask`."""
    e, win = im2dist_args(e, ksize, stride, padding, dilation, norm, fn)
    return e, _lam(fn, lam, e), win


def segaware_bilateral_args(x, e, lam, ksize=9, dilation=1, norm="l1", repeat=1,
                            fn="segaware_bilateral"):
    """Checked (x, e, lam, window) of :func:`segaware_bilateral`."""
    x = as_tensor(x)
    check_float(fn, "x", x.data)
    check_ndim(fn, "x", x, "(N, C, H, W)")
    e = _embeddings(fn, e, x)
    check_same_dtype(fn, ("x", "e"), (x.data, e.data))
    int_at_least(fn, "repeat", repeat, 1)
    check_norm(fn, norm)
    win = Window.segaware(fn, x.shape[2], x.shape[3], ksize, 1, None, dilation)
    return x, e, _lam(fn, lam, e), win


def segaware_conv2d_args(x, e, W, b=None, lam=0.0, stride=1, padding=None, dilation=1,
                         norm="l1", fn="segaware_conv2d"):
    """Checked (x, e, W, b, lam, window) of :func:`segaware_conv2d`."""
    x, W = as_tensor(x), as_tensor(W)
    check_float(fn, "x", x.data)
    check_ndim(fn, "x", x, "(N, C, H, W)")
    e = _embeddings(fn, e, x)
    check_ndim(fn, "W", W, "(F, C, KH, KW)")
    F, C, KH, KW = W.shape
    if C != x.shape[1] or KH != KW:
        raise ValueError(f"{fn}: W must be (F, C, k, k) with C = {x.shape[1]} (x's channels) "
                         f"and a square odd window; got W of shape {W.shape}")
    names, arrays = ("x", "e", "W"), [x, e, W]
    if b is not None:
        b = as_tensor(b)
        if b.shape != (F,):
            raise ValueError(f"{fn}: b must have shape ({F},); got {b.shape}")
        names, arrays = names + ("b",), arrays + [b]
    check_same_dtype(fn, names, [a.data for a in arrays])
    check_norm(fn, norm)
    # The one place the window is worked out: the mask, the product and both backward
    # passes read this object.
    win = Window.segaware(fn, x.shape[2], x.shape[3], KH, stride, padding, dilation)
    return x, e, W, b, _lam(fn, lam, e), win


# ---- public functions ---------------------------------------------------------------
def im2dist(e, ksize, stride=1, padding=None, dilation=1, norm="l1"):
    """Embedding distances of every window (Sec. 4.2): e (N, D, H, W) -> d (N, K, OH, OW).

    ``d[n, k, o] = ||e[n, :, centre(o)] - e[n, :, tap_k(o)]||`` with ``norm`` 'l1'
    (sum |delta|, the default: less prone to exploding gradients), 'l2' (sqrt(sum
    delta**2), gradient 0 where delta = 0) or 'l2sq' (sum delta**2).  d is 0 at taps
    outside the image.
    """
    e, win = im2dist_args(e, ksize, stride, padding, dilation, norm)
    return Im2Dist(win, norm)(e)


def segaware_mask(e, lam, ksize, stride=1, padding=None, dilation=1, norm="l1",
                  include_center=True):
    """The segmentation mask of Eq. 3: m (N, K, OH, OW) = exp(-lam * d) * valid.

    e (N, D, H, W) embeddings; lam >= 0, a float or a 0-d Tensor (then it gets a
    gradient); d as in :func:`im2dist`.  valid is 0 at taps outside the image and, when
    ``include_center`` is False, at the centre tap K//2; elsewhere it is 1, so the
    centre weight is exp(0) = 1.  Gradients flow to e and lam.
    """
    e, lam, win = segaware_mask_args(e, lam, ksize, stride, padding, dilation, norm)
    return SegAwareMask(win, norm, include_center)(e, lam)


def segaware_bilateral(x, e, lam, ksize=9, dilation=1, norm="l1", repeat=1,
                       include_center=True):
    """Segmentation-aware bilateral filter (Eq. 4), ``repeat`` times with one mask.

    x (N, C, H, W), e (N, D, H, W) -> y (N, C, H, W)::

        y[n, c, i] = sum_k x[n, c, tap_k(i)] m[n, k, i] / (sum_k m[n, k, i] + NORM_EPS)

    with m = :func:`segaware_mask` (stride 1, default padding).  Special cases (Sec.
    3.2): e = 0 gives the box filter over the valid taps; e = coordinates / sigma with
    'l2sq' and lam = 1/2 gives Gaussian smoothing; e = (coordinates / sigma_s,
    colour / sigma_r) gives the classic bilateral filter.  Gradients flow to x, e, lam.
    """
    x, e, lam, win = segaware_bilateral_args(x, e, lam, ksize, dilation, norm, repeat)
    m = SegAwareMask(win, norm, include_center)(e, lam)
    return BilateralRepeat(win, int(repeat))(x, m)


def segaware_conv2d(x, e, W, b=None, lam=0.0, stride=1, padding=None, dilation=1,
                    norm="l1", normalize=True):
    """Segmentation-aware convolution (Eq. 7).

    x (N, C, H, W), e (N, D, H, W), W (F, C, k, k) with k odd, b (F,) or None ->
    y (N, F, OH, OW)::

        y[n, f, o] = sum_{c,k} W[f, c, k] x[n, c, tap_k(o)] m[n, k, o] / Z[n, o] + b[f]

    with m = :func:`segaware_mask` (centre included) and ``Z = sum_k m + NORM_EPS``, or
    Z = 1 when ``normalize`` is False (the variant of the released Caffe network).  With
    lam = 0 the mask is the tap validity, so the result is ``conv2d`` (normalize=False)
    or ``conv2d`` divided by the number of valid taps (normalize=True).  e must have x's
    N, H and W (resize embeddings to each layer's resolution).  Gradients flow to x, W,
    b, e and lam.
    """
    x, e, W, b, lam, win = segaware_conv2d_args(x, e, W, b, lam, stride, padding, dilation,
                                                norm)
    m = SegAwareMask(win, norm, True)(e, lam)
    return MaskedConv2d(win, normalize)(x, m, W, b)
