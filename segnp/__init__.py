"""segnp: segmentation-aware convolutional networks (Harley, Derpanis, Kokkinos, ICCV 2017).

Layers, from the paper down:  ``segnp.models`` -> ``segnp.nn`` (modules) ->
``segnp.functions`` (differentiable ops, imported as ``F``) -> ``segnp.backends``
(array-level kernels for NumPy, CuPy and the CPU emulator of the CUDA kernels).
"""
from .backends import get_backend, set_backend, using_backend
from .autograd import (Tensor, Parameter, Function, no_grad, enable_grad,
                       is_grad_enabled, as_tensor)
from . import functions
from .gradcheck import check_grad

__version__ = "0.1.0"
