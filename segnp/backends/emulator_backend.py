"""The CUDA emulator backend: the kernels of ``backends/cuda/*.cu`` run on the CPU.

Selected with ``SEGNP_BACKEND=cuda-emulator`` or ``get_backend('cuda-emulator')``.  The
same launchers as the CuPy backend, bound to an
:class:`~segnp.backends.emulator.EmulatorRuntime`, on NumPy arrays: 20-50x slower than
the NumPy backend, meant for tests and for machines without a GPU.  ``order``
("ascending", "descending", or None for ``SEGNP_EMULATOR_ORDER``) is the order threads
run in between barriers (see ``emulator/runtime.py``).
"""
import numpy as np

from .base import Backend
from .emulator import EmulatorRuntime
from .launchers import bind_launchers


class EmulatorBackend(Backend):
    name = "cuda-emulator"
    xp = np

    def __init__(self, threads=256, max_blocks=65535, order=None):
        self.rt = EmulatorRuntime(threads=threads, max_blocks=max_blocks, order=order)
        bind_launchers(self, self.rt)
