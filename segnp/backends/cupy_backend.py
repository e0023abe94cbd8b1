"""The CuPy backend: the kernels of ``backends/cuda/*.cu`` on a CUDA device.

Each name of ``KERNEL_NAMES`` is a launcher from ``backends/launchers`` bound to a
:class:`~segnp.backends.runtime_cupy.CupyRuntime`, with the NumPy backend's signature.
"""
import cupy

from .base import Backend
from .launchers import bind_launchers
from .runtime_cupy import CupyRuntime


class CupyBackend(Backend):
    name = "cupy"
    xp = cupy

    def __init__(self, threads=256, max_blocks=65535):
        self.rt = CupyRuntime(threads=threads, max_blocks=max_blocks)
        bind_launchers(self, self.rt)

    def device_id(self):
        return cupy.cuda.Device().id

    def asarray(self, a, dtype=None):
        return cupy.asarray(a, dtype=dtype)

    def to_numpy(self, a):
        return cupy.asnumpy(a)
