"""segnp's kernels inside PyTorch models (docs/torch.md).

Functions (each a ``torch.autograd.Function`` over segnp's kernels, tensors shared by
DLPack): :func:`im2dist`, :func:`segaware_mask`, :func:`segaware_bilateral`,
:func:`segaware_conv2d`, :func:`segaware_crf`.  Modules, twins of ``segnp.nn``'s:
:class:`SegAwareConv2d`, :class:`BilateralFilter`, :class:`SegAwareCRF`;
:func:`from_segnp` turns a trained segnp module into its PyTorch twin.

Needs PyTorch (``pip install segnp[torch]``); segnp itself never does.
"""
try:
    import torch  # noqa: F401
except ImportError as err:
    raise ImportError("segnp.torch needs PyTorch, which segnp does not install: "
                      "pip install segnp[torch]") from err

from .functional import *  # noqa: F401,F403,E402  im2dist segaware_conv2d ...
from .modules import *  # noqa: F401,F403,E402  SegAwareConv2d ... from_segnp
