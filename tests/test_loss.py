"""Losses against naive loops written from their definitions: softmax cross-entropy (with
ignore_index and class weights), L1, MSE and end-point error; float64 gradient checks,
the no-valid-pixel case, dtypes and errors."""
import math

import numpy as np
import pytest

import segnp.functions as F
from segnp import Tensor, check_grad


def naive_cross_entropy(z, y, ignore_index=255, class_weight=None):
    """sum_i w_{y_i} (-log softmax(z_i)[y_i]) / sum_i w_{y_i} over non-ignored pixels i,
    one pixel at a time; 0 when no pixel counts."""
    L = z.shape[1]
    zs = np.moveaxis(z, 1, -1).reshape(-1, L)
    ys = y.reshape(-1)
    num = den = 0.0
    for logits, label in zip(zs, ys):
        if label == ignore_index:
            continue
        w = 1.0 if class_weight is None else class_weight[label]
        lse = math.log(sum(math.exp(v) for v in logits))
        num += w * (lse - logits[label])
        den += w
    return num / den if den > 0 else 0.0


def _problem(shape=(2, 4, 3, 5), seed=0, ignore=255, frac_ignored=0.3):
    rng = np.random.default_rng(seed)
    N, L = shape[:2]
    z = rng.standard_normal(shape) * 2
    y = rng.integers(0, L, (N,) + shape[2:])
    y[rng.random(y.shape) < frac_ignored] = ignore
    return z, y


CE_CASES = [
    dict(shape=(2, 4, 3, 5)),
    dict(shape=(2, 4, 3, 5), weights=True),
    dict(shape=(2, 3, 5, 4), ignore=-1, weights=True),
    dict(shape=(6, 5)),                     # (N, L) classification
    dict(shape=(6, 5), weights=True, ignore=0),
    dict(shape=(1, 2, 1, 1), frac_ignored=0.0),
]


@pytest.mark.parametrize("case", CE_CASES, ids=str)
def test_cross_entropy_matches_the_naive_loop_and_gradients(case):
    ignore = case.get("ignore", 255)
    z, y = _problem(case["shape"], seed=1, ignore=ignore,
                    frac_ignored=case.get("frac_ignored", 0.3))
    L = z.shape[1]
    cw = np.random.default_rng(2).uniform(0.2, 3.0, L) if case.get("weights") else None
    loss = F.softmax_cross_entropy(Tensor(z), y, ignore_index=ignore, class_weight=cw)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), naive_cross_entropy(z, y, ignore, cw), rtol=1e-12)
    check_grad(lambda t: F.softmax_cross_entropy(t, y, ignore_index=ignore, class_weight=cw),
               [z], name=f"softmax_cross_entropy {case}")


def test_cross_entropy_of_permuted_logits_matches_contiguous_ones():
    # the flat picks must follow the logical (N, L, H, W) order whatever the memory layout
    z, y = _problem((2, 4, 3, 5), seed=3, ignore=255, frac_ignored=0.3)
    zp = np.ascontiguousarray(z.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    grads, losses = [], []
    for logits in (z, zp):
        t = Tensor(logits, requires_grad=True)
        loss = F.softmax_cross_entropy(t, y)
        loss.backward()
        grads.append(t.grad)
        losses.append(loss.item())
    assert losses[0] == losses[1]
    np.testing.assert_array_equal(grads[0], grads[1])


def test_cross_entropy_gradient_is_weighted_softmax_minus_onehot():
    z, y = _problem((2, 3, 2, 4), seed=3)
    cw = np.array([0.5, 2.0, 1.0])
    t = Tensor(z, requires_grad=True)
    F.softmax_cross_entropy(t, y, class_weight=cw).backward()
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    expected = np.zeros_like(z)
    total = 0.0
    for n in range(2):
        for h in range(2):
            for w in range(4):
                label = y[n, h, w]
                if label == 255:
                    continue
                onehot = np.eye(3)[label]
                expected[n, :, h, w] = cw[label] * (p[n, :, h, w] - onehot)
                total += cw[label]
    np.testing.assert_allclose(t.grad, expected / total, rtol=1e-12, atol=1e-15)


def test_cross_entropy_uint8_labels_with_ignore_255():
    z, y = _problem((2, 3, 4, 4), seed=4)
    y8 = y.astype(np.uint8)
    np.testing.assert_allclose(F.softmax_cross_entropy(Tensor(z), y8).item(),
                               naive_cross_entropy(z, y), rtol=1e-12)


def test_cross_entropy_with_no_valid_pixel_is_zero_with_zero_gradient():
    z = np.random.default_rng(5).standard_normal((2, 3, 4, 4))
    y = np.full((2, 4, 4), 255)
    t = Tensor(z, requires_grad=True)
    loss = F.softmax_cross_entropy(t, y)
    assert loss.item() == 0.0
    loss.backward()
    np.testing.assert_array_equal(t.grad, np.zeros_like(z))
    # Zero-weight classes count as no pixel too, not as 0/0.
    t = Tensor(z, requires_grad=True)
    loss = F.softmax_cross_entropy(t, np.zeros((2, 4, 4), np.int64),
                                   class_weight=np.array([0.0, 1.0, 1.0]))
    assert loss.item() == 0.0
    loss.backward()
    np.testing.assert_array_equal(t.grad, np.zeros_like(z))
    check_grad(lambda a: F.softmax_cross_entropy(a, y), [z], name="all ignored")


def test_cross_entropy_is_stable_for_large_logits_and_keeps_float32():
    z = np.array([[1000.0, -1000.0, 0.0], [0.0, 0.0, 3000.0]])
    y = np.array([1, 2])
    loss = F.softmax_cross_entropy(Tensor(z), y).item()
    np.testing.assert_allclose(loss, (2000.0 + 0.0) / 2)
    z32, y32 = _problem((2, 3, 4, 4), seed=6)
    t = Tensor(z32.astype(np.float32), requires_grad=True)
    out = F.softmax_cross_entropy(t, y32)
    assert out.dtype == np.float32
    out.backward()
    assert t.grad.dtype == np.float32
    np.testing.assert_allclose(out.item(), naive_cross_entropy(z32.astype(np.float32), y32),
                               rtol=1e-5)


def test_cross_entropy_errors_name_the_function_expected_and_given():
    z, y = _problem((2, 3, 4, 4), seed=7)
    fn = F.softmax_cross_entropy
    bad = y.copy()
    bad[1, 2, 3] = 3
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must be class indices "
                                         r"in \[0, 3\) or ignore_index=255; got value 3"):
        fn(Tensor(z), bad)
    bad[1, 2, 3] = -2
    with pytest.raises(ValueError, match=r"in \[0, 3\) or ignore_index=255; got value -2"):
        fn(Tensor(z), bad)
    with pytest.raises(TypeError, match=r"softmax_cross_entropy: labels must be an integer "
                                        r"array; got dtype float64"):
        fn(Tensor(z), y.astype(np.float64))
    with pytest.raises(TypeError, match=r"softmax_cross_entropy: logits must be a floating-"
                                        r"point array \(float32 or float64\); got dtype int64"):
        fn(Tensor(y[:, None].astype(np.int64)), y)
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must have shape "
                                         r"\(2, 4, 4\) to match logits \(2, 3, 4, 4\); "
                                         r"got \(2, 4, 3\)"):
        fn(Tensor(z), y[:, :, :3])
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: class_weight must have shape "
                                         r"\(3,\); got \(2,\)"):
        fn(Tensor(z), y, class_weight=np.ones(2))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: logits must be \(N, L\) or "
                                         r"\(N, L, H, W\); got shape \(3,\)"):
        fn(Tensor(np.ones(3)), np.zeros(3, np.int64))
    with pytest.raises(TypeError, match=r"softmax_cross_entropy: ignore_index must be an "
                                        r"integer; got 255.0"):
        fn(Tensor(z), y, ignore_index=255.0)


# ---- regression losses --------------------------------------------------------------

def naive_epe(pred, gt):
    N, _, H, W = pred.shape
    total = 0.0
    for n in range(N):
        for h in range(H):
            for w in range(W):
                du = pred[n, 0, h, w] - gt[n, 0, h, w]
                dv = pred[n, 1, h, w] - gt[n, 1, h, w]
                total += math.sqrt(du * du + dv * dv)
    return total / (N * H * W)


def _pair(shape, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    # |a - b| >= 0.1 everywhere: l1 is differentiable away from equality.
    b = a + rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)
    return a, b


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (7,), (3, 1)])
def test_l1_and_mse_match_their_formulas_and_gradients(shape):
    a, b = _pair(shape, 8)
    np.testing.assert_allclose(F.l1_loss(Tensor(a), Tensor(b)).item(),
                               np.abs(a - b).sum() / a.size, rtol=1e-13)
    np.testing.assert_allclose(F.mse_loss(Tensor(a), Tensor(b)).item(),
                               ((a - b) ** 2).sum() / a.size, rtol=1e-13)
    check_grad(F.l1_loss, [a, b], name="l1_loss")
    check_grad(F.mse_loss, [a, b], name="mse_loss")
    # A NumPy target is a constant.
    check_grad(lambda t: F.mse_loss(t, b), [a], name="mse_loss vs array")


def test_l1_subgradient_at_equality_is_zero_and_float32_is_kept():
    a = Tensor(np.array([1.0, 2.0, 3.0], np.float32), requires_grad=True)
    b = np.array([1.0, 1.0, 4.0], np.float32)
    loss = F.l1_loss(a, b)
    assert loss.dtype == np.float32
    loss.backward()
    np.testing.assert_allclose(a.grad, np.array([0.0, 1.0, -1.0], np.float32) / 3)
    assert a.grad.dtype == np.float32


@pytest.mark.parametrize("shape", [(2, 2, 3, 5), (1, 2, 1, 1)])
def test_epe_matches_the_naive_loop_and_gradients(shape):
    pred, gt = _pair(shape, 9)
    np.testing.assert_allclose(F.epe_loss(Tensor(pred), Tensor(gt)).item(),
                               naive_epe(pred, gt), rtol=1e-13)
    check_grad(F.epe_loss, [pred, gt], name="epe_loss")


def test_epe_gradient_at_zero_error_is_zero_not_nan():
    gt = np.random.default_rng(10).standard_normal((1, 2, 2, 2))
    pred = gt.copy()
    pred[0, :, 0, 0] += [3.0, 4.0]
    t = Tensor(pred, requires_grad=True)
    loss = F.epe_loss(t, gt)
    np.testing.assert_allclose(loss.item(), 5.0 / 4)
    loss.backward()
    expected = np.zeros_like(pred)
    expected[0, :, 0, 0] = np.array([3.0, 4.0]) / 5 / 4
    np.testing.assert_allclose(t.grad, expected, rtol=1e-14, atol=0)


def test_regression_loss_errors_name_the_function_expected_and_given():
    a = Tensor(np.ones((2, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"l1_loss: target must have input's shape "
                                         r"\(2, 2, 3, 3\); got \(2, 2, 3\)"):
        F.l1_loss(a, np.ones((2, 2, 3)))
    with pytest.raises(TypeError, match=r"mse_loss: target must be a floating-point array "
                                        r"\(float32 or float64\); got dtype int64"):
        F.mse_loss(a, np.ones((2, 2, 3, 3), np.int64))
    with pytest.raises(TypeError, match=r"mse_loss: target must have input's dtype float64; "
                                        r"got float32"):
        F.mse_loss(a, np.ones((2, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"epe_loss: flow_pred must be \(N, 2, H, W\); got "
                                         r"shape \(2, 3, 3, 3\)"):
        F.epe_loss(Tensor(np.ones((2, 3, 3, 3))), np.ones((2, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"epe_loss: flow_gt must have flow_pred's shape "
                                         r"\(2, 2, 3, 3\); got \(2, 2, 3, 4\)"):
        F.epe_loss(a, np.ones((2, 2, 3, 4)))
    with pytest.raises(TypeError, match=r"epe_loss: flow_gt must be a floating-point array "
                                        r"\(float32 or float64\); got dtype int64"):
        F.epe_loss(a, np.ones((2, 2, 3, 3), np.int64))


def test_cross_entropy_class_weight_may_be_a_list_or_a_tensor():
    z, y = _problem((2, 3, 2, 3), seed=11)
    cw = [0.5, 1.0, 2.0]
    expected = naive_cross_entropy(z, y, class_weight=cw)
    for given in (cw, np.array(cw), Tensor(np.array(cw))):
        np.testing.assert_allclose(
            F.softmax_cross_entropy(Tensor(z), y, class_weight=given).item(), expected,
            rtol=1e-12)
