"""The CUDA tier, shared by the GPU (:mod:`.cupy`) and the CPU emulator
(``backends/emulator``): one stem per op, a ``.cu`` source and its launcher.

- ``conv.cu`` / ``conv.py``: im2col and col2im, and the convolution built on them;
- ``segaware.cu`` / ``segaware.py``: im2dist (Sec. 4.2) and the bilateral filter (Eq. 4);
- ``masked_conv.cu`` / ``masked_conv.py``: the masked GEMM of Eq. 7;
- ``masked_conv_transpose.cu`` / ``masked_conv_transpose.py``: its adjoint, the
  segmentation-aware transposed convolution (joint upsampling);
- ``pairs.cu`` / ``pairs.py``: the embedding loss (Eqs. 1-2);
- ``window.cuh``: the window arithmetic every source includes (``segnp/window.py``'s twin);
- ``_common.py``: what the launchers share; ``source.py``: reading and parsing the
  sources; ``runtime.py``: the kernel cache and the launch checks.

:class:`CudaBackend` binds each launcher as a class attribute, so that
``backend.masked_conv`` leads an editor to the launcher in ``masked_conv.py``.
"""
import functools
import inspect

from ..base import Backend
from . import conv, pairs, segaware
# An alias: in the class body the name masked_conv is the kernel from its own line on.
from . import masked_conv as mconv
from . import masked_conv_transpose as mconvt

__all__ = ["CudaBackend"]


class _Launcher:
    """A class attribute that makes the launcher ``fn(rt, ...)`` a backend method:
    ``backend.<name>(...)`` calls ``fn(backend.rt, ...)``, and has the signature of the
    NumPy kernel of that name (``fn``'s without ``rt``)."""

    def __init__(self, fn):
        self.fn = fn
        sig = inspect.signature(fn)
        self.signature = sig.replace(parameters=list(sig.parameters.values())[1:])

    def __get__(self, backend, owner=None):
        if backend is None:
            return self
        fn, rt = self.fn, backend.rt

        @functools.wraps(fn)
        def kernel(*args, **kwargs):
            return fn(rt, *args, **kwargs)
        kernel.__signature__ = self.signature
        return kernel


class CudaBackend(Backend):
    """Every name of ``api.KERNEL_NAMES``, launched through ``self.rt`` (a runtime the
    subclass creates: CuPy's or the emulator's)."""

    rt = None
    im2col = _Launcher(conv.im2col)
    col2im = _Launcher(conv.col2im)
    conv2d = _Launcher(conv.conv2d)
    conv2d_backward = _Launcher(conv.conv2d_backward)
    im2dist = _Launcher(segaware.im2dist)
    im2dist_backward = _Launcher(segaware.im2dist_backward)
    bilateral = _Launcher(segaware.bilateral)
    bilateral_backward = _Launcher(segaware.bilateral_backward)
    bilateral_repeat = _Launcher(segaware.bilateral_repeat)
    bilateral_repeat_backward = _Launcher(segaware.bilateral_repeat_backward)
    masked_conv = _Launcher(mconv.masked_conv)
    masked_conv_backward = _Launcher(mconv.masked_conv_backward)
    masked_conv_transpose = _Launcher(mconvt.masked_conv_transpose)
    masked_conv_transpose_backward = _Launcher(mconvt.masked_conv_transpose_backward)
    same_label_pairs = _Launcher(pairs.same_label_pairs)
    embedding_pair_loss = _Launcher(pairs.embedding_pair_loss)
    embedding_pair_loss_backward = _Launcher(pairs.embedding_pair_loss_backward)
