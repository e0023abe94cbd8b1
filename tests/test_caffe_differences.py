"""Pins for the places where segnp departs from the authors' Caffe layers on purpose
(docs/caffe.md, one test per item there): the embedding loss's normalisation, gradient,
borders and void pixels; taps outside the image in the normalised convolution; lam's
sign; Caffe's 'L2' distance; and the CRF, against a loop written from the released
Caffe layer, which the (L, L) filter-weight option reproduces.

The loss and convolution tests state segnp's value from the equation, worked by hand on
a tiny input, and, where it helps, Caffe's value for the same input.  The CRF tests
compare segnp with the loop.
"""
import itertools

import numpy as np
import pytest
from test_crf import filter_matrices, inputs, naive_crf, softmax

import segnp.functions as F
from segnp import nn
from segnp.autograd import Tensor
from segnp.window import NORM_EPS


def row(values):
    """A (1, 1, 1, len) array: one image, one channel, one row of pixels."""
    return np.asarray(values, dtype=np.float64).reshape(1, 1, 1, -1)


# ---- the embedding loss (Sec. 3.1) -------------------------------------------------------
def test_loss_is_the_mean_hinge_over_counted_pairs_and_its_gradient():
    # One row of 3 pixels, labels 0 0 1, embeddings 0, 2.5, 2; a 3x3 window at dilation 1
    # pairs each pixel with its left and right neighbours only (the other taps lie
    # outside): 4 ordered pairs.  (0, 1) agree at d = 2.5: hinge 2.5 - 0.5 = 2;
    # (1, 2) differ at d = 0.5: hinge 2 - 0.5 = 1.5.
    e = Tensor(row([0.0, 2.5, 2.0]), requires_grad=True)
    labels = np.array([[[0, 0, 1]]])
    loss = F.embedding_loss(e, labels, ksize=3, dilations=(1,), alpha=0.5, beta=2.0)
    assert loss.item() == pytest.approx((2 * 2.0 + 2 * 1.5) / 4, abs=1e-15)
    loss.backward()
    # d loss / d hinge = 1 / 4 per ordered pair, 2 ordered pairs per neighbour pair;
    # d hinge / d e_0 = -1 (same label, e_0 < e_1), d hinge / d e_2 = +1 (different
    # labels, pulling e_2 away from e_1 = 2.5).
    np.testing.assert_allclose(e.grad.ravel(), [-0.5, 0.0, 0.5], atol=1e-15)
    # Caffe's backward, the gradient of 1/2 hinge^2, weighs each term by its own hinge:
    # (-1.0, 0.25, 0.75) here.  Its forward divides by N K H W = 27 and adds 2 (= beta)
    # for each of the 7 taps of pixel 2 outside the image (label 0 there, distance 0):
    # (7 + 14) / 27.


def test_void_pixels_are_in_no_pair():
    # labels 0 255 1: at dilation 1 every pair touches the void pixel, so nothing is
    # counted (the loss is 0); at dilation 2 only (0, 2) is, and the void pixel's
    # embedding gets no gradient.  The released Caffe config treats 255 as a label.
    labels = np.array([[[0, 255, 1]]])
    e = Tensor(row([0.0, 0.1, 0.3]), requires_grad=True)
    assert F.embedding_loss(e, labels, dilations=(1,)).item() == 0.0
    loss = F.embedding_loss(e, labels, dilations=(2,), alpha=0.5, beta=2.0)
    assert loss.item() == pytest.approx(2.0 - 0.3, abs=1e-15)
    loss.backward()
    np.testing.assert_allclose(e.grad.ravel(), [1.0, 0.0, -1.0], atol=1e-15)


# ---- the segmentation-aware convolution (Eqs. 3, 7) --------------------------------------
def test_taps_outside_the_image_count_nowhere_in_the_normalised_convolution():
    # x = 1 everywhere, lam = 0 (every mask weight 1), W = ones(3, 3): the normalised
    # output is 1 at every pixel (a corner averages its 4 valid taps).  Caffe's NormConv
    # by default gives the 5 outside taps of a corner weight 1 and value 0: 4 / 9.
    x = np.ones((1, 1, 4, 5))
    e = np.zeros((1, 2, 4, 5))
    W = np.ones((1, 1, 3, 3))
    y = F.segaware_conv2d(x, e, W, lam=0.0, normalize=True).numpy()
    assert y[0, 0, 0, 0] == pytest.approx(4 / (4 + NORM_EPS), rel=1e-15)
    assert y[0, 0, 1, 1] == pytest.approx(9 / (9 + NORM_EPS), rel=1e-15)
    # Unnormalised (the released VGG network's form): zero padding, 4 at a corner.
    y = F.segaware_conv2d(x, e, W, lam=0.0, normalize=False).numpy()
    assert y[0, 0, 0, 0] == 4.0 and y[0, 0, 1, 1] == 9.0


def test_lam_must_be_nonnegative_where_caffe_takes_its_absolute_value():
    e = row([0.0, 1.0, 3.0])
    m = F.segaware_mask(e, 0.05, 3).numpy()
    # the centre pixel's taps: left at d = 1, itself, right at d = 2 (row 1 of 3x3)
    np.testing.assert_allclose(m[0, 3:6, 0, 1], np.exp(-0.05 * np.array([1.0, 0.0, 2.0])),
                               rtol=1e-15)
    with pytest.raises(ValueError, match="lam .* must be >= 0"):
        F.segaware_mask(e, -0.05, 3)


def test_caffe_l2_is_half_of_segnp_l2sq():
    # Caffe's Im2dist and NormConv 'L2' is 1/2 ||delta||^2; segnp's 'l2sq' is ||delta||^2
    # and 'l2' is ||delta||.  delta = (3, 4) between the two pixels.
    e = np.zeros((1, 2, 1, 2))
    e[0, :, 0, 1] = (3.0, 4.0)
    right = 5   # tap (1, 2) of the 3x3 window: the right neighbour
    assert F.im2dist(e, 3, norm="l2sq").numpy()[0, right, 0, 0] == 25.0
    assert F.im2dist(e, 3, norm="l2").numpy()[0, right, 0, 0] == 5.0


# ---- the CRF (Sec. 3.3): the released NormConvMeanfield, written from its layers ------
def caffe_filter(Q, feat, ksize, dilation, eps=0.0):
    """Caffe's normalised filter with the centre and the taps outside the image removed:
    weights softmax_j(-1/2 ||feat_i - feat_j||^2) over the valid taps j; a window
    without a valid tap gives every one of its K taps the weight 1/K, and only its
    centre holds data (the others are zero padding), so its output is Q_i / K.
    ``eps`` > 0 adds eps to the sum of the unshifted weights, as segnp does."""
    N, _, H, W = Q.shape
    out = np.zeros_like(Q)
    r = ksize // 2
    for n, i, j in itertools.product(range(N), range(H), range(W)):
        taps = [(i + (a - r) * dilation, j + (b - r) * dilation)
                for a, b in itertools.product(range(ksize), range(ksize)) if (a, b) != (r, r)]
        taps = [(ti, tj) for ti, tj in taps if 0 <= ti < H and 0 <= tj < W]
        if not taps:
            out[n, :, i, j] = Q[n, :, i, j] / ksize ** 2
            continue
        z = np.array([-0.5 * np.sum((feat[n, :, i, j] - feat[n, :, ti, tj]) ** 2)
                      for ti, tj in taps])
        w = np.exp(z - z.max())
        w /= w.sum() + (eps * np.exp(-z.max()) if eps else 0.0)
        out[n, :, i, j] = sum(wk * Q[n, :, ti, tj] for wk, (ti, tj) in zip(w, taps))
    return out


def caffe_crf(U, e, scale_e, scale_xy, scale_xy2, K_b, K_s, M, bk, bd, sk, sd, iterations,
              eps=0.0):
    """The released NormConvMeanfield: bilateral features [scale_e e, scale_xy xy],
    spatial features scale_xy2 xy, logits = U - M (K_s S(Q) + K_b B(Q))."""
    N, _, H, W = U.shape
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    xy = np.broadcast_to(np.stack([cols, rows]).astype(float), (N, 2, H, W))
    f_b = np.concatenate([scale_e * e, scale_xy * xy], axis=1)
    logits = U
    for _ in range(iterations):
        Q = softmax(logits)
        msg = (np.einsum("lk,nkhw->nlhw", K_s, caffe_filter(Q, scale_xy2 * xy, sk, sd, eps))
               + np.einsum("lk,nkhw->nlhw", K_b, caffe_filter(Q, f_b, bk, bd, eps)))
        logits = U - np.einsum("lk,nkhw->nlhw", M, msg)
    return logits


def caffe_settings(scale_e, scale_xy, scale_xy2, K_b, K_s, M):
    """segnp's arguments for the Caffe CRF: exp(-1/2 a^2 ||d||^2) is 'l2sq' with
    lam = a^2 / 2, a Gaussian of bandwidth 1 / a; logits = U + (-M) (...)."""
    return dict(lam=0.5 * scale_e ** 2, w_b=K_b, w_s=K_s, spatial_sigma=1 / scale_xy2,
                compat=-M, norm="l2sq", bilateral_sigma=1 / scale_xy)


def test_matrix_option_reproduces_the_caffe_crf():
    rng = np.random.default_rng(26)
    U, e, _ = inputs(rng, 2, 3, 2, 7, 8)
    e *= 0.4            # keep every window's weights far above NORM_EPS (see below)
    K_b, K_s = filter_matrices(rng, 3)
    M = -np.eye(3) + 0.3 * rng.normal(size=(3, 3))
    scales = (1.5, 0.3, 0.5)
    ref = caffe_crf(U, e, *scales, K_b, K_s, M, 3, 2, 5, 1, 2)
    got = F.segaware_crf(U, e, bilateral_ksize=3, bilateral_dilation=2, spatial_ksize=5,
                         spatial_dilation=1, iterations=2,
                         **caffe_settings(*scales, K_b, K_s, M)).numpy()
    # segnp divides by sum + NORM_EPS where Caffe divides by the sum (3e-6 here) ...
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    assert np.abs(got - ref).max() > 1e-9
    # ... and that is the only difference
    ref = caffe_crf(U, e, *scales, K_b, K_s, M, 3, 2, 5, 1, 2, eps=NORM_EPS)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    # Caffe's defaults: K_b = K_s = I, M = -I, i.e. segnp's w_b = w_s = 1, compat = I
    ref = caffe_crf(U, e, *scales, np.eye(3), np.eye(3), -np.eye(3), 3, 2, 5, 1, 2)
    got = F.segaware_crf(U, e, bilateral_ksize=3, bilateral_dilation=2, spatial_ksize=5,
                         iterations=2, **caffe_settings(*scales, 1.0, 1.0, -np.eye(3)))
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-5)


def test_documented_setting_reproduces_the_released_crf_at_its_start():
    # docs/caffe.md, "The setting that reproduces the released CRF": Caffe's initial
    # values (scales 200, 0.05, 0.05; K_b = K_s = I; M = -I) and windows, on embeddings
    # close enough (|de| ~ 0.003) that the bilateral weights stay far above NORM_EPS,
    # and an image 18 rows high, so that every pixel has another 9 rows away (a
    # window without a valid tap is the difference pinned in the next test).
    rng = np.random.default_rng(29)
    U, _, _ = inputs(rng, 1, 3, 2, 18, 7)
    e = 0.002 * rng.normal(size=(1, 2, 18, 7))
    crf = nn.SegAwareCRF(3, bilateral_ksize=13, bilateral_dilation=9, spatial_ksize=5,
                         spatial_dilation=1, iterations=2, filter_weights="matrix",
                         norm="l2sq", lam_init=0.5 * 200 ** 2, bilateral_sigma_init=1 / 0.05,
                         spatial_sigma_init=1 / 0.05, w_b_init=1.0, w_s_init=1.0).double()
    ref = caffe_crf(U, e, 200.0, 0.05, 0.05, np.eye(3), np.eye(3), -np.eye(3), 13, 9, 5, 1,
                    2)
    got = crf(Tensor(U), Tensor(e)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    ref = caffe_crf(U, e, 200.0, 0.05, 0.05, np.eye(3), np.eye(3), -np.eye(3), 13, 9, 5, 1,
                    2, eps=NORM_EPS)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_window_without_valid_tap_sends_no_message():
    # A 3x3 bilateral window at dilation 9 on a 5x6 image: every tap but the centre lies
    # outside.  segnp's normalised filter then gives 0 (nothing to average), so w_b has
    # no effect; Caffe's gives Q_i / K (its removed taps all tie in its softmax).
    rng = np.random.default_rng(27)
    U, e, _ = inputs(rng, 1, 3, 2, 5, 6)
    kw = dict(lam=0.5, w_s=0.8, spatial_sigma=1.2, bilateral_ksize=3, bilateral_dilation=9,
              spatial_ksize=3, iterations=2, norm="l2sq")
    a = F.segaware_crf(U, e, w_b=1.0, **kw).numpy()
    b = F.segaware_crf(U, e, w_b=7.0, **kw).numpy()
    np.testing.assert_array_equal(a, b)
    ref = naive_crf(U, e, 0.5, 0.0, 0.8, 1.2, np.eye(3), 3, 9, 3, 1, 2, "l2sq")
    np.testing.assert_allclose(a, ref, rtol=1e-10, atol=1e-12)
    caffe = caffe_crf(U, e, 1.0, 0.05, 1 / 1.2, np.eye(3), 0.8 * np.eye(3), -np.eye(3),
                      3, 9, 3, 1, 2)
    assert np.abs(caffe - a).max() > 1e-2


def test_far_neighbours_fade_where_caffe_keeps_the_nearest():
    # Every neighbour far in embedding space: segnp's weights exp(-lam d) all underflow
    # next to NORM_EPS and the bilateral message fades to 0; Caffe's softmax over taps
    # still gives the nearest neighbour weight about 1.
    rng = np.random.default_rng(28)
    U, _, _ = inputs(rng, 1, 3, 2, 4, 5)
    e = 10.0 * rng.normal(size=(1, 2, 4, 5))
    kw = dict(w_s=0.0, bilateral_ksize=3, bilateral_dilation=1, spatial_ksize=3,
              iterations=1, norm="l2sq")
    faded = F.segaware_crf(U, e, lam=50.0, w_b=1.0, **kw).numpy()
    np.testing.assert_allclose(faded, U, atol=1e-6)
    caffe = caffe_crf(U, e, 10.0, 1e-3, 1.0, np.eye(3), 0 * np.eye(3), -np.eye(3),
                      3, 1, 3, 1, 1)
    assert np.abs(caffe - U).max() > 0.1
