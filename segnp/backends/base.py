"""The common part of every backend object."""
import numpy as np

from .api import KERNEL_NAMES


class Backend:
    """Holds the array module ``xp`` and the array-level kernels.

    Subclasses set ``name`` and ``xp`` and provide every name in ``KERNEL_NAMES``.
    """

    name = "base"
    xp = np

    def asarray(self, a, dtype=None):
        """Put ``a`` on this backend's device (no copy when already there)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a):
        """Bring an array of this backend back to host NumPy."""
        return np.asarray(a)

    def kernel_names(self):
        return KERNEL_NAMES

    def __repr__(self):
        return f"<segnp backend {self.name!r}>"
