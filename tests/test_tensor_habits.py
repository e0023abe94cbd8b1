"""PyTorch habits that used to fail silently (issue 10): in-place updates, conversion to
NumPy and DLPack, comparisons and truth values, frozen parameters, non-numeric data,
per-thread grad mode, and the numbers the public functions must refuse."""
import threading

import numpy as np
import pytest

import segnp
import segnp.functions as F
from segnp import Parameter, Tensor, no_grad
from segnp import from_dlpack
from segnp.backends import using_backend
from segnp.optim import SGD, Adam


def test_inplace_update_inside_no_grad_changes_the_data():
    p = Parameter(np.array([1.0, 2.0]))
    (p * p).sum().backward()
    alias = p
    with no_grad():
        p -= 0.25 * p.grad
        p *= 2.0
        p += Tensor(np.array([1.0, 1.0]))
        p /= 2.0
    assert alias is p and p.requires_grad
    np.testing.assert_array_equal(p.numpy(), [1.0, 1.5])   # ((p - p/2) 2 + 1) / 2


def test_inplace_update_the_graph_needs_raises():
    p = Parameter(np.array([1.0, 2.0]))
    with pytest.raises(RuntimeError, match=r"Tensor -=: an in-place update .* no_grad"):
        p -= 1.0
    np.testing.assert_array_equal(p.numpy(), [1.0, 2.0])
    c = Tensor(np.array([3.0, 4.0]))     # a constant that Mul saves for p's gradient
    y = (p * c).sum()
    c += 1.0                               # allowed: c needs no grad ...
    with pytest.raises(RuntimeError, match="input 1 of Mul was changed in place"):
        y.backward()                       # ... but the graph used its old value


def test_numpy_and_dlpack_exchange():
    t = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    a = np.asarray(t)
    assert a.dtype == np.float32 and a.shape == (2, 3)
    np.testing.assert_array_equal(a, t.numpy())
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(np.from_dlpack(t), t.numpy())
    host = np.arange(4.0)
    shared = from_dlpack(host)
    host[0] = 7.0
    assert isinstance(shared, Tensor) and shared.numpy()[0] == 7.0


def test_comparisons_give_boolean_tensors_without_grad():
    a = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    b = Tensor(np.array([1.0, 2.0, 0.0]))
    for got, want in ((a == b, [True, False, False]), (a != b, [False, True, True]),
                      (a > 0, [True, False, True]), (a >= b, [True, False, True]),
                      (a < b, [False, True, False]), (a <= 1.0, [True, True, False])):
        assert isinstance(got, Tensor) and got.dtype == np.bool_
        assert not got.requires_grad and got.creator is None
        np.testing.assert_array_equal(got.numpy(), want)
    assert len({a, b, a}) == 2            # still hashable by identity


def test_truth_value_of_one_element_tensors():
    assert not bool(Tensor(0.0)) and bool(Tensor([2.0])) and bool(Tensor(np.ones((1, 1))))
    with pytest.raises(ValueError, match="truth value of a tensor of 3 elements is ambiguous"):
        bool(Tensor(np.ones(3)))


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.5, momentum=0.9),
                                  lambda ps: Adam(ps, lr=0.5)])
def test_frozen_parameters_are_accepted_and_skipped(make):
    net = segnp.nn.Conv2d(3, 2, 1, dtype=np.float64)
    net.bias.requires_grad = False
    opt = make(net.parameters())
    before_w, before_b = net.weight.numpy().copy(), net.bias.numpy().copy()
    net(Tensor(np.ones((4, 3, 2, 2)))).sum().backward()
    assert net.bias.grad is None
    opt.step()
    np.testing.assert_array_equal(net.bias.numpy(), before_b)
    assert not np.array_equal(net.weight.numpy(), before_w)
    net.bias.requires_grad = True        # unfrozen: the same optimizer trains it
    opt.zero_grad()
    net(Tensor(np.ones((4, 3, 2, 2)))).sum().backward()
    opt.step()
    assert not np.array_equal(net.bias.numpy(), before_b)
    with pytest.raises(TypeError, match="SGD: every parameter must be a Parameter or a "
                                        "Tensor that requires grad; got a Tensor that "
                                        "requires no grad"):
        SGD([Tensor(np.ones(2))], lr=0.1)


@pytest.mark.parametrize("data", [None, "abc", ["a", "b"], {"a": 1}, object()])
def test_non_numeric_data_is_refused(data):
    with pytest.raises(TypeError, match="Tensor: data must be numeric"):
        Tensor(data)


def test_a_list_of_tensors_is_refused():
    with pytest.raises(TypeError, match=r"Tensor: data must be numeric; got a list of "
                                        r"Tensors \(use F.stack"):
        Tensor([Tensor(1.0), Tensor(2.0)])


def test_grad_mode_is_per_thread():
    inside, done = threading.Event(), threading.Event()

    def worker():
        with no_grad():
            inside.set()
            done.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert inside.wait(10)
        assert segnp.is_grad_enabled()
        p = Parameter(np.ones(2))
        assert (p * 2.0).requires_grad
    finally:
        done.set()
        thread.join()


def test_numbers_the_functions_refuse():
    e = np.zeros((1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"segaware_mask: lam .* must be finite; got inf"):
        F.segaware_mask(e, float("inf"), 3)
    U = np.zeros((1, 3, 5, 5))
    for w_b in (-1.0, 0.0):
        with pytest.raises(ValueError, match=r"segaware_crf: w_b .* must be > 0; got"):
            F.segaware_crf(U, e, w_b=w_b)
    with pytest.raises(ValueError, match="segaware_crf: w_s .* must be >= 0; got -1"):
        F.segaware_crf(U, e, w_s=-1.0)
    with pytest.raises(ValueError, match=r"embedding_loss: beta must be a finite number >= "
                                         r"alpha = 2.5; got 2.0"):
        F.embedding_loss(e, np.zeros((1, 5, 5), np.int64), alpha=2.5, beta=2.0)


FLOAT16_CALLS = {
    "conv2d": lambda x, e: F.conv2d(x, np.ones((2, 2, 3, 3), np.float16)),
    "segaware_conv2d": lambda x, e: F.segaware_conv2d(x, e, np.ones((2, 2, 3, 3), np.float16)),
    "segaware_mask": lambda x, e: F.segaware_mask(e, 1.0, 3),
    "im2dist": lambda x, e: F.im2dist(e, 3),
    "segaware_bilateral": lambda x, e: F.segaware_bilateral(x, e, 1.0, 3),
    "segaware_crf": lambda x, e: F.segaware_crf(x, e),
    "embedding_loss": lambda x, e: F.embedding_loss(e, np.zeros((1, 6, 6), np.int64)),
    "max_pool2d": lambda x, e: F.max_pool2d(x, 2),
}


@pytest.mark.parametrize("backend", ["numpy", "cuda-emulator"])
@pytest.mark.parametrize("name", sorted(FLOAT16_CALLS))
def test_float16_is_refused_alike_under_the_public_name(backend, name):
    x = np.ones((1, 2, 6, 6), np.float16)
    e = np.ones((1, 3, 6, 6), np.float16)
    with using_backend(backend):
        with pytest.raises(TypeError, match=rf"^{name}: .* must be a floating-point array "
                                            rf"\(float32 or float64\); got dtype float16"):
            FLOAT16_CALLS[name](x, e)


def test_a_one_element_tensor_is_a_number_as_a_numpy_scalar_is():
    """Issue 24, row 9: float(loss), int(t), f"{loss:.3f}" and NumPy's reductions."""
    loss = Tensor(np.float32(2.75), requires_grad=True)
    assert float(loss) == 2.75 and int(loss) == 2 and complex(loss) == 2.75
    assert f"{loss:.3f}" == "2.750" and f"{Tensor([7]):>3d}" == "  7"
    assert f"{loss}" == str(loss)
    assert float(Tensor(np.ones((1, 1)))) == 1.0
    assert list(range(Tensor(np.int64(3)))) == [0, 1, 2] and [5, 6][Tensor([1])] == 6
    with pytest.raises(TypeError, match=r"only an integer tensor can be an index; got "
                                        r"dtype float32"):
        [5, 6][Tensor(np.float32(1))]
    t = Tensor(np.array([1.0, -2.0, 4.0]))
    for conv in (float, int, lambda v: f"{v:.3f}"):
        with pytest.raises(TypeError, match=r"only a one-element tensor converts to .*; "
                                            r"got shape \(3,\)"):
            conv(t)
    for fn, want in ((np.sum, 3.0), (np.mean, 1.0), (np.max, 4.0)):
        got = fn(t)
        assert isinstance(got, Tensor) and float(got) == want and f"{got:.1f}" == f"{want}"
        np.testing.assert_array_equal(fn(t, axis=0).numpy(), want)
    with pytest.raises(TypeError, match=r"Tensor.sum: dtype= and out= are NumPy's options"):
        np.sum(t, dtype=np.float32)


def test_numpy_reductions_keep_the_tape():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    np.sum(x * x).backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])
    x.zero_grad()
    np.mean(x).backward()
    np.testing.assert_allclose(x.grad, [1 / 3] * 3)
    x.zero_grad()
    np.max(x).backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])


def test_check_grad_is_exported_and_in_the_api_tour():
    """Issue 24, row 10: segnp.gradcheck is the module; the function is check_grad."""
    import os
    from segnp.gradcheck import check_grad
    assert segnp.check_grad is check_grad
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "README.md")).read()
    tour = readme.split("## API tour")[1].split("\n## ")[0]
    assert "segnp.check_grad(" in tour
