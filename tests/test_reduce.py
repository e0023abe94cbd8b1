"""Reductions sum, mean, max over axes with keepdims: NumPy forward, float64 gradient
checks, the tie rule of max, Tensor methods and errors."""
import numpy as np
import pytest

import segnp.functions as F
from segnp import Tensor, check_grad

AXES = [None, 0, 1, -1, (0, 2), (2, 0, 1), (-1, 1)]


def _x(seed=0, shape=(3, 4, 5)):
    # Distinct values: max has a unique argmax, so it is differentiable there.
    rng = np.random.default_rng(seed)
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 + rng.uniform(0, 0.01, shape)


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES)
def test_forward_matches_numpy_and_gradients(name, axis, keepdims):
    fn, ref = getattr(F, name), getattr(np, name)
    x = _x()
    np_axis = tuple(axis) if isinstance(axis, tuple) else axis
    y = fn(Tensor(x), axis=axis, keepdims=keepdims)
    expected = ref(x, axis=np_axis, keepdims=keepdims)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-14)
    check_grad(lambda t: fn(t, axis=axis, keepdims=keepdims), [x],
               name=f"{name} axis={axis} keepdims={keepdims}")


def test_gradients_by_hand():
    x = _x(1, (2, 3))
    gy = np.array([1.5, -2.0])
    t = Tensor(x, requires_grad=True)
    F.sum(t, axis=1).backward(gy)
    np.testing.assert_allclose(t.grad, np.repeat(gy[:, None], 3, axis=1))
    t = Tensor(x, requires_grad=True)
    F.mean(t, axis=1).backward(gy)
    np.testing.assert_allclose(t.grad, np.repeat(gy[:, None], 3, axis=1) / 3)
    t = Tensor(x, requires_grad=True)
    F.max(t, axis=1).backward(gy)
    expected = np.zeros_like(x)
    for n in range(2):
        expected[n, np.argmax(x[n])] = gy[n]
    np.testing.assert_allclose(t.grad, expected)


def test_max_ties_share_the_gradient_equally():
    x = Tensor(np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]]), requires_grad=True)
    F.max(x, axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5, 0], [0.25, 0.25, 0.25, 0.25]])


def test_tensor_methods_and_float32():
    x = _x(2).astype(np.float32)
    t = Tensor(x, requires_grad=True)
    np.testing.assert_allclose(t.sum(axis=1).numpy(), x.sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(t.mean(axis=(0, 2), keepdims=True).numpy(),
                               x.mean(axis=(0, 2), keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(t.max().numpy(), x.max())
    y = t.sum() + t.mean(axis=0).sum() + t.max(axis=2).sum()
    assert y.dtype == np.float32
    y.backward()
    assert t.grad.dtype == np.float32 and t.grad.shape == x.shape


def test_errors_name_the_function_expected_and_given():
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"sum: axis 2 is out of range for an array of 2 dims"):
        F.sum(x, axis=2)
    with pytest.raises(ValueError, match=r"max: axis -3 is out of range for an array of 2 dims"):
        F.max(x, axis=-3)
    with pytest.raises(TypeError, match=r"mean: expected a floating-point array; got dtype int64"):
        F.mean(Tensor(np.ones((2, 3), np.int64)))
    with pytest.raises(ValueError, match=r"max: expected a non-empty array; got shape \(0, 3\)"):
        F.max(Tensor(np.ones((0, 3))), axis=1)
