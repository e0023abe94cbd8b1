"""check_grad itself: it passes correct gradients and catches wrong ones."""
import numpy as np
import pytest

import segnp.functions as F
from segnp import Function
from segnp.gradcheck import GradcheckError, check_grad


class _WrongSquare(Function):
    """x*x whose gradient is off by 1% at flat index 3 (or everywhere)."""

    def __init__(self, everywhere=False):
        self.everywhere = everywhere

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        g = 2 * self.x * gy
        if self.everywhere:
            g *= 1.01
        else:
            g.flat[3] *= 1.01
        return (g,)


def test_passes_a_correct_gradient_and_keeps_float64():
    rng = np.random.default_rng(0)
    grads = check_grad(lambda a, b: F.exp(a) * b + a / (b * b + 1.0),
                       [rng.standard_normal((3, 4)), rng.standard_normal((4,))])
    assert grads[0].dtype == np.float64 and grads[0].shape == (3, 4)


def test_reports_the_worst_index_elementwise():
    x = np.random.default_rng(1).standard_normal((2, 3))
    with pytest.raises(GradcheckError, match=r"index \(1, 0\)"):
        check_grad(lambda t: _WrongSquare()(t), [x], max_elementwise=64)


def test_directional_check_catches_errors_in_large_inputs():
    x = np.random.default_rng(2).standard_normal((40, 40)) + 3.0
    with pytest.raises(GradcheckError, match="directional"):
        check_grad(lambda t: _WrongSquare(everywhere=True)(t), [x], max_elementwise=0)


def test_float32_inputs_are_promoted():
    x = np.ones((2, 2), dtype=np.float32)
    (g,) = check_grad(lambda t: t * t, [x])
    assert g.dtype == np.float64 and g.shape == (2, 2)
