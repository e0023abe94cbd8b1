"""The CUDA emulator backend: the kernels of ``backends/cuda/*.cu`` run on the CPU.

Selected with ``SEGNP_BACKEND=cuda-emulator`` or ``get_backend('cuda-emulator')``.  The
same launchers as the CuPy backend, bound to an
:class:`~segnp.backends.emulator.EmulatorRuntime`, on NumPy arrays: 20-50x slower than
the NumPy backend, meant for tests and for machines without a GPU.
"""
import numpy as np

from .base import Backend
from .emulator import EmulatorRuntime
from .launchers import bind_launchers


class EmulatorBackend(Backend):
    name = "cuda-emulator"
    xp = np

    def __init__(self, threads=256, max_blocks=65535):
        self.rt = EmulatorRuntime(threads=threads, max_blocks=max_blocks)
        bind_launchers(self, self.rt)
