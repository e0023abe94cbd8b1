"""The common part of every backend object."""
from collections import OrderedDict

import numpy as np

from ..window import tap_valid


# A pass over one array element costs about as long as this many multiply-adds in BLAS:
# how memory-bound work states its ``flops`` to ``Backend.for_runs``.
ELEMENT_FLOPS = 20


def filter_passes(bilateral, x, m, win, repeat):
    """(y_1, .., y_repeat), each (N, C, H, W): the bilateral filter (Eq. 4) applied
    ``repeat`` times with one mask m (N, K, H, W), y_r = bilateral(y_{r-1}, m), y_0 = x,
    a call of a tier's one-pass kernel ``bilateral(x, m, win)`` a pass: the repeated
    filter of the CUDA launchers, and of NumPy where it does not fuse the passes."""
    ys = []
    for _ in range(repeat):
        ys.append(bilateral(ys[-1] if ys else x, m, win))
    return tuple(ys)


def filter_passes_backward(bilateral_backward, x, ys, m, gy, win, need_x, need_m):
    """(gx (N, C, H, W), gm (N, K, H, W)) of :func:`filter_passes` (ys its passes, gy
    the gradient of the last): ``bilateral_backward(x, m, gy, win, need_x, need_m)`` a
    pass, from the last (Eq. 4's chain rule through y_r = bilateral(y_{r-1}, m)), the
    passes' mask gradients summed in that order; None where not needed."""
    g, gm = gy, None
    for r in reversed(range(len(ys))):
        g, gm_r = bilateral_backward(ys[r - 1] if r else x, m, g, win, need_x or r > 0,
                                     need_m)
        gm = gm_r if gm is None else gm + gm_r
    return g, gm


class Backend:
    """Holds the array module ``xp`` and the array-level kernels.

    Subclasses set ``name`` and ``xp`` and provide every name in ``api.KERNEL_NAMES``.
    """

    name = "base"
    xp = np

    def asarray(self, a, dtype=None):
        """Put ``a`` on this backend's device (no copy when already there)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a):
        """Bring an array of this backend back to host NumPy."""
        return np.asarray(a)

    # Constants kept per backend (device): a few per network, more with varying sizes.
    _CONSTANT_CACHE = 128

    def device_id(self):
        """What tells this backend's devices apart (None: there is one)."""
        return None

    def constant(self, key, make):
        """The array ``make()`` (built on the host) on this backend's device, cached per
        ``key`` and device: for constants of a shape (window masks, interpolation
        matrices), which a GPU would otherwise receive from the host, and wait for, on
        every call.  Shared: never write to it (NumPy copies are read-only)."""
        key = (self.device_id(),) + tuple(key)
        cache = self.__dict__.setdefault("_constants", OrderedDict())
        value = cache.get(key)
        if value is None:
            value = self.asarray(make())
            if isinstance(value, np.ndarray):
                value.flags.writeable = False
            cache[key] = value
            if len(cache) > self._CONSTANT_CACHE:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return value

    def tap_valid(self, win, include_center=True, dtype=np.float32):
        """:func:`segnp.window.tap_valid` (1, K, OH, OW) of the
        :class:`segnp.window.Window` ``win`` on this backend's device, a :meth:`constant`
        of the window."""
        key = ("tap_valid",) + win.ints() + (bool(include_center), np.dtype(dtype).str)
        return self.constant(key, lambda: tap_valid(win.H, win.W, win.ksize, win.stride,
                                                    win.padding, win.dilation,
                                                    include_center, dtype))

    ELEMENT_FLOPS = ELEMENT_FLOPS

    def for_runs(self, fn, n, flops=None):
        """Call ``fn(lo, hi)`` on runs covering range(n) (a batch's images) and return
        the runs' results in order.  Here one run, range(n) itself; the NumPy backend
        spreads runs over the CPU cores (``backends/numpy/threads.py``).  ``fn`` must
        write only to its own images' parts of its outputs; ``flops`` is the work of
        all n, in multiply-adds of BLAS (small work is not worth spreading), or
        ``ELEMENT_FLOPS`` per element of each pass over memory."""
        return [fn(0, n)] if n else []

    def __repr__(self):
        return f"<segnp backend {self.name!r}>"
