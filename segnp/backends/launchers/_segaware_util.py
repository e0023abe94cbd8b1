"""What the segmentation-aware launchers (segaware, masked_conv, pairs) share: the
window checks, contiguous inputs, 1-D launches, and the mask denominator of Eqs. 4 and 7.
"""
from . import _INT32_MAX, check_real, grid_1d, int32, real
from ...window import NORM_EPS
from ...window import segaware_window
from ..._validate import check_ndim, check_same_dtype


def launch_flat(rt, filename, name, dtype, total, args):
    """Launch the grid-stride kernel ``name`` of ``filename`` over ``total`` items."""
    rt.kernel(filename, name, dtype)(grid_1d(rt, total), (rt.threads,), tuple(args))


def checked_window(fn, H, W, ksize, stride, padding, dilation, given=None):
    """The :class:`segnp.window.Window` of a segmentation-aware op (``given``, or built
    from the loose arguments), checked against the kernels' 32-bit index limit.  Kernels
    take its fields, ``*win.ints()``, in the order of the ``SegWindow`` struct."""
    win = segaware_window(fn, H, W, ksize, stride, padding, dilation, given)
    plane_limit(fn, "OH*OW", win.OH * win.OW)
    return win


def plane_limit(fn, what, value):
    """The segmentation-aware kernels index pixels and outputs within one image with
    32-bit ints (offsets across images and channels are 64-bit)."""
    if value > _INT32_MAX:
        raise ValueError(f"{fn}: {what} = {value} exceeds the CUDA kernels' 32-bit "
                         f"per-image index limit of {_INT32_MAX}")


def image(rt, fn, name, a, letters="(N, C, H, W)"):
    """Check a floating 4-d array and return it C-contiguous (RawKernels ignore strides)."""
    check_real(fn, name, a)
    check_ndim(fn, name, a, letters)
    plane_limit(fn, "H*W", a.shape[2] * a.shape[3])
    return rt.xp.ascontiguousarray(a)


def per_output(rt, fn, name, a, shape, letters):
    """Check that ``a`` has exactly ``shape`` (e.g. a mask (N, K, OH, OW)); contiguous copy."""
    check_real(fn, name, a)
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{fn}: {name} must be {letters} = {tuple(shape)} for this input "
                         f"and window; got {tuple(a.shape)}")
    return rt.xp.ascontiguousarray(a)


def same_dtype(fn, **arrays):
    check_same_dtype(fn, list(arrays), list(arrays.values()))


def mask_inv(rt, m, normalize=True):
    """inv (N, OH, OW) = 1 / (sum_k m + NORM_EPS), the denominator of Eqs. 4 and 7
    (ones when ``normalize`` is False).  m (N, K, OH, OW) contiguous."""
    N, K, OH, OW = m.shape
    inv = rt.xp.empty((N, OH, OW), dtype=m.dtype)
    launch_flat(rt, "segaware.cu", "mask_inv", m.dtype, N * OH * OW,
                (m, inv, *int32(N, K, OH * OW), *real(m.dtype, NORM_EPS), *int32(int(normalize))))
    return inv


def finish_mask_grad(rt, m, inv, G):
    """In place: G <- inv * (G - inv * sum_k m G), the mask gradient of a normalised
    filter from the per-tap products G (N, K, OH, OW); see mask_grad_finish."""
    N, K, OH, OW = m.shape
    launch_flat(rt, "segaware.cu", "mask_grad_finish", m.dtype, N * OH * OW,
                (m, inv, G, *int32(N, K, OH * OW)))
    return G
