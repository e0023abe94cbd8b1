"""Optimizers (PyTorch's update rules) and learning-rate schedulers."""
from .optimizer import *  # noqa: F401,F403  Optimizer
from .sgd import *  # noqa: F401,F403  SGD
from .adam import *  # noqa: F401,F403  Adam
from .scheduler import *  # noqa: F401,F403  StepLR PolyLR
