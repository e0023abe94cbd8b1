"""Argument checks, one function per kind of argument, called by the public wrappers
(``segnp/functions``) and the modules: errors name the function, the argument, what was
expected and what was given.  Kernels trust those checks and keep only the invariants
of a launch (:func:`check_shape`: their arrays agree with the window).  Window
arguments (pairs, odd sizes, paddings) are checked where they are worked out, in
:mod:`segnp.window`.
"""
import numbers

import numpy as np

# The distances of Eq. 3, in the order the CUDA kernels number them (SEG_NORM_* in
# backends/cuda/window.cuh).
NORMS = ("l1", "l2", "l2sq")


def _dtype_of(a):
    # Only fall back to np.asarray for plain Python data: it would fail on cupy arrays.
    return np.dtype(a.dtype) if hasattr(a, "dtype") else np.asarray(a).dtype


def check_float(fn, name, a):
    """TypeError unless ``a`` is float32 or float64: the dtypes of every backend's
    kernels (the CUDA kernels are templated on float and double only, so float16 is
    refused here, under the public function's name, on every backend alike)."""
    dt = _dtype_of(a)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{fn}: {name} must be a floating-point array (float32 or float64); "
                        f"got dtype {dt}")


def check_int(fn, name, a):
    """TypeError unless ``a`` has an integer dtype (labels)."""
    dt = _dtype_of(a)
    if dt.kind not in "iu":
        raise TypeError(f"{fn}: {name} must be an integer array; got dtype {dt}")


def check_ndim(fn, name, a, letters):
    """ValueError unless ``a`` has as many dimensions as ``letters``, e.g. '(N, C, H, W)'."""
    ndim = letters.count(",") + 1
    if a.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {letters}; got shape {tuple(a.shape)}")


def check_shape(fn, name, a, shape, letters):
    """ValueError unless ``a`` has exactly ``shape``, e.g. a mask (N, K, OH, OW): the
    check a kernel keeps, that its arrays agree with the window it was handed."""
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{fn}: {name} must be {letters} = {tuple(shape)}; got "
                         f"{tuple(a.shape)}")


def check_same_dtype(fn, names, arrays):
    """TypeError unless every array has the dtype of the first."""
    dts = [_dtype_of(a) for a in arrays]
    if any(d != dts[0] for d in dts):
        got = ", ".join(f"{n}={d}" for n, d in zip(names, dts))
        raise TypeError(f"{fn}: expected one floating dtype for {', '.join(names)}; got {got}")


def check_norm(fn, norm):
    """ValueError unless ``norm`` names a distance of Eq. 3 (:data:`NORMS`);
    returns it."""
    if norm not in NORMS:
        raise ValueError(f"{fn}: norm must be one of {NORMS}; got {norm!r}")
    return norm


# ---- plain arguments: ints and window sizes ---------------------------------------------
def is_int(value):
    """True for a Python or NumPy integer; False for a bool, which Python counts as one."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(fn, name, value):
    """``value`` as an int; ValueError unless it is an int >= 1 (a count: channels, classes)."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{fn}: {name} must be a positive int; got {value!r}")
    return int(value)


def int_at_least(fn, name, value, minimum):
    """``value`` as an int; ValueError unless it is an int >= ``minimum``."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{fn}: {name} must be an int >= {minimum}; got {value!r}")
    return int(value)


def odd_size(fn, name, value):
    """``value`` as an int; ValueError unless it is odd and positive (a window size: the
    segmentation-aware ops need a centre tap)."""
    if not is_int(value) or value < 1 or value % 2 == 0:
        raise ValueError(f"{fn}: {name} must be an odd positive int (the window needs a "
                         f"centre tap); got {value!r}")
    return int(value)


def check_conv_shapes(name, x, W):
    """x (N, C, H, W) and filters W (F, C, KH, KW) with the same C."""
    check_ndim(name, "x", x, "(N, C, H, W)")
    check_ndim(name, "W", W, "(F, C, KH, KW)")
    if x.shape[1] != W.shape[1]:
        raise ValueError(f"{name}: x has {x.shape[1]} channels but W expects {W.shape[1]}: "
                         f"x (N, C, H, W) = {tuple(x.shape)}, W (F, C, KH, KW) = "
                         f"{tuple(W.shape)}")
