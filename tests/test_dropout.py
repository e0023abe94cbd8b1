"""Inverted dropout: scaling and drop statistics, identity outside training, seeded
reproducibility, gradients through the drawn mask, and errors."""
import numpy as np
import pytest

import segnp
import segnp.functions as F
from segnp import Tensor, check_grad


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.8])
def test_drop_rate_and_scaling(p):
    segnp.manual_seed(0)
    n = 200_000
    x = np.ones(n)
    y = F.dropout(Tensor(x), p).numpy()
    kept = y != 0
    # Every kept value is exactly x / (1 - p); dropped ones are exactly 0.
    np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-15)
    # The drop count is Binomial(n, p): allow 5 standard deviations.
    sigma = np.sqrt(n * p * (1 - p))
    assert abs((~kept).sum() - n * p) < 5 * sigma
    # Inverted dropout keeps the expectation: E[y] = x.
    assert abs(y.mean() - 1) < 5 * np.sqrt(p / (1 - p) / n)


def test_masks_are_independent_across_elements_and_calls():
    segnp.manual_seed(1)
    a = F.dropout(Tensor(np.ones((400, 500))), 0.5).numpy() != 0
    b = F.dropout(Tensor(np.ones((400, 500))), 0.5).numpy() != 0
    assert not np.array_equal(a, b)
    # Two independent Bernoulli(1/2) masks agree on about half of the elements.
    agree = (a == b).mean()
    assert abs(agree - 0.5) < 5 * 0.5 / np.sqrt(a.size)


def test_not_training_or_p_zero_is_the_identity():
    x = Tensor(np.random.default_rng(2).standard_normal((3, 4)), requires_grad=True)
    for y in (F.dropout(x, 0.5, training=False), F.dropout(x, 0.0)):
        np.testing.assert_array_equal(y.numpy(), x.numpy())
    x.grad = None
    F.dropout(x, 0.7, training=False).sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((3, 4)))


def test_seeded_runs_draw_the_same_mask():
    x = np.random.default_rng(3).standard_normal((4, 5, 6))
    segnp.manual_seed(42)
    a = F.dropout(Tensor(x), 0.4).numpy()
    segnp.manual_seed(42)
    b = F.dropout(Tensor(x), 0.4).numpy()
    segnp.manual_seed(43)
    c = F.dropout(Tensor(x), 0.4).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_gradient_is_the_mask_scaled():
    segnp.manual_seed(4)
    x = Tensor(np.random.default_rng(4).standard_normal((5, 6)), requires_grad=True)
    y = F.dropout(x, 0.3)
    gy = np.random.default_rng(5).standard_normal((5, 6))
    y.backward(gy)
    mask = (y.numpy() / x.numpy()).round(12)  # 0 or 1 / 0.7
    assert set(np.unique(mask)) <= {0.0, round(1 / 0.7, 12)}
    np.testing.assert_allclose(x.grad, gy * mask, rtol=1e-12)


@pytest.mark.parametrize("p", [0.2, 0.6])
def test_gradient_check_with_a_fixed_mask(p):
    def fn(t):
        segnp.manual_seed(7)  # the same mask at every evaluation of check_grad
        return F.dropout(t, p)

    x = np.random.default_rng(6).standard_normal((3, 4, 5))
    check_grad(fn, [x], name=f"dropout p={p}")
    check_grad(fn, [x[:2, :2, :3]], max_elementwise=64, name=f"dropout p={p}")


def test_p_one_drops_everything_with_zero_gradient():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    y = F.dropout(x, 1.0)
    np.testing.assert_array_equal(y.numpy(), np.zeros((2, 3)))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.zeros((2, 3)))


def test_float32_is_kept():
    segnp.manual_seed(8)
    x = Tensor(np.ones((3, 4), np.float32), requires_grad=True)
    y = F.dropout(x, 0.5)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_errors_name_the_function_expected_and_given():
    x = Tensor(np.ones(3))
    for p in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"dropout: p must be a probability in \[0, 1\]; "
                                             r"got " + repr(p).replace(".", r"\.")):
            F.dropout(x, p)
    with pytest.raises(TypeError, match=r"dropout: x must be a floating-point array "
                                        r"\(float32 or float64\); got dtype int64"):
        F.dropout(Tensor(np.ones(3, np.int64)), 0.5)
