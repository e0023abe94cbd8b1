"""Backend selection.

A backend is an object that carries an array module (``xp``: numpy or cupy) and the
array-level kernels of the library (im2col, col2im, im2dist, ...), with the same names
and signatures on every backend.  The device is chosen once: the first time an op needs
a backend, from ``SEGNP_BACKEND`` (``numpy``, ``cupy`` or ``cuda-emulator``) or, when that
is unset, CuPy if it imports and a GPU is present, NumPy otherwise.  Importing segnp
never touches CUDA; only the first op does.

Differentiable functions never test which backend they run on: they call
``self.xp.<array function>`` and ``self.backend.<kernel>``.
"""
import contextlib
import importlib
import os

from .api import KERNEL_NAMES

__all__ = ["get_backend", "set_backend", "using_backend", "available_backends",
           "KERNEL_NAMES"]

# name -> "module:class"; modules import lazily so that numpy-only users never import
# cupy and the emulator never runs a compiler unless asked for.
_REGISTRY = {
    "numpy": "segnp.backends.numpy:NumpyBackend",
    "cupy": "segnp.backends.cuda.cupy:CupyBackend",
    "cuda-emulator": "segnp.backends.emulator:EmulatorBackend",
}
_instances = {}
_active = None


def available_backends():
    """Names accepted by :func:`get_backend`."""
    return tuple(_REGISTRY)


def _auto_name():
    env = os.environ.get("SEGNP_BACKEND", "").strip().lower()
    if env:
        if env not in _REGISTRY:
            raise ValueError(
                f"SEGNP_BACKEND: expected one of {sorted(_REGISTRY)}; got {env!r}")
        return env
    try:
        import cupy
        if cupy.is_available():
            return "cupy"
    except Exception:  # any import or driver failure means: no usable GPU
        pass
    return "numpy"


def get_backend(name=None):
    """Return the backend called ``name``, or the active one when ``name`` is None.

    Backends are created once and cached, so kernels compiled by one call are reused.
    """
    if name is None:
        global _active
        if _active is None:
            _active = get_backend(_auto_name())
        return _active
    if not isinstance(name, str) or name.lower() not in _REGISTRY:
        raise ValueError(
            f"get_backend: expected one of {sorted(_REGISTRY)}; got {name!r}")
    name = name.lower()
    if name not in _instances:
        module_name, cls_name = _REGISTRY[name].split(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        _instances[name] = cls()
    return _instances[name]


def set_backend(name):
    """Make ``name`` the active backend for every op from now on; returns it."""
    global _active
    _active = get_backend(name)
    return _active


@contextlib.contextmanager
def using_backend(name):
    """Run a block with another active backend (tests use this for the emulator)."""
    global _active
    previous = _active
    _active = get_backend(name)
    try:
        yield _active
    finally:
        _active = previous
