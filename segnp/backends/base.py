"""The common part of every backend object."""
from collections import OrderedDict

import numpy as np

from ..window import tap_valid


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

    # Window masks kept per backend (device): a few per network, more with varying sizes.
    _TAP_VALID_CACHE = 64

    def device_id(self):
        """What tells this backend's devices apart (None: there is one)."""
        return None

    def tap_valid(self, H, W, ksize, stride, padding, dilation, include_center=True,
                  dtype=np.float32):
        """:func:`segnp.window.tap_valid` (1, K, OH, OW) on this backend's
        device, cached per arguments and device: a constant of the window, which a GPU
        would otherwise receive from the host (and wait for) on every forward.  Shared:
        never write to it (NumPy copies are read-only)."""
        key = (self.device_id(), H, W, ksize, stride, padding, dilation,
               bool(include_center), np.dtype(dtype).str)
        cache = self.__dict__.setdefault("_tap_valid", OrderedDict())
        valid = cache.get(key)
        if valid is None:
            valid = self.asarray(tap_valid(H, W, ksize, stride, padding, dilation,
                                           include_center, dtype))
            if isinstance(valid, np.ndarray):
                valid.flags.writeable = False
            cache[key] = valid
            if len(cache) > self._TAP_VALID_CACHE:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return valid

    def __repr__(self):
        return f"<segnp backend {self.name!r}>"
