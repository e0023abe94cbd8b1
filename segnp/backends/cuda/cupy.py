"""The CuPy backend: the kernels of ``backends/cuda/*.cu`` on a CUDA device.

:class:`CupyBackend` launches each kernel name through a :class:`CupyRuntime`, whose
``rt.kernel(...)`` compiles a .cu source with NVRTC through ``cupy.RawModule`` and
launches it on cupy arrays.

Compilation is lazy and cached per device, source text and dtype: the first launch of
any kernel of a file on a device compiles every kernel of that file for that dtype in
one RawModule (CuPy also keeps the binary in its on-disk cache).  Arguments are checked
against the kernel's C parameters before each launch (see ``runtime.py``).
"""
import hashlib

import cupy

from . import CudaBackend
from .runtime import Runtime, check_args, dim3
from .source import COMPILE_OPTIONS

# (device id, sha256 of the source text, dtype or "plain") -> cupy.RawModule
_MODULES = {}


class CupyKernel:
    def __init__(self, text, sigs, sig, dtype):
        self.sig = sig
        self.dtype = dtype
        self.label = f"kernel {sig.name_expression(dtype)}"
        self._text = text
        self._key = hashlib.sha256(text.encode()).hexdigest()
        if sig.tparam is None:
            # A plain kernel (im2parity takes int8 "dtype") has no float instantiation:
            # its module holds the file's plain kernels only, whatever dtype asked for it.
            self._mtype = "plain"
            self._exprs = sorted(s.name for s in sigs.values() if s.tparam is None)
        else:
            self._mtype = dtype.str
            self._exprs = sorted({s.name_expression(dtype) for s in sigs.values()})
        self._functions = {}

    def function(self):
        """The ``cupy.RawKernel`` of this instantiation on the current device."""
        dev = cupy.cuda.Device().id
        fn = self._functions.get(dev)
        if fn is None:
            mkey = (dev, self._key, self._mtype)
            mod = _MODULES.get(mkey)
            if mod is None:
                mod = _MODULES[mkey] = cupy.RawModule(
                    code=self._text, options=COMPILE_OPTIONS, name_expressions=self._exprs)
            fn = self._functions[dev] = mod.get_function(self.sig.name_expression(self.dtype))
        return fn

    def __call__(self, grid, block, args, shared_mem=0):
        g = dim3(grid, f"{self.label}: grid")
        b = dim3(block, f"{self.label}: block")
        check_args(self.sig, self.dtype, args, cupy.ndarray)
        self.function()(g, b, args, shared_mem=int(shared_mem))


class CupyRuntime(Runtime):
    """Runs the CUDA sources on the current CUDA device."""

    xp = cupy
    name = "cupy"

    def _build(self, source, text, sigs, sig, dtype):
        return CupyKernel(text, sigs, sig, dtype)


class CupyBackend(CudaBackend):
    name = "cupy"
    xp = cupy

    def __init__(self, threads=256, max_blocks=65535):
        self.rt = CupyRuntime(threads=threads, max_blocks=max_blocks)

    def device_id(self):
        return cupy.cuda.Device().id

    def asarray(self, a, dtype=None):
        return cupy.asarray(a, dtype=dtype)

    def to_numpy(self, a):
        return cupy.asnumpy(a)
