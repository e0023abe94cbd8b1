"""segnp: segmentation-aware convolutional networks (Harley, Derpanis, Kokkinos, ICCV 2017).

Layers, from the paper down:  ``segnp.models`` -> ``segnp.nn`` (modules) ->
``segnp.functions`` (differentiable ops, imported as ``F``) -> ``segnp.backends``
(array-level kernels for NumPy, CuPy and the CPU emulator of the CUDA kernels).
"""
from .backends import get_backend, set_backend, using_backend
from .autograd import (Tensor, Parameter, Function, no_grad, enable_grad,
                       is_grad_enabled, as_tensor, from_dlpack)
from . import functions
from .gradcheck import check_grad
from .random import manual_seed, get_rng
from . import nn, optim
from .serialization import save, load

__version__ = "0.1.0"
