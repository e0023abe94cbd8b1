"""Differentiable functions, conventionally imported as ``F``.

Each op is one ``Function`` subclass (arrays in, arrays out) and one lowercase wrapper.
"""
from .arith import *  # noqa: F401,F403  add sub mul div neg pow exp log abs sqrt clip where matmul
from .reduce import *  # noqa: F401,F403  sum mean max
from .shape import *  # noqa: F401,F403  reshape transpose getitem concat stack pad
from .activation import *  # noqa: F401,F403  relu leaky_relu sigmoid tanh softmax log_softmax
from .conv import *  # noqa: F401,F403  conv2d
from .conv_transpose import *  # noqa: F401,F403  conv_transpose2d
from .pooling import *  # noqa: F401,F403  max_pool2d avg_pool2d
from .resize import *  # noqa: F401,F403  resize_bilinear
from .dropout import *  # noqa: F401,F403  dropout
from .loss import *  # noqa: F401,F403  softmax_cross_entropy l1_loss mse_loss epe_loss
from .segaware import *  # noqa: F401,F403  im2dist segaware_mask segaware_bilateral segaware_conv2d
from .embedding_loss import *  # noqa: F401,F403  embedding_loss
from .segaware_transpose import *  # noqa: F401,F403  segaware_conv_transpose2d
from .segaware_pool import *  # noqa: F401,F403  segaware_avg_pool2d
from .crf import *  # noqa: F401,F403  segaware_crf
