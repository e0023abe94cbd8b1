"""The emulator runtime: ``rt.kernel(...)`` runs a .cu kernel on NumPy arrays.

See ``segnp/backends/runtime.py`` for the interface and ``prelude.h`` for the model.
"""
import ctypes
import os
import threading

import numpy as np

from ..runtime import Runtime, check_args, dim3
from . import build

# A library keeps its launch state in globals, and ctypes releases the GIL during the
# call, so launches from several Python threads take turns.
_LAUNCH_LOCK = threading.Lock()


class EmulatorKernel:
    """One instantiation, launched like a ``cupy.RawKernel``: ``k(grid, block, args)``."""

    def __init__(self, lib, sig, dtype):
        self.sig = sig
        self.dtype = dtype
        self.label = f"kernel {sig.name_expression(dtype)}"
        self._lib = lib
        self._fn = lib.entry(sig.name, None if sig.tparam is None else dtype.str)

    def __call__(self, grid, block, args, shared_mem=0):
        g = dim3(grid, f"{self.label}: grid")
        b = dim3(block, f"{self.label}: block")
        check_args(self.sig, self.dtype, args, np.ndarray)
        holders = []
        argv = (ctypes.c_void_p * max(1, len(args)))()
        for i, (p, a) in enumerate(zip(self.sig.params, args)):
            if p.pointer:
                h = ctypes.c_void_p(a.ctypes.data)
            else:
                h = np.ctypeslib.as_ctypes_type(a.dtype)(a.item())
            holders.append(h)
            argv[i] = ctypes.addressof(h)
        with _LAUNCH_LOCK:
            rc = self._fn((ctypes.c_uint * 3)(*g), (ctypes.c_uint * 3)(*b),
                          int(shared_mem), argv)
            if rc != 0:
                raise RuntimeError(f"{self.label}: {self._lib.error()}")


class EmulatorRuntime(Runtime):
    """Runs the CUDA sources on the CPU (compiled with g++, see ``build.py``)."""

    xp = np
    name = "cuda-emulator"

    def _build(self, source, text, sigs, sig, dtype):
        return EmulatorKernel(build.load(text, sigs, os.path.basename(source)), sig, dtype)
