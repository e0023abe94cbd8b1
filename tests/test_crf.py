"""The segmentation-aware CRF (Sec. 3.3): mean-field against a per-pixel loop written
from the equations, float64 gradient checks for U, e and every parameter, the Potts
sign convention, shapes, constraints and bad input.

The loop: Q = softmax(logits) over labels; for each pixel i, the bilateral message is
sum_j Q_j exp(-lam ||e_i - e_j||) / (sum_j exp(-lam ||e_i - e_j||) + eps) and the
spatial one the same with exp(-|i - j|^2 / (2 sigma^2)), j over the window taps inside
the image except i itself (Eqs. 3, 4, 6); logits = U + compat @ (w_b B + w_s S).
"""
import itertools

import numpy as np
import pytest

import segnp.functions as F
from segnp import nn
from segnp.autograd import Tensor
from segnp.window import NORM_EPS
from segnp.gradcheck import check_grad
from segnp.optim import SGD
from naive_ops import norm_of


# ---- the loop ---------------------------------------------------------------------------
def softmax(x):
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def naive_filter(Q, weight, ksize, dilation):
    """Normalised filter of Q (N, L, H, W), centre excluded; weight(n, i, j, ti, tj)."""
    N, L, H, W = Q.shape
    out = np.zeros_like(Q)
    r = ksize // 2
    for n, i, j in itertools.product(range(N), range(H), range(W)):
        num, den = np.zeros(L), 0.0
        for a, b in itertools.product(range(ksize), range(ksize)):
            ti, tj = i + (a - r) * dilation, j + (b - r) * dilation
            if (a, b) == (r, r) or not (0 <= ti < H and 0 <= tj < W):
                continue
            w = weight(n, i, j, ti, tj)
            num += w * Q[n, :, ti, tj]
            den += w
        out[n, :, i, j] = num / (den + NORM_EPS)
    return out


def naive_crf(U, e, lam, w_b, w_s, sigma, compat, bk, bd, sk, sd, iterations, norm,
              sigma_b=None):
    def bil(n, i, j, ti, tj):
        w = np.exp(-lam * norm_of(e[n, :, i, j] - e[n, :, ti, tj], norm))
        if sigma_b is not None:   # Eq. 6's position term of the appearance kernel
            w *= np.exp(-((i - ti) ** 2 + (j - tj) ** 2) / (2 * sigma_b ** 2))
        return w

    def gauss(n, i, j, ti, tj):
        return np.exp(-((i - ti) ** 2 + (j - tj) ** 2) / (2 * sigma ** 2))

    logits = U
    for _ in range(iterations):
        Q = softmax(logits)
        msg = (weighted(w_b, naive_filter(Q, bil, bk, bd))
               + weighted(w_s, naive_filter(Q, gauss, sk, sd)))
        logits = U + np.einsum("lk,nkhw->nlhw", compat, msg)
    return logits


def weighted(w, Y):
    """A scalar filter weight times Y, or an (L, L) one applied at every pixel."""
    return np.einsum("lk,nkhw->nlhw", w, Y) if np.ndim(w) == 2 else w * Y


def inputs(rng, N=1, L=3, D=2, H=5, W=4):
    U = rng.normal(size=(N, L, H, W))
    e = rng.normal(size=(N, D, H, W))
    compat = np.eye(L) + 0.3 * rng.normal(size=(L, L))
    return U, e, compat


# ---- forward against the loop -------------------------------------------------------
@pytest.mark.parametrize("shape,bk,bd,sk,sd,iterations,norm", [
    ((2, 3, 3, 7, 6), 3, 2, 3, 1, 2, "l1"),
    ((1, 4, 2, 9, 11), 5, 3, 5, 1, 1, "l2"),
    ((1, 2, 3, 6, 5), 3, 1, 3, 2, 3, "l2sq"),
    ((1, 3, 2, 5, 7), 13, 9, 5, 1, 2, "l1"),   # the default windows on a tiny image
])
def test_matches_naive_mean_field(shape, bk, bd, sk, sd, iterations, norm):
    N, L, D, H, W = shape
    rng = np.random.default_rng(sum(shape))
    U, e, compat = inputs(rng, N, L, D, H, W)
    lam, w_b, w_s, sigma = 0.8, 1.3, 0.7, 1.4
    got = F.segaware_crf(U, e, lam, w_b, w_s, sigma, compat, bk, bd, sk, sd, iterations,
                         norm)
    assert got.shape == (N, L, H, W) and got.dtype == np.float64
    ref = naive_crf(U, e, lam, w_b, w_s, sigma, compat, bk, bd, sk, sd, iterations, norm)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_module_matches_function_and_loop():
    rng = np.random.default_rng(3)
    U, e, _ = inputs(rng, 2, 4, 3, 6, 7)
    crf = nn.SegAwareCRF(4, bilateral_ksize=3, bilateral_dilation=2, spatial_ksize=3,
                         iterations=2, lam_init=0.5, w_b_init=2.0, w_s_init=0.5,
                         spatial_sigma_init=1.5).double()
    assert [n for n, _ in crf.named_parameters()] == ["lam", "w_b", "w_s", "spatial_sigma",
                                                      "compat"]
    np.testing.assert_array_equal(crf.compat.data, np.eye(4))
    out = crf(Tensor(U), Tensor(e))
    assert out.shape == U.shape and out.dtype == np.float64
    ref = naive_crf(U, e, 0.5, 2.0, 0.5, 1.5, np.eye(4), 3, 2, 3, 1, 2, "l1")
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("norm,sigma_b", [("l1", 1.7), ("l2", 0.6)])
def test_bilateral_position_term_matches_naive(norm, sigma_b):
    rng = np.random.default_rng(11)
    U, e, compat = inputs(rng, 2, 3, 2, 6, 7)
    kw = dict(bilateral_ksize=5, bilateral_dilation=1, spatial_ksize=3, spatial_dilation=1,
              iterations=2, norm=norm)
    got = F.segaware_crf(U, e, 0.8, 1.3, 0.7, 1.4, compat, bilateral_sigma=sigma_b, **kw)
    ref = naive_crf(U, e, 0.8, 1.3, 0.7, 1.4, compat, 5, 1, 3, 1, 2, norm, sigma_b)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-12)
    # the position term changes the result (the check can fail)
    plain = F.segaware_crf(U, e, 0.8, 1.3, 0.7, 1.4, compat, **kw).numpy()
    assert np.abs(plain - ref).max() > 1e-3


def test_module_bilateral_sigma_parameter():
    rng = np.random.default_rng(12)
    U, e, _ = inputs(rng, 1, 3, 2, 6, 5)
    crf = nn.SegAwareCRF(3, bilateral_ksize=3, bilateral_dilation=2, spatial_ksize=3,
                         bilateral_sigma_init=2.5).double()
    assert [n for n, _ in crf.named_parameters()][-1] == "bilateral_sigma"
    ref = naive_crf(U, e, 1.0, 1.0, 1.0, 1.0, np.eye(3), 3, 2, 3, 1, 2, "l1", 2.5)
    np.testing.assert_allclose(crf(Tensor(U), Tensor(e)).numpy(), ref, rtol=1e-10,
                               atol=1e-12)
    crf.bilateral_sigma.data[...] = -1.0
    crf.bilateral_sigma.apply_constraint()
    assert float(crf.bilateral_sigma.data) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="bilateral_sigma_init"):
        nn.SegAwareCRF(3, bilateral_sigma_init=0.0)


def test_iterations_zero_returns_unaries():
    rng = np.random.default_rng(4)
    U, e, _ = inputs(rng)
    np.testing.assert_array_equal(F.segaware_crf(U, e, iterations=0).numpy(), U)


# ---- gradients --------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["l1", "l2", "l2sq"])
def test_gradcheck_all_inputs(norm):
    rng = np.random.default_rng(5)
    U, e, compat = inputs(rng)

    def crf(U, e, lam, w_b, w_s, sigma, compat):
        return F.segaware_crf(U, e, lam, w_b, w_s, sigma, compat, bilateral_ksize=3,
                              bilateral_dilation=2, spatial_ksize=3, iterations=2, norm=norm)

    grads = check_grad(crf, [U, e, 0.7, 1.2, 0.8, 1.3, compat], atol=1e-7, rtol=1e-5)
    assert all(np.any(g) for g in grads)  # every input really reaches the output


def test_gradcheck_bilateral_sigma():
    rng = np.random.default_rng(13)
    U, e, compat = inputs(rng)

    def crf(U, e, lam, sigma_b):
        return F.segaware_crf(U, e, lam, 1.2, 0.8, 1.3, compat, bilateral_ksize=3,
                              bilateral_dilation=2, spatial_ksize=3, iterations=2,
                              bilateral_sigma=sigma_b)

    grads = check_grad(crf, [U, e, 0.7, 1.9], atol=1e-7, rtol=1e-5)
    assert all(np.any(g) for g in grads)


def test_gradcheck_constant_embeddings_and_wide_window():
    # Constant embeddings (every distance 0, the 'l2' kink) and the default 13x13 window
    # at dilation 9 that mostly falls outside the image: finite, correct gradients.
    rng = np.random.default_rng(6)
    U, _, compat = inputs(rng, 1, 2, 2, 5, 6)
    e = np.ones((1, 2, 5, 6))

    def crf(U, e, lam, sigma, compat):
        return F.segaware_crf(U, e, lam, 1.1, 0.9, sigma, compat, norm="l2")

    grads = check_grad(crf, [U, e, 0.6, 1.2, compat[:2, :2]], atol=1e-7, rtol=1e-5)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_module_gradients_reach_every_parameter():
    rng = np.random.default_rng(7)
    U, e, _ = inputs(rng, 1, 3, 4, 8, 9)
    crf = nn.SegAwareCRF(3, bilateral_ksize=5, bilateral_dilation=2, spatial_ksize=3)
    Ut = Tensor(U.astype(np.float32), requires_grad=True)
    et = Tensor(e.astype(np.float32), requires_grad=True)
    out = crf(Ut, et)
    assert out.dtype == np.float32
    (out * Tensor(rng.normal(size=U.shape).astype(np.float32))).sum().backward()
    for t in [Ut, et] + list(crf.parameters()):
        assert t.grad is not None and t.grad.dtype == np.float32 and t.grad.shape == t.shape
        assert np.all(np.isfinite(t.grad)) and np.any(t.grad)


# ---- the sign convention -------------------------------------------------------------------
def test_identity_compat_is_potts_up_to_a_constant():
    # Potts pays 1 for each disagreeing neighbour: logits = U - sum_{l' != l} msg[l'].
    # The identity gives U + msg[l], which differs by sum_l' msg[l'], the same for every
    # label, so the posteriors agree.
    rng = np.random.default_rng(8)
    U, e, _ = inputs(rng, 1, 4, 3, 7, 8)
    kw = dict(lam=0.3, w_b=1.5, w_s=0.8, spatial_sigma=1.2, bilateral_ksize=3,
              bilateral_dilation=2, spatial_ksize=3, iterations=3)
    q_id = softmax(F.segaware_crf(U, e, compat=None, **kw).numpy())
    q_potts = softmax(F.segaware_crf(U, e, compat=np.eye(4) - 1, **kw).numpy())
    np.testing.assert_allclose(q_id, q_potts, atol=1e-5)


def test_crf_cleans_noisy_unaries_along_embedding_edges():
    # Two regions; unaries right on about 70% of pixels; embeddings that separate the regions.
    rng = np.random.default_rng(9)
    H = W = 16
    truth = np.zeros((1, H, W), dtype=int)
    truth[:, :, 7:] = 1
    flip = rng.random((1, H, W)) < 0.3
    noisy = np.where(flip, 1 - truth, truth)
    U = np.stack([noisy == 0, noisy == 1], axis=1).astype(np.float64)
    e = 3.0 * truth[:, None].astype(np.float64)
    out = F.segaware_crf(U, e, lam=2.0, w_b=3.0, w_s=0.0, bilateral_ksize=5,
                         bilateral_dilation=1, iterations=5).numpy()
    acc_before = (U.argmax(axis=1) == truth).mean()
    acc_after = (out.argmax(axis=1) == truth).mean()
    assert acc_before < 0.8 and acc_after == 1.0


# ---- parameters and constraints ---------------------------------------------------------
def test_constraints_keep_lam_and_sigma_valid():
    crf = nn.SegAwareCRF(2, bilateral_ksize=3, bilateral_dilation=1, spatial_ksize=3,
                         dtype=np.float64)
    rng = np.random.default_rng(10)
    U, e, _ = inputs(rng, 1, 2, 2, 5, 5)
    crf.lam.data[...] = 0.05
    crf.spatial_sigma.data[...] = 0.15
    opt = SGD(crf.parameters(), lr=100.0)
    out = crf(U, e)
    # A huge step whose signs push lam and sigma below their bounds.
    crf.zero_grad()
    (out * Tensor(rng.normal(size=out.shape))).sum().backward()
    crf.lam.grad = np.ones(())
    crf.spatial_sigma.grad = np.ones(())
    opt.step()
    assert crf.lam.item() == 0.0
    assert crf.spatial_sigma.item() == pytest.approx(0.1)
    assert np.all(np.isfinite(crf(U, e).numpy()))


# ---- Caffe's (L, L) filter weights (docs/caffe.md) -------------------------------------
def filter_matrices(rng, L):
    """Two (L, L) filter weights far from diagonal, so that mixing labels shows."""
    return (np.eye(L) + 0.4 * rng.normal(size=(L, L)),
            0.6 * np.eye(L) + 0.4 * rng.normal(size=(L, L)))


@pytest.mark.parametrize("iterations,norm", [(1, "l1"), (2, "l2sq"), (3, "l2")])
def test_matrix_filter_weights_match_naive(iterations, norm):
    rng = np.random.default_rng(20 + iterations)
    U, e, compat = inputs(rng, 2, 3, 2, 6, 7)
    W_b, W_s = filter_matrices(rng, 3)
    got = F.segaware_crf(U, e, 0.8, W_b, W_s, 1.4, compat, 3, 2, 3, 1, iterations, norm,
                         bilateral_sigma=1.7)
    ref = naive_crf(U, e, 0.8, W_b, W_s, 1.4, compat, 3, 2, 3, 1, iterations, norm, 1.7)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-12)
    # the off-diagonal entries matter (the check can fail)
    diag = naive_crf(U, e, 0.8, np.diag(np.diag(W_b)), np.diag(np.diag(W_s)), 1.4, compat,
                     3, 2, 3, 1, iterations, norm, 1.7)
    assert np.abs(diag - ref).max() > 1e-3


def test_diagonal_matrices_equal_scalar_weights():
    rng = np.random.default_rng(23)
    U, e, compat = inputs(rng, 2, 4, 3, 7, 6)
    kw = dict(lam=0.6, spatial_sigma=1.3, compat=compat, bilateral_ksize=3,
              bilateral_dilation=2, spatial_ksize=3, iterations=3)
    scalar = F.segaware_crf(U, e, w_b=1.7, w_s=0.4, **kw).numpy()
    matrix = F.segaware_crf(U, e, w_b=1.7 * np.eye(4), w_s=0.4 * np.eye(4), **kw).numpy()
    np.testing.assert_allclose(matrix, scalar, rtol=1e-13, atol=1e-13)
    mixed = F.segaware_crf(U, e, w_b=1.7, w_s=0.4 * np.eye(4), **kw).numpy()
    np.testing.assert_allclose(mixed, scalar, rtol=1e-13, atol=1e-13)


def test_gradcheck_matrix_filter_weights():
    rng = np.random.default_rng(24)
    U, e, compat = inputs(rng)
    W_b, W_s = filter_matrices(rng, 3)

    def crf(U, e, lam, W_b, W_s, sigma, compat, sigma_b):
        return F.segaware_crf(U, e, lam, W_b, W_s, sigma, compat, bilateral_ksize=3,
                              bilateral_dilation=2, spatial_ksize=3, iterations=2,
                              norm="l2sq", bilateral_sigma=sigma_b)

    grads = check_grad(crf, [U, e, 0.7, W_b, W_s, 1.3, compat, 1.9], atol=1e-7, rtol=1e-5)
    assert all(np.any(g) for g in grads)
    assert grads[3].shape == grads[4].shape == (3, 3)


def test_module_matrix_filter_weights():
    rng = np.random.default_rng(25)
    U, e, _ = inputs(rng, 2, 3, 2, 6, 5)
    crf = nn.SegAwareCRF(3, bilateral_ksize=3, bilateral_dilation=2, spatial_ksize=3,
                         w_b_init=1.5, w_s_init=0.5, filter_weights="matrix").double()
    assert [n for n, _ in crf.named_parameters()] == ["lam", "w_b", "w_s", "spatial_sigma",
                                                      "compat"]
    np.testing.assert_array_equal(crf.w_b.data, 1.5 * np.eye(3))
    np.testing.assert_array_equal(crf.w_s.data, 0.5 * np.eye(3))
    assert "filter_weights='matrix'" in repr(crf)
    # at the start it is the scalar CRF
    ref = naive_crf(U, e, 1.0, 1.5, 0.5, 1.0, np.eye(3), 3, 2, 3, 1, 2, "l1")
    np.testing.assert_allclose(crf(Tensor(U), Tensor(e)).numpy(), ref, rtol=1e-10,
                               atol=1e-12)
    W_b, W_s = filter_matrices(rng, 3)
    crf.w_b.data[...], crf.w_s.data[...] = W_b, W_s
    ref = naive_crf(U, e, 1.0, W_b, W_s, 1.0, np.eye(3), 3, 2, 3, 1, 2, "l1")
    out = crf(Tensor(U), Tensor(e))
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)
    (out * Tensor(rng.normal(size=out.shape))).sum().backward()
    assert crf.w_b.grad.shape == crf.w_s.grad.shape == (3, 3)
    assert np.all(np.isfinite(crf.w_b.grad)) and np.any(crf.w_s.grad)
    scalar = nn.SegAwareCRF(3)
    assert scalar.w_b.shape == () and "filter_weights" not in repr(scalar)
    with pytest.raises(ValueError, match="SegAwareCRF: filter_weights must be 'scalar'"):
        nn.SegAwareCRF(3, filter_weights="diagonal")


# ---- bad input ---------------------------------------------------------------------------
def test_bad_input():
    rng = np.random.default_rng(11)
    U, e, _ = inputs(rng, 1, 3, 2, 5, 6)
    with pytest.raises(ValueError, match=r"segaware_crf: embeddings must be \(N, D, H, W\) "
                                         r"with the N, H, W of U \(1, 3, 5, 6\); got e of "
                                         r"shape \(1, 2, 6, 5\)"):
        F.segaware_crf(U, e.transpose(0, 1, 3, 2))
    with pytest.raises(ValueError, match=r"segaware_crf: U must be \(N, L, H, W\); got shape"):
        F.segaware_crf(U[0], e)
    with pytest.raises(ValueError, match=r"segaware_crf: embeddings must be \(N, D, H, W\) "
                                         r".*got e of shape \(2, 5, 6\)"):
        F.segaware_crf(U, e[0])
    with pytest.raises(ValueError, match=r"segaware_crf: compat must be \(L, L\) = \(3, 3\)"):
        F.segaware_crf(U, e, compat=np.eye(2))
    with pytest.raises(TypeError, match="segaware_crf: compat must have U's dtype float64"):
        F.segaware_crf(U, e, compat=np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"segaware_crf: w_b must be \(L, L\) = \(3, 3\); "
                                         r"got shape \(2, 2\)"):
        F.segaware_crf(U, e, w_b=np.eye(2))
    with pytest.raises(TypeError, match="segaware_crf: w_s must have U's dtype float64"):
        F.segaware_crf(U, e, w_s=np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"segaware_crf: w_s must be a float, a 0-d Tensor "
                                         r"or an \(L, L\) = \(3, 3\) matrix; got shape \(3,\)"):
        F.segaware_crf(U, e, w_s=Tensor(np.ones(3)))
    with pytest.raises(ValueError, match="segaware_crf: spatial_sigma .* must be > 0; got 0"):
        F.segaware_crf(U, e, spatial_sigma=0.0)
    with pytest.raises(ValueError, match="lam .* must be >= 0; got -1"):
        F.segaware_crf(U, e, lam=-1.0)
    with pytest.raises(ValueError, match="segaware_crf: bilateral_ksize must be an odd"):
        F.segaware_crf(U, e, bilateral_ksize=4)
    with pytest.raises(ValueError, match="segaware_crf: iterations must be an int >= 0"):
        F.segaware_crf(U, e, iterations=-1)
    with pytest.raises(TypeError, match="segaware_crf: expected one floating dtype for U, e"):
        F.segaware_crf(U, e.astype(np.float32))
    with pytest.raises(ValueError, match=r"SegAwareCRF: U must be \(N, L, H, W\) with L = "
                                         r"num_classes = 4; got shape \(1, 3, 5, 6\)"):
        nn.SegAwareCRF(4).double()(U, e)
    with pytest.raises(ValueError, match="SegAwareCRF: spatial_ksize must be an odd"):
        nn.SegAwareCRF(3, spatial_ksize=2)
    with pytest.raises(ValueError, match="SegAwareCRF: lam_init must be a float >= 0.0"):
        nn.SegAwareCRF(3, lam_init=-0.5)
