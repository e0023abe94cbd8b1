"""Elementwise arithmetic and matmul: NumPy forward, float64 gradient checks, broadcasting,
scalar operands, operators on Tensor, subgradients and errors."""
import numpy as np
import pytest

import segnp.functions as F
from segnp import Tensor, check_grad


def _rng(seed=0):
    return np.random.default_rng(seed)


def _away_from_zero(shape, seed, low=0.5, high=2.0):
    """Values with |v| in [low, high] and random signs (safe for div, abs, ...)."""
    rng = _rng(seed)
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


# (shape of a, shape of b): equal, row/column broadcasting, leading axes, 0-d.
BROADCAST = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)),
             ((), (2, 3)), ((5,), ())]

BINARY = {
    "add": (F.add, np.add),
    "sub": (F.sub, np.subtract),
    "mul": (F.mul, np.multiply),
    "div": (F.div, np.divide),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("sa,sb", BROADCAST)
def test_binary_forward_matches_numpy_and_gradients(name, sa, sb):
    fn, ref = BINARY[name]
    a = _away_from_zero(sa, 1)
    b = _away_from_zero(sb, 2)
    y = fn(Tensor(a), Tensor(b))
    np.testing.assert_allclose(y.numpy(), ref(a, b), rtol=1e-15)
    assert y.shape == np.broadcast_shapes(sa, sb)
    grads = check_grad(fn, [a, b], name=f"{name} {sa} {sb}")
    assert grads[0].shape == sa and grads[1].shape == sb


def test_binary_gradients_by_hand_with_broadcasting():
    # d(sum(gy * a / b))/db for b broadcast over rows = -sum_rows(gy * a / b^2).
    a = _away_from_zero((3, 4), 3)
    b = _away_from_zero((4,), 4)
    gy = _rng(5).standard_normal((3, 4))
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    F.div(ta, tb).backward(gy)
    np.testing.assert_allclose(ta.grad, gy / b, rtol=1e-14)
    np.testing.assert_allclose(tb.grad, (-gy * a / b ** 2).sum(axis=0), rtol=1e-12)
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    F.mul(ta, tb).backward(gy)
    np.testing.assert_allclose(ta.grad, gy * b, rtol=1e-14)
    np.testing.assert_allclose(tb.grad, (gy * a).sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_python_scalars_on_either_side_keep_float32(name):
    fn, ref = BINARY[name]
    a = _away_from_zero((2, 3), 6).astype(np.float32)
    x = Tensor(a, requires_grad=True)
    left, right = fn(x, 2.5), fn(2.5, x)
    assert left.dtype == np.float32 and right.dtype == np.float32
    np.testing.assert_allclose(left.numpy(), ref(a, np.float32(2.5)), rtol=1e-6)
    np.testing.assert_allclose(right.numpy(), ref(np.float32(2.5), a), rtol=1e-6)
    (left + right).sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.shape == (2, 3)
    check_grad(lambda t: fn(t, 2.5) * fn(2.5, t), [a.astype(np.float64)], name=name)


def test_tensor_operators_route_to_the_functions():
    a, b = _away_from_zero((3, 4), 7), _away_from_zero((4, 2), 8)
    ta, tb = Tensor(a), Tensor(b)
    np.testing.assert_allclose((ta + 1).numpy(), a + 1)
    np.testing.assert_allclose((1 - ta).numpy(), 1 - a)
    np.testing.assert_allclose((2 * ta).numpy(), 2 * a)
    np.testing.assert_allclose((2 / ta).numpy(), 2 / a)
    np.testing.assert_allclose((ta ** 2).numpy(), a ** 2)
    np.testing.assert_allclose((2 ** ta).numpy(), 2 ** a)
    np.testing.assert_allclose((-ta).numpy(), -a)
    np.testing.assert_allclose((ta @ tb).numpy(), a @ b)
    np.testing.assert_allclose((a @ tb).numpy(), a @ b)
    # An ndarray on the left must defer to the Tensor, not broadcast over its elements.
    y = a + ta
    assert isinstance(y, Tensor)
    np.testing.assert_allclose(y.numpy(), 2 * a)


def test_only_the_needed_input_gradient_is_computed():
    a, b = _away_from_zero((3,), 9), _away_from_zero((3,), 10)
    ta, tb = Tensor(a, requires_grad=True), Tensor(b)
    F.mul(ta, tb).sum().backward()
    np.testing.assert_allclose(ta.grad, b)
    assert tb.grad is None


def test_neg_exp_log_sqrt_abs_forward_and_gradients():
    x = _away_from_zero((3, 5), 11)
    pos = np.abs(x)
    cases = [(F.neg, np.negative, x), (F.exp, np.exp, x), (F.log, np.log, pos),
             (F.sqrt, np.sqrt, pos), (F.abs, np.abs, x)]
    for fn, ref, v in cases:
        np.testing.assert_allclose(fn(Tensor(v)).numpy(), ref(v), rtol=1e-15)
        check_grad(fn, [v], name=fn.__name__)


def test_abs_subgradient_at_zero_is_zero():
    x = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    F.abs(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [-1.0, 0.0, 1.0])


@pytest.mark.parametrize("p", [3.0, 2, 0.5, -1.5])
def test_pow_with_a_constant_exponent(p):
    x = np.abs(_away_from_zero((4, 3), 12))
    y = F.pow(Tensor(x), p)
    np.testing.assert_allclose(y.numpy(), x ** p, rtol=1e-14)
    check_grad(lambda t: F.pow(t, p), [x], name=f"pow p={p}")
    check_grad(lambda t: t ** p, [x], name=f"** p={p}")


def test_pow_with_a_tensor_exponent_and_a_scalar_base():
    a = np.abs(_away_from_zero((3, 4), 13))
    b = _away_from_zero((4,), 14)
    np.testing.assert_allclose(F.pow(Tensor(a), Tensor(b)).numpy(), a ** b, rtol=1e-14)
    check_grad(F.pow, [a, b], name="pow tensor exponent")
    check_grad(lambda t: 1.7 ** t, [b], name="scalar ** tensor")


@pytest.mark.parametrize("lo,hi", [(-0.8, 0.9), (None, 0.3), (-0.2, None)])
def test_clip_forward_and_gradients(lo, hi):
    # Keep every value away from the bounds: the kink is not differentiable.
    x = _rng(15).uniform(-2, 2, (5, 6))
    for bound in (lo, hi):
        if bound is not None:
            x[np.abs(x - bound) < 1e-3] += 0.01
    np.testing.assert_allclose(F.clip(Tensor(x), lo, hi).numpy(),
                               np.clip(x, -np.inf if lo is None else lo,
                                       np.inf if hi is None else hi))
    check_grad(lambda t: F.clip(t, lo, hi), [x], name=f"clip {lo} {hi}")


def test_clip_gradient_passes_on_the_bounds_and_stops_outside():
    x = Tensor(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), requires_grad=True)
    F.clip(x, -1.0, 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 1.0, 1.0, 0.0])


def test_where_forward_and_gradients_with_broadcasting():
    rng = _rng(16)
    cond = rng.random((3, 4)) > 0.5
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4,))
    np.testing.assert_array_equal(F.where(cond, Tensor(a), Tensor(b)).numpy(),
                                  np.where(cond, a, b))
    check_grad(F.where, [cond, a, b], wrt=[1, 2], name="where")
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    F.where(Tensor(cond), ta, tb).sum().backward()
    np.testing.assert_array_equal(ta.grad, cond.astype(float))
    np.testing.assert_array_equal(tb.grad, (~cond).sum(axis=0).astype(float))
    np.testing.assert_array_equal(F.where(cond, Tensor(a), 0.0).numpy(), np.where(cond, a, 0))


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)),
                                   ((5, 1, 3, 4), (2, 4, 2)), ((4,), (4, 3)),
                                   ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4,))])
def test_matmul_matches_numpy_and_gradients(sa, sb):
    rng = _rng(17)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    np.testing.assert_allclose(F.matmul(Tensor(a), Tensor(b)).numpy(), a @ b, rtol=1e-13)
    check_grad(F.matmul, [a, b], name=f"matmul {sa} {sb}")


def test_matmul_gradient_by_hand():
    rng = _rng(18)
    a, b, gy = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal((3, 5))
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    (ta @ tb).backward(gy)
    np.testing.assert_allclose(ta.grad, gy @ b.T, rtol=1e-13)
    np.testing.assert_allclose(tb.grad, a.T @ gy, rtol=1e-13)


def test_errors_name_the_function_expected_and_given():
    x = Tensor(np.ones(3))
    with pytest.raises(ValueError, match=r"clip: expected at least one of lo, hi; got both None"):
        F.clip(x)
    with pytest.raises(ValueError, match=r"matmul: expected operands with at least 1 "
                                         r"dimension; got shapes \(3,\) and \(\)"):
        F.matmul(x, Tensor(np.array(2.0)))


def test_numpy_scalars_follow_the_tensor_dtype_and_defer_to_it():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    for y in (np.float64(2.0) * x, x * np.float64(2.0), np.float32(2) - x, x / np.int64(2)):
        assert isinstance(y, Tensor) and y.dtype == np.float32
    np.testing.assert_array_equal((np.float64(2.0) * x).numpy(), np.full(3, 2.0, np.float32))
