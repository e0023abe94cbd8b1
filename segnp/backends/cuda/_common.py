"""What the launchers (``conv.py``, ``segaware.py``, ``masked_conv.py``, ``pairs.py``)
share: scalar widths, grids, and the launch checks of the segmentation-aware windows.

A launcher is a plain function ``def im2dist(rt, e, win, norm="l1")`` whose parameters
after ``rt`` are exactly those of the NumPy kernel of the same name
(``backends/api.py``); ``CudaBackend`` binds ``rt``.  The same code runs
on cupy arrays (``rt`` is a CuPy runtime) and on numpy arrays (``rt`` is the
emulator's), so it only ever uses ``rt.xp``.

A launcher owns the kernel's contract:

1. check what the launch needs and nothing more (the public function checked the
   arguments once): the arrays agree with the window (:func:`checked_window`) and fit
   the kernels' 32-bit indices; ``rt``'s launch checks each argument's dtype against
   the kernel's C signature;
2. make every input C-contiguous (``rt.xp.ascontiguousarray``): kernels ignore strides;
3. allocate the outputs with ``rt.xp``;
4. compute the grid (:func:`grid_1d` for grid-stride kernels, which use ``rt.threads``
   threads per block and at most ``rt.max_blocks`` blocks);
5. pass sizes as ``numpy.int32`` (:func:`int32`) and floats at the kernel's width
   (:func:`real`), since a Python int or float has no C width.

``rt.kernel(source, name, dtype, defines=None)`` returns the kernel ``name<float>`` or
``name<double>`` of ``backends/cuda/<source>``; calling it as ``k(grid, block, args,
shared_mem=0)`` checks ``args`` against the kernel's C parameter list (see
``runtime.py``) and raises TypeError on a mismatch.
"""
import numpy as np

from ...window import NORM_EPS

_INT32_MAX = np.iinfo(np.int32).max


def int32(*values):
    """``values`` as numpy.int32 scalars; ValueError if one does not fit."""
    out = []
    for v in values:
        if not -_INT32_MAX - 1 <= int(v) <= _INT32_MAX:
            raise ValueError(f"CUDA kernels take sizes as 32-bit ints; got {v}")
        out.append(np.int32(v))
    return tuple(out)


def real(dtype, *values):
    """``values`` as scalars of the floating ``dtype`` (the width of the kernel's T)."""
    t = np.dtype(dtype).type
    return tuple(t(v) for v in values)


def grid_1d(rt, total):
    """Blocks for a grid-stride loop over ``total`` items: enough to cover them, at most
    ``rt.max_blocks`` (the loop covers the rest)."""
    return (max(1, min(rt.max_blocks, -(-int(total) // rt.threads))),)


def launch_flat(rt, filename, name, dtype, total, args):
    """Launch the grid-stride kernel ``name`` of ``filename`` over ``total`` items."""
    rt.kernel(filename, name, dtype)(grid_1d(rt, total), (rt.threads,), tuple(args))


def checked_window(fn, win, x, W=None, **per_output):
    """``win.check_operands`` (the arrays agree with the window), and the window
    checked against the kernels' 32-bit index limits.  Kernels take its fields,
    ``*win.ints()``, in the order of the ``SegWindow`` struct."""
    win.check_operands(fn, x, W, **per_output)
    plane_limit(fn, "H*W", win.H * win.W)
    plane_limit(fn, "OH*OW", win.OH * win.OW)
    return win


def plane_limit(fn, what, value):
    """The segmentation-aware kernels index pixels and outputs within one image with
    32-bit ints (offsets across images and channels are 64-bit)."""
    if value > _INT32_MAX:
        raise ValueError(f"{fn}: {what} = {value} exceeds the CUDA kernels' 32-bit "
                         f"per-image index limit of {_INT32_MAX}")


def contiguous(rt, *arrays):
    """The arrays C-contiguous (RawKernels ignore strides): a copy only where needed."""
    return tuple(rt.xp.ascontiguousarray(a) for a in arrays)


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
