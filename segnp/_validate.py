"""Input checks that raise errors naming the function, what was expected and what was given."""
import numpy as np


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


def check_same_dtype(fn, names, arrays):
    """TypeError unless every array has the dtype of the first."""
    dts = [_dtype_of(a) for a in arrays]
    if any(d != dts[0] for d in dts):
        got = ", ".join(f"{n}={d}" for n, d in zip(names, dts))
        raise TypeError(f"{fn}: expected one floating dtype for {', '.join(names)}; got {got}")


def check_norm(fn, norm):
    from .window import NORMS
    if norm not in NORMS:
        raise ValueError(f"{fn}: norm must be one of {NORMS}; got {norm!r}")
