"""Optimizers against hand-written update formulas; groups; constraints; schedulers; state."""
import copy

import numpy as np
import pytest

from segnp import Parameter
from segnp.optim import SGD, Adam, Optimizer, PolyLR, StepLR


# ---- a quadratic problem: the gradient depends on the parameter, as in real training ----
A = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, -0.3], [0.0, -0.3, 1.0]])
B = np.array([1.0, -2.0, 0.5])
P0 = np.array([0.3, -0.7, 1.2])


def grad_of(p):
    return A @ p - B


def run(opt_factory, steps, p0=P0, dtype=np.float64):
    p = Parameter(p0.astype(dtype))
    opt = opt_factory([p])
    history = []
    for _ in range(steps):
        p.grad = grad_of(p.data).astype(dtype)
        opt.step()
        history.append(p.data.copy())
    return np.array(history), opt, p


def sgd_reference(p, steps, lr, momentum=0.0, wd=0.0, nesterov=False):
    """PyTorch's SGD written out: d = g + wd p; buf = d, then momentum buf + d; p -= lr d."""
    p = p.copy()
    buf = None
    out = []
    for _ in range(steps):
        d = grad_of(p) + wd * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
        out.append(p.copy())
    return np.array(out)


def adam_reference(p, steps, lr, b1, b2, eps, wd=0.0):
    """Adam as in Kingma and Ba, with L2 decay added to the gradient."""
    p = p.copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    out = []
    for t in range(1, steps + 1):
        g = grad_of(p) + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1 ** t)
        vhat = v / (1 - b2 ** t)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
        out.append(p.copy())
    return np.array(out)


@pytest.mark.parametrize("momentum,wd,nesterov", [
    (0.0, 0.0, False), (0.9, 0.0, False), (0.9, 0.0, True), (0.0, 0.01, False),
    (0.5, 0.05, False), (0.8, 0.02, True)])
def test_sgd_matches_reference(momentum, wd, nesterov):
    got, _, _ = run(lambda ps: SGD(ps, lr=0.05, momentum=momentum, weight_decay=wd,
                                   nesterov=nesterov), 7)
    ref = sgd_reference(P0, 7, 0.05, momentum, wd, nesterov)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("lr,betas,eps,wd", [
    (1e-2, (0.9, 0.999), 1e-8, 0.0), (0.1, (0.5, 0.9), 1e-3, 0.0),
    (3e-2, (0.9, 0.99), 1e-8, 0.1), (1e-3, (0.0, 0.999), 1e-6, 0.01)])
def test_adam_matches_reference(lr, betas, eps, wd):
    got, opt, p = run(lambda ps: Adam(ps, lr=lr, betas=betas, eps=eps, weight_decay=wd), 9)
    ref = adam_reference(P0, 9, lr, betas[0], betas[1], eps, wd)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)
    assert opt.state[id(p)]["step"] == 9


def test_updates_keep_float32_and_do_not_touch_the_gradient():
    for factory in (lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
                    lambda ps: Adam(ps, lr=0.1, weight_decay=0.1)):
        got, opt, p = run(factory, 3, dtype=np.float32)
        assert got.dtype == np.float32 and p.data.dtype == np.float32
        assert all(v.dtype == np.float32 for s in opt.state.values() for v in s.values()
                   if hasattr(v, "dtype"))
        g = p.grad.copy()
        opt.step()
        np.testing.assert_array_equal(p.grad, g)


def test_update_is_in_place():
    p = Parameter(np.ones(3))
    data = p.data
    p.grad = np.ones(3)
    SGD([p], lr=0.5).step()
    assert p.data is data and np.array_equal(data, np.full(3, 0.5))


# ---- groups -----------------------------------------------------------------------------
def test_param_groups_have_their_own_lr_and_inherit_defaults():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(2))
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 1.0, "momentum": 0.5}], lr=0.1,
              momentum=0.9)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0.9
    assert opt.param_groups[1]["lr"] == 1.0 and opt.param_groups[1]["momentum"] == 0.5
    for _ in range(2):
        a.grad, b.grad = np.ones(2), np.ones(2)
        opt.step()
    np.testing.assert_allclose(a.data, -0.1 * (1 + 1.9))   # buf: 1, then 0.9 + 1
    np.testing.assert_allclose(b.data, -1.0 * (1 + 1.5))   # buf: 1, then 0.5 + 1
    c = Parameter(np.zeros(1))
    opt.add_param_group({"params": c, "lr": 2.0})
    c.grad = np.ones(1)
    opt.step()
    assert c.data[0] == -2.0


def test_parameters_without_grad_are_skipped():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = Adam([a, b], lr=0.1)
    a.grad = np.ones(2)
    opt.step()
    assert np.array_equal(b.data, np.ones(2)) and id(b) not in opt.state
    opt.zero_grad()
    assert a.grad is None


def test_optimizer_argument_errors():
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Parameter"):
        SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="Parameter"):
        SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="more than one group"):
        SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="appears twice"):
        SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="lr must be a number >= 0; got -1"):
        SGD([p], lr=-1)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="unknown hyper-parameters"):
        SGD([{"params": [p], "lr_mult": 10}], lr=0.1)
    with pytest.raises(ValueError, match="Adam: betas"):
        Adam([p], betas=(0.9, 1.0))
    base = Optimizer([p], {"lr": 0.1})
    p.grad = np.ones(2)
    with pytest.raises(TypeError, match="must define update"):
        base.step()


# ---- constraints ----------------------------------------------------------------------
@pytest.mark.parametrize("factory", [lambda ps: SGD(ps, lr=1.0, momentum=0.9),
                                     lambda ps: Adam(ps, lr=1.0)])
def test_constraint_is_applied_after_each_step(factory):
    lam = Parameter(np.array([0.2, 0.0]), constraint=lambda a: a.clip(0, None))
    opt = factory([lam])
    lam.grad = np.array([5.0, -1.0])   # pushes lam[0] below 0 and lam[1] up from 0
    opt.step()
    assert lam.data[0] == 0.0           # projected back
    assert lam.data[1] > 0.0            # a lam at 0 can grow
    free = Parameter(np.array([0.2]))
    opt2 = factory([free])
    free.grad = np.array([5.0])
    opt2.step()
    assert free.data[0] < 0.0           # the same step without a constraint goes negative


# ---- state_dict -----------------------------------------------------------------------------
def _two_param_problem(factory):
    ps = [Parameter(np.array([0.5, -1.0, 2.0])), Parameter(np.array([[1.0, 2.0]]))]
    opt = factory([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.01}])
    return ps, opt


def _train(ps, opt, steps):
    for _ in range(steps):
        ps[0].grad = grad_of(ps[0].data)
        ps[1].grad = np.sin(ps[1].data)
        opt.step()


@pytest.mark.parametrize("factory", [
    lambda g: SGD(g, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda g: Adam(g, lr=0.05, betas=(0.8, 0.99), weight_decay=1e-3)])
def test_state_dict_round_trip_continues_identically(factory):
    ps, opt = _two_param_problem(factory)
    _train(ps, opt, 3)
    sd = opt.state_dict()
    ps2, opt2 = _two_param_problem(factory)
    for p, q in zip(ps, ps2):
        q.data[...] = p.data
    opt2.load_state_dict(copy.deepcopy(sd))
    assert _equal(opt2.state_dict(), sd)
    _train(ps, opt, 4)
    _train(ps2, opt2, 4)
    for p, q in zip(ps, ps2):
        np.testing.assert_array_equal(p.data, q.data)


def _equal(a, b):
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(_equal(a[k], b[k])
                                                                    for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, np.ndarray):
        return type(b) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def test_state_dict_holds_copies_and_names_parameters_by_index():
    ps, opt = _two_param_problem(lambda g: Adam(g, lr=0.1))
    _train(ps, opt, 2)
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["lr"] == 0.01 and sd["param_groups"][0]["betas"] == (0.9,
                                                                                       0.999)
    assert sorted(sd["state"]) == [0, 1] and sd["state"][1]["step"] == 2
    sd["state"][0]["exp_avg"][...] = 99.0
    assert not np.any(opt.state[id(ps[0])]["exp_avg"] == 99.0)


def test_load_state_dict_checks_groups_and_shapes():
    ps, opt = _two_param_problem(lambda g: SGD(g, lr=0.1, momentum=0.9))
    _train(ps, opt, 1)
    sd = opt.state_dict()
    flat = SGD(ps, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"expected 1 parameter groups of sizes \[2\]; "
                                         r"given 2 of sizes \[1, 1\]"):
        flat.load_state_dict(sd)
    bad = copy.deepcopy(sd)
    bad["state"][1]["momentum_buffer"] = np.zeros((2, 1))
    with pytest.raises(ValueError, match=r"must have shape \(1, 2\); given \(2, 1\)"):
        opt.load_state_dict(bad)
    assert _equal(opt.state_dict(), sd)  # the failed load changed nothing


# ---- schedulers ------------------------------------------------------------------------
def _opt_with_groups():
    a, b = Parameter(np.zeros(1)), Parameter(np.zeros(1))
    return SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.05, momentum=0.9)


def test_step_lr_follows_its_formula_per_group():
    opt = _opt_with_groups()
    sched = StepLR(opt, step_size=3, gamma=0.5)
    seen = [sched.get_last_lr()]
    for _ in range(8):
        sched.step()
        seen.append(sched.get_last_lr())
    expected = [[0.05 * 0.5 ** (t // 3), 0.5 * 0.5 ** (t // 3)] for t in range(9)]
    np.testing.assert_allclose(seen, expected, rtol=1e-15)
    ratio = np.array(seen)[:, 1] / np.array(seen)[:, 0]
    np.testing.assert_allclose(ratio, 10.0)  # lr_mult is preserved


def test_poly_lr_follows_its_formula_and_stops_at_zero():
    opt = _opt_with_groups()
    sched = PolyLR(opt, max_iters=10)
    seen = [sched.get_last_lr()[0]]
    for _ in range(12):
        sched.step()
        seen.append(sched.get_last_lr()[0])
    expected = [0.05 * max(0.0, 1 - t / 10) ** 0.9 for t in range(13)]
    np.testing.assert_allclose(seen, expected, rtol=1e-15)
    assert seen[10] == 0.0 and seen[12] == 0.0 and seen[1] < seen[0]


def test_scheduler_state_resumes_exactly():
    opt = _opt_with_groups()
    sched = PolyLR(opt, max_iters=20, power=0.9)
    for _ in range(7):
        sched.step()
    state = sched.state_dict()
    assert state["last_epoch"] == 7 and state["base_lrs"] == [0.05, 0.5]
    opt2 = _opt_with_groups()
    sched2 = PolyLR(opt2, max_iters=20, power=0.9)
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == sched.get_last_lr()
    for _ in range(5):
        sched.step()
        sched2.step()
        assert sched2.get_last_lr() == sched.get_last_lr()
    with pytest.raises(ValueError, match="expected keys"):
        sched2.load_state_dict({"last_epoch": 1})


def test_scheduler_changes_the_lr_the_optimizer_uses():
    p = Parameter(np.zeros(1))
    opt = SGD([p], lr=1.0)
    sched = StepLR(opt, step_size=1, gamma=0.1)
    p.grad = np.ones(1)
    opt.step()
    sched.step()
    opt.step()
    np.testing.assert_allclose(p.data, [-1.1])


def test_scheduler_argument_errors():
    opt = _opt_with_groups()
    with pytest.raises(ValueError, match="StepLR: step_size must be an int >= 1"):
        StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="PolyLR: power must be a number >= 0"):
        PolyLR(opt, max_iters=5, power=-1)
    with pytest.raises(TypeError, match="expected an Optimizer"):
        PolyLR([1], max_iters=5)
