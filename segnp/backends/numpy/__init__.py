"""The NumPy backend: vectorised reference kernels on the CPU, one file per op.

- ``conv.py``: im2col, col2im and the convolution built on them (Sec. 4.2);
- ``threads.py``: the kernels' pieces spread over the CPU cores;
- ``segaware.py``: im2dist (Sec. 4.2) and the bilateral filter (Eq. 4);
- ``masked_conv.py``: the masked convolution of Eq. 7;
- ``masked_conv_transpose.py``: its adjoint, the segmentation-aware transposed convolution;
- ``pairs.py``: the embedding loss (Eqs. 1-2).

Each CUDA kernel (``backends/cuda/<stem>.cu``) has its twin in the file of the same stem.
"""
import numpy as np

from ..base import Backend
from . import conv, pairs, segaware, threads
# An alias: in the class body the name masked_conv is the kernel from its own line on.
from . import masked_conv as mconv
from . import masked_conv_transpose as mconvt

__all__ = ["NumpyBackend"]


class NumpyBackend(Backend):
    name = "numpy"
    xp = np
    for_runs = staticmethod(threads.for_runs)
    im2col = staticmethod(conv.im2col)
    col2im = staticmethod(conv.col2im)
    conv2d = staticmethod(conv.conv2d)
    conv2d_backward = staticmethod(conv.conv2d_backward)
    im2dist = staticmethod(segaware.im2dist)
    im2dist_backward = staticmethod(segaware.im2dist_backward)
    bilateral = staticmethod(segaware.bilateral)
    bilateral_backward = staticmethod(segaware.bilateral_backward)
    bilateral_repeat = staticmethod(segaware.bilateral_repeat)
    bilateral_repeat_backward = staticmethod(segaware.bilateral_repeat_backward)
    masked_conv = staticmethod(mconv.masked_conv)
    masked_conv_backward = staticmethod(mconv.masked_conv_backward)
    masked_conv_transpose = staticmethod(mconvt.masked_conv_transpose)
    masked_conv_transpose_backward = staticmethod(mconvt.masked_conv_transpose_backward)
    same_label_pairs = staticmethod(pairs.same_label_pairs)
    embedding_pair_loss = staticmethod(pairs.embedding_pair_loss)
    embedding_pair_loss_backward = staticmethod(pairs.embedding_pair_loss_backward)
