"""Input checks shared by the models: errors name the model, what it expected and what
it was given, before any layer sees the input."""

from .._validate import check_float, check_ndim, is_int, positive_int
from ..autograd import as_tensor

__all__ = ["check_images", "check_embeddings", "check_widths", "check_positive",
           "check_switches", "resolve_embeddings"]

SEGAWARE_CHOICES = ("none", "fc6", "all")


def check_images(fn, x, channels, dtype, min_size=1):
    """x as a Tensor, after checking it is a (N, channels, H, W) array of the model's
    parameter ``dtype`` with H, W >= min_size."""
    x = as_tensor(x)
    check_ndim(fn, "x", x, f"(N, {channels}, H, W)")
    check_float(fn, "x", x)
    if x.dtype != dtype:
        raise TypeError(f"{fn}: x must have the parameters' dtype {dtype} (cast the model "
                        f"with .to() or the input); got {x.dtype}")
    if x.shape[1] != channels:
        raise ValueError(f"{fn}: x must be (N, {channels}, H, W) with {channels} channels; "
                         f"got shape {tuple(x.shape)}")
    if min(x.shape[2:]) < min_size or x.shape[0] < 1:
        raise ValueError(f"{fn}: x must have N >= 1 and H, W >= {min_size}; got shape "
                         f"{tuple(x.shape)}")
    return x


def check_embeddings(fn, e, x):
    """e as a Tensor, after checking it is a float (N, D, H, W) matching x's N, H, W."""
    e = as_tensor(e)
    check_ndim(fn, "e", e, "(N, D, H, W)")
    check_float(fn, "e", e)
    N, _, H, W = x.shape
    if e.shape[0] != N or tuple(e.shape[2:]) != (H, W):
        raise ValueError(f"{fn}: embeddings e must be (N, D, H, W) with the N, H, W of x "
                         f"({N}, {H}, {W}); got shape {tuple(e.shape)}")
    if e.dtype != x.dtype:
        raise TypeError(f"{fn}: e must have x's dtype {x.dtype}; got {e.dtype}")
    return e


def check_widths(fn, widths, count):
    """``widths`` as a tuple of ``count`` positive ints."""
    ok = isinstance(widths, (tuple, list)) and len(widths) == count and all(
        is_int(w) and w >= 1
        for w in widths)
    if not ok:
        raise ValueError(f"{fn}: widths must be {count} positive ints; got {widths!r}")
    return tuple(int(w) for w in widths)


def check_positive(fn, name, value):
    """``value`` as an int, after checking it is a positive int."""
    return positive_int(fn, name, value)


def check_switches(fn, segaware, bf):
    """Table 1's switches: ``segaware`` one of SEGAWARE_CHOICES, ``bf`` None or
    (repeat >= 1, ksize) (the filter itself checks that ksize is odd)."""
    if segaware not in SEGAWARE_CHOICES:
        raise ValueError(f"{fn}: segaware must be one of {SEGAWARE_CHOICES}; got {segaware!r}")
    ok = bf is None or (
        isinstance(bf, (tuple, list)) and len(bf) == 2
        and all(is_int(v) for v in bf)
        and bf[0] >= 1)
    if not ok:
        raise ValueError(f"{fn}: bf must be None or (repeat >= 1, odd ksize); got {bf!r}")


def resolve_embeddings(fn, x, e, embedder, needed, image=None):
    """The embeddings (N, D, H, W) that a model's segmentation-aware layers use: ``e``
    checked against x when given, else ``embedder(image)``'s final embeddings when
    ``needed`` (``image`` defaults to x; a flow network passes its first frame), else
    None."""
    if e is not None:
        return check_embeddings(fn, e, x)
    if not needed:
        return None
    if embedder is None:
        raise ValueError(f"{fn}.forward: this configuration needs embeddings; pass e or "
                         f"build the network with an embedder")
    e, _ = embedder(x if image is None else image)
    return e
