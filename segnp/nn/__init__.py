"""Modules: layers that hold Parameters and call ``segnp.functions``."""
from .module import *  # noqa: F401,F403  Module Sequential
from .init import *  # noqa: F401,F403  he_normal xavier_uniform ...
from .layers import *  # noqa: F401,F403  Conv2d ConvTranspose2d ReLU MaxPool2d Dropout Upsample
from .segaware import *  # noqa: F401,F403  SegAwareConv2d BilateralFilter
from .segaware_resample import *  # noqa: F401,F403  SegAwareConvTranspose2d SegAwareAvgPool2d
from .crf import *  # noqa: F401,F403  SegAwareCRF
from .losses import *  # noqa: F401,F403  EmbeddingLoss
from .calibrate import *  # noqa: F401,F403  calibrate_lams tap_distances
