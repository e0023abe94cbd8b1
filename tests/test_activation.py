"""Activations against their formulas (softmax and log-softmax by a naive loop over the
other axes), float64 gradient checks, numerical stability, dtypes and errors."""
import itertools
import math
import warnings

import numpy as np
import pytest

import segnp.functions as F
from segnp import Tensor, check_grad


def _x(shape=(2, 3, 4, 5), seed=0):
    # |x| >= 0.05: relu and leaky_relu are differentiable away from 0.
    rng = np.random.default_rng(seed)
    return rng.uniform(0.05, 3.0, shape) * rng.choice([-1.0, 1.0], shape)


def naive_softmax(x, axis, log=False):
    """Softmax along ``axis``, one 1-d slice at a time, from its definition."""
    axis %= x.ndim
    y = np.empty_like(x)
    others = [range(n) for i, n in enumerate(x.shape) if i != axis]
    for idx in itertools.product(*others):
        sl = list(idx)
        sl.insert(axis, slice(None))
        v = x[tuple(sl)]
        m = max(v)
        e = [math.exp(a - m) for a in v]
        s = sum(e)
        y[tuple(sl)] = [math.log(a / s) if log else a / s for a in e]
    return y


def test_relu_and_leaky_relu_forward():
    x = _x()
    np.testing.assert_array_equal(F.relu(Tensor(x)).numpy(), np.maximum(x, 0))
    for slope in (0.01, 0.2, 1.5):
        np.testing.assert_allclose(F.leaky_relu(Tensor(x), slope).numpy(),
                                   np.where(x > 0, x, slope * x), rtol=1e-15)
    np.testing.assert_allclose(F.leaky_relu(Tensor(x)).numpy(), np.where(x > 0, x, 0.01 * x))


def test_sigmoid_and_tanh_forward():
    x = _x()
    np.testing.assert_allclose(F.sigmoid(Tensor(x)).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-14)
    np.testing.assert_allclose(F.tanh(Tensor(x)).numpy(), np.tanh(x), rtol=1e-15)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_elementwise_gradients(name):
    fn = getattr(F, name)
    check_grad(fn, [_x(seed=1)], name=name)
    check_grad(fn, [_x((2, 3), seed=2)], max_elementwise=64, name=name)


def test_leaky_relu_gradient_with_a_custom_slope():
    check_grad(lambda t: F.leaky_relu(t, 0.3), [_x(seed=3)], name="leaky_relu 0.3")


def test_relu_subgradient_at_zero_is_zero():
    x = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("axis", [1, 0, 3, -1])
def test_softmax_and_log_softmax_match_the_naive_loop(axis, log):
    x = _x((2, 3, 4, 5), seed=4)
    fn = F.log_softmax if log else F.softmax
    y = fn(Tensor(x), axis=axis).numpy()
    np.testing.assert_allclose(y, naive_softmax(x, axis, log), rtol=1e-12, atol=1e-15)
    small = _x((2, 3, 3), seed=5)
    check_grad(lambda t: fn(t, axis=axis if axis in (0, 1, -1) else 2), [small],
               name=f"{fn.__name__} axis={axis}")


def test_softmax_default_axis_is_the_class_axis():
    x = _x((2, 3, 4, 5), seed=6)
    np.testing.assert_allclose(F.softmax(Tensor(x)).numpy().sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(F.log_softmax(Tensor(x)).numpy(), naive_softmax(x, 1, True),
                               rtol=1e-12)


def test_large_inputs_do_not_overflow():
    x = np.array([[1000.0, 0.0, -1000.0], [-800.0, -800.0, 2000.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any overflow warning fails the test
        s = F.softmax(Tensor(x), axis=1).numpy()
        ls = F.log_softmax(Tensor(x), axis=1).numpy()
        sg = F.sigmoid(Tensor(x)).numpy()
        x32 = x.astype(np.float32)
        s32 = F.softmax(Tensor(x32), axis=1).numpy()
    np.testing.assert_allclose(s, [[1, 0, 0], [0, 0, 1]], atol=1e-300)
    np.testing.assert_allclose(ls, [[0, -1000, -2000], [-2800, -2800, 0]])
    np.testing.assert_array_equal(sg, [[1, 0.5, 0], [0, 0, 1]])
    assert s32.dtype == np.float32 and np.all(np.isfinite(s32))


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh", "softmax",
                                  "log_softmax"])
def test_float32_is_kept_forward_and_backward(name):
    x = Tensor(_x((2, 3, 4)).astype(np.float32), requires_grad=True)
    y = getattr(F, name)(x)
    assert y.dtype == np.float32
    y.backward(np.ones(y.shape, np.float32))
    assert x.grad.dtype == np.float32


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh", "softmax",
                                  "log_softmax"])
def test_integer_input_is_a_type_error(name):
    with pytest.raises(TypeError, match=name + r": x must be a floating-point array "
                                               r"\(float32 or float64\); got dtype int64"):
        getattr(F, name)(Tensor(np.arange(6).reshape(2, 3)))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_bad_axis_names_the_function_expected_and_given(name):
    with pytest.raises(ValueError, match=name + r": axis must be an integer in \[-2, 2\); "
                                               r"got 2"):
        getattr(F, name)(Tensor(np.ones((2, 3))), axis=2)


def test_sigmoid_keeps_relative_precision_in_both_tails():
    x = np.array([-700.0, -40.0, -5.0, 0.0, 5.0, 40.0, 700.0])
    exact = np.array([1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))
                      for v in x])
    np.testing.assert_allclose(F.sigmoid(Tensor(x)).numpy(), exact, rtol=1e-14, atol=0)
    y32 = F.sigmoid(Tensor(x.astype(np.float32))).numpy()
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32[1:-1], exact[1:-1], rtol=1e-6, atol=0)
