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


def test_chain_of_10000_mixed_ops_backpropagates_under_a_low_recursion_limit():
    import sys
    x = Tensor(np.array([0.3, -0.2]), requires_grad=True)
    y = x
    for _ in range(2500):  # 4 ops per turn: 10,000 ops
        y = F.log(F.exp(y)).reshape(2, 1)[:, 0]
    loss = (y * y).sum()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(150)  # a recursive walk would need > 10,000 frames
    try:
        loss.backward()
    finally:
        sys.setrecursionlimit(limit)
    np.testing.assert_allclose(x.grad, 2 * x.numpy(), rtol=1e-9)


def test_an_intermediate_reused_many_times_accumulates():
    x = Tensor(np.array([0.5, -1.5, 2.0]), requires_grad=True)
    h = x * x                      # used by three consumers
    y = h * 3.0 + F.exp(h) - h * h
    y.sum().backward()
    v = x.numpy()
    # d/dx [3 x^2 + exp(x^2) - x^4] = 6x + 2x exp(x^2) - 4x^3
    np.testing.assert_allclose(x.grad, 6 * v + 2 * v * np.exp(v * v) - 4 * v ** 3, rtol=1e-13)
    # The same tensor as both operands of one op.
    x.grad = None
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * v)


def test_wide_fan_out_accumulates_deterministically():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    total = x * 0.0
    for k in range(1, 1001):
        total = total + x * float(k)
    total.sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(2, 1000 * 1001 / 2))


def test_multi_output_function_with_an_unused_output():
    class Split(Function):
        def forward(self, a):
            return a[:2] * 2, a[2:] * 3

        def backward(self, g0, g1):
            return (self.xp.concatenate([g0 * 2, g1 * 3]),)

    x = Tensor(np.arange(5.0), requires_grad=True)
    first, second = Split()(x)
    assert first.shape == (2,) and second.shape == (3,)
    first.sum().backward()  # the unused output's gradient is taken as zero
    np.testing.assert_array_equal(x.grad, [2, 2, 0, 0, 0])


def test_backward_frees_what_forward_saved():
    import weakref
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    a = x * 2.0
    saved = weakref.ref(a.data)
    y = F.log(a)                   # Log keeps a's array for its backward
    del a
    assert saved() is not None
    log_fn = y.creator
    y.sum().backward()
    assert log_fn.inputs is None and not hasattr(log_fn, "x")
    assert saved() is None         # nothing holds the intermediate any more
    np.testing.assert_allclose(x.grad, 1 / x.numpy())


def test_retain_graph_keeps_what_forward_saved():
    import weakref
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    a = x * 2.0
    saved = weakref.ref(a.data)
    y = F.log(a).sum()
    del a
    y.backward(retain_graph=True)
    assert saved() is not None
    y.backward()
    assert saved() is None
    np.testing.assert_allclose(x.grad, 2 / x.numpy())


def test_no_grad_saves_nothing_nests_and_restores_after_an_error():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with no_grad():
        assert not segnp.is_grad_enabled()
        y = F.log(x)
        assert y.creator is None and not y.requires_grad
        with segnp.enable_grad():
            z = F.log(x)
            assert z.requires_grad and z.creator is not None
        assert not segnp.is_grad_enabled()
    assert segnp.is_grad_enabled()
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert segnp.is_grad_enabled()
    z.sum().backward()
    np.testing.assert_allclose(x.grad, 1 / x.numpy())


def test_detach_cuts_the_graph():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * 3.0
    d = y.detach()
    assert not d.requires_grad and d.creator is None
    (y + d * d).sum().backward()  # d contributes no gradient
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])
