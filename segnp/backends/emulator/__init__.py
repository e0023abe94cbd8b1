"""The CUDA emulator backend: the kernels of ``backends/cuda/*.cu`` run on the CPU.

A CPU emulator of segnp's CUDA kernels: the same .cu sources and launchers, run on
NumPy arrays through g++ (``build.py``, ``prelude.h``, ``runtime.py``), so that CI and
readers without a GPU can run and test them.  Selected with
``SEGNP_BACKEND=cuda-emulator`` or ``get_backend('cuda-emulator')``: 20-50x slower than
the NumPy backend, meant for tests and for machines without a GPU.  ``order``
("ascending", "descending", or None for ``SEGNP_EMULATOR_ORDER``) is the order threads
run in between barriers (see ``runtime.py``).
"""
import numpy as np

from ..cuda import CudaBackend
from .runtime import EmulatorKernel, EmulatorRuntime

__all__ = ["EmulatorBackend", "EmulatorRuntime", "EmulatorKernel"]


class EmulatorBackend(CudaBackend):
    name = "cuda-emulator"
    xp = np

    def __init__(self, threads=256, max_blocks=65535, order=None):
        self.rt = EmulatorRuntime(threads=threads, max_blocks=max_blocks, order=order)
