"""Launchers: the Python side of each CUDA kernel, shared by the GPU and the emulator.

A launcher is a plain function ``def im2col(rt, x, ksize, stride=1, padding=0,
dilation=1)`` in ``launchers/<topic>.py`` (conv, segaware, pairs, ...; modules whose
name starts with ``_`` are helpers and are not searched) whose parameters after
``rt`` are exactly those of the NumPy kernel of the same name (``backends/api.py``).
:func:`bind_launchers` drops ``rt`` when a backend gathers them, so the backends'
signatures match.  The same code runs on cupy arrays (``rt`` is a CuPy runtime) and on
numpy arrays (``rt`` is the emulator's), so it only ever uses ``rt.xp``.

A launcher owns the kernel's contract:

1. check dtypes and shapes (``segnp._validate``, ``segnp.window``), raising
   TypeError/ValueError that name the function;
2. make every input C-contiguous (``rt.xp.ascontiguousarray``): kernels ignore strides;
3. allocate the outputs with ``rt.xp``;
4. compute the grid (:func:`grid_1d` for grid-stride kernels, which use ``rt.threads``
   threads per block and at most ``rt.max_blocks`` blocks);
5. pass sizes as ``numpy.int32`` (:func:`int32`) and floats at the kernel's width
   (:func:`real`), since a Python int or float has no C width.

``rt.kernel(source, name, dtype, defines=None)`` returns the kernel ``name<float>`` or
``name<double>`` of ``backends/cuda/<source>``; calling it as ``k(grid, block, args,
shared_mem=0)`` checks ``args`` against the kernel's C parameter list (see
``backends/runtime.py``) and raises TypeError on a mismatch.
"""
import functools
import importlib
import inspect
import pkgutil

import numpy as np

from ..api import KERNEL_NAMES

_INT32_MAX = np.iinfo(np.int32).max


def int32(*values):
    """``values`` as numpy.int32 scalars; ValueError if one does not fit."""
    out = []
    for v in values:
        if not -_INT32_MAX - 1 <= int(v) <= _INT32_MAX:
            raise ValueError(f"CUDA kernels take sizes as 32-bit ints; got {v}")
        out.append(np.int32(v))
    return tuple(out)


def real(dtype, *values):
    """``values`` as scalars of the floating ``dtype`` (the width of the kernel's T)."""
    t = np.dtype(dtype).type
    return tuple(t(v) for v in values)


def grid_1d(rt, total):
    """Blocks for a grid-stride loop over ``total`` items: enough to cover them, at most
    ``rt.max_blocks`` (the loop covers the rest)."""
    return (max(1, min(rt.max_blocks, -(-int(total) // rt.threads))),)


def check_real(fn, name, a):
    """TypeError unless ``a`` is float32 or float64, the two types kernels exist for."""
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{fn}: {name} must be float32 or float64; got dtype {a.dtype}")


def _bind(fn, rt):
    @functools.wraps(fn)
    def kernel(*args, **kwargs):
        return fn(rt, *args, **kwargs)
    sig = inspect.signature(fn)
    kernel.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
    return kernel


def launcher_modules():
    """Every public module of this package (``conv``, ``segaware``, ...), found on disk
    so that a topic added later needs no registration here."""
    return [importlib.import_module(f"{__name__}.{m.name}")
            for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
            if not m.name.startswith("_")]


def bind_launchers(backend, rt):
    """Set ``backend.<name>`` to each launcher of ``KERNEL_NAMES`` with ``rt`` bound.

    A launcher is a function of that name defined (not imported) in a launcher module.
    A name no module provides stays missing; tests/test_backend_api.py reports it.
    """
    found = {}
    for mod in launcher_modules():
        for name in KERNEL_NAMES:
            fn = getattr(mod, name, None)
            if inspect.isfunction(fn) and fn.__module__ == mod.__name__:
                if name in found:
                    raise RuntimeError(f"launchers: {name} is defined in both "
                                       f"{found[name].__module__} and {mod.__name__}")
                found[name] = fn
    for name, fn in found.items():
        setattr(backend, name, _bind(fn, rt))
