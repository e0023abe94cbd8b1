"""The emulator runtime: ``rt.kernel(...)`` runs a .cu kernel on NumPy arrays.

See ``segnp/backends/cuda/runtime.py`` for the interface and ``prelude.h`` for the model.

Two settings the GPU runtime does not have, both for tests:

- ``order``: ``"ascending"`` runs the threads of a block (and the blocks of a grid) in
  index order between barriers, ``"descending"`` in reverse.  A kernel that lacks a
  ``__syncthreads`` gives a wrong result in at least one of the two orders.  ``None``
  (the default) reads ``SEGNP_EMULATOR_ORDER`` at every launch (ascending if unset).
- ``block_range``: ``(first, end)`` runs only the blocks whose linear index
  ``(z * gridDim.y + y) * gridDim.x + x`` lies in ``[first, end)``; the others write
  nothing.  For tests of tensors too large to compute whole (64-bit offsets).
"""
import ctypes
import os
import threading

import numpy as np

from ..cuda.runtime import Runtime, check_args, dim3
from . import build

ORDERS = ("ascending", "descending")

# A library keeps its launch state in globals, and ctypes releases the GIL during the
# call, so launches from several Python threads take turns.
_LAUNCH_LOCK = threading.Lock()


class EmulatorKernel:
    """One instantiation, launched like a ``cupy.RawKernel``: ``k(grid, block, args)``."""

    def __init__(self, lib, sig, dtype, rt=None):
        self.rt = rt
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
        order = launch_order(getattr(self.rt, "order", None))
        first, end = getattr(self.rt, "block_range", None) or (0, 2 ** 64 - 1)
        with _LAUNCH_LOCK:
            self._lib.configure(order == "descending", first, end)
            rc = self._fn((ctypes.c_uint * 3)(*g), (ctypes.c_uint * 3)(*b),
                          int(shared_mem), argv)
            if rc != 0:
                raise RuntimeError(f"{self.label}: {self._lib.error()}")


def launch_order(order=None):
    """``order`` if given, else ``SEGNP_EMULATOR_ORDER`` (default "ascending"), checked."""
    if order is None:
        order = os.environ.get("SEGNP_EMULATOR_ORDER", "").strip().lower() or "ascending"
    if order not in ORDERS:
        raise ValueError(f"emulator: order (or SEGNP_EMULATOR_ORDER) must be one of "
                         f"{ORDERS}; got {order!r}")
    return order


class EmulatorRuntime(Runtime):
    """Runs the CUDA sources on the CPU (compiled with g++, see ``build.py``)."""

    xp = np
    name = "cuda-emulator"

    def __init__(self, threads=256, max_blocks=65535, source_dir=None, order=None):
        super().__init__(threads, max_blocks, source_dir)
        if order is not None:
            launch_order(order)
        self.order = order
        self.block_range = None

    def _build(self, source, text, sigs, sig, dtype):
        return EmulatorKernel(build.load(text, sigs, os.path.basename(source)), sig, dtype,
                              self)
