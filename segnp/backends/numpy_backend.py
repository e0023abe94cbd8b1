"""The NumPy backend: vectorised reference kernels, run on the CPU.

Each kernel lives in ``segnp/backends/numpy/<topic>.py``; this class only gathers them.
"""
import numpy as np

from .api import KERNEL_NAMES
from .base import Backend
from .numpy import conv as _conv
from .numpy import pairs as _pairs
from .numpy import segaware as _segaware

_MODULES = (_conv, _segaware, _pairs)


class NumpyBackend(Backend):
    name = "numpy"
    xp = np


def _gather():
    # A name no module provides is left missing; tests/test_backend_api.py fails on it.
    for name in KERNEL_NAMES:
        for module in _MODULES:
            if hasattr(module, name):
                setattr(NumpyBackend, name, staticmethod(getattr(module, name)))
                break


_gather()
