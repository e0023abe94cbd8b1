"""The tape: order, accumulation, edge checks, no_grad, freeing, long chains."""
import numpy as np
import pytest

import segnp
import segnp.functions as F
from segnp import Function, Tensor, no_grad


def test_chain_of_10000_ops_backpropagates_without_recursion():
    x = Tensor(np.array([1.5]), requires_grad=True)
    y = x
    for _ in range(10000):
        y = y * 1.0001
    y.sum().backward()
    assert np.allclose(x.grad, 1.0001 ** 10000)


def test_reused_tensor_accumulates_gradient():
    x = Tensor(np.array([2.0, -3.0]), requires_grad=True)
    y = x * x + x * 3.0  # dy/dx = 2x + 3
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * np.array([2.0, -3.0]) + 3)


def test_diamond_graph_is_processed_after_all_consumers():
    x = Tensor(np.array(0.7), requires_grad=True)
    a = F.exp(x)
    b = a * a          # two paths from a
    c = b + a
    c.backward()
    e = np.exp(0.7)
    np.testing.assert_allclose(x.grad, 2 * e * e + e)


def test_leaf_grad_accumulates_across_backward_calls():
    x = Tensor(np.ones(3), requires_grad=True)
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 5.0))


def test_no_grad_records_nothing():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.creator is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_graph_is_freed_after_backward():
    x = Tensor(np.ones(3), requires_grad=True)
    y = (x * 2.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="freed"):
        y.backward()


def test_retain_graph_allows_a_second_pass():
    x = Tensor(np.ones(3), requires_grad=True)
    y = (x * 2.0).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, np.full(3, 4.0))


def test_only_needed_input_gradients_are_computed():
    seen = {}

    class Probe(Function):
        def forward(self, a, b):
            seen["needs"] = self.needs_input_grad
            return a + b

        def backward(self, gy):
            return tuple(gy if n else None for n in self.needs_input_grad)

    a = Tensor(np.ones(2), requires_grad=True)
    b = Tensor(np.ones(2))
    Probe()(a, b).sum().backward()
    assert seen["needs"] == (True, False)
    np.testing.assert_allclose(a.grad, np.ones(2))
    assert b.grad is None


def test_wrong_gradient_shape_or_dtype_is_caught_on_the_edge():
    class BadShape(Function):
        def forward(self, a):
            return a * 2

        def backward(self, gy):
            return (gy[:1],)

    class BadDtype(Function):
        def forward(self, a):
            return a * 2

        def backward(self, gy):
            return (gy.astype(np.float32),)

    a = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"BadShape.backward.*shape \(3,\)"):
        BadShape()(a).sum().backward()
    with pytest.raises(RuntimeError, match=r"BadDtype.backward.*dtype float64"):
        BadDtype()(a).sum().backward()


def test_scalar_operands_keep_float32():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = 2.0 * x + 1 - x / 3.0
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_backward_order_is_deterministic():
    def run():
        rng = np.random.default_rng(3)
        x = Tensor(rng.standard_normal(50).astype(np.float32), requires_grad=True)
        terms = [x * float(k) for k in range(1, 30)]
        total = terms[0]
        for t in terms[1:]:
            total = total + F.exp(t * 0.01)
        total.sum().backward()
        return x.grad.copy()

    assert np.array_equal(run(), run())


def test_requires_grad_on_integers_is_a_type_error():
    with pytest.raises(TypeError, match="Tensor: requires_grad needs a floating dtype"):
        Tensor(np.arange(3), requires_grad=True)


def test_backward_needs_grad_for_non_scalar():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match=r"backward: grad can be omitted only.*\(3,\)"):
        (x * 2.0).backward()


def test_parameter_constraint_projects():
    p = segnp.Parameter(np.array([-1.0, 0.5]), constraint=lambda a: a.clip(0, None))
    p.apply_constraint()
    np.testing.assert_allclose(p.data, [0.0, 0.5])
