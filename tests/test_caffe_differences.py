"""Pins for the places where segnp departs from the authors' Caffe layers on purpose
(docs/caffe.md, one test per item there): the embedding loss's normalisation, gradient,
borders and void pixels; taps outside the image in the normalised convolution; lam's
sign; Caffe's 'L2' distance.  The CRF's items are in tests/test_crf.py.

Each test states segnp's value from the equation, worked by hand on a tiny input, and,
where it helps, Caffe's value for the same input, so that a change to either side of
the choice shows here.
"""
import numpy as np
import pytest

import segnp.functions as F
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
