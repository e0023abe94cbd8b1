"""Metrics against hand-computed cases."""
import numpy as np
import pytest

from segnp import metrics


def test_confusion_and_miou_by_hand():
    labels = np.array([[0, 0, 1, 1], [0, 255, 1, 2]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 2, 2]])
    conf = metrics.confusion_matrix(pred, labels, 3)
    # class 0: 3 true, 2 right, 1 -> 1; class 1: 3 true, 2 right, 1 -> 2; class 2: 1 right
    np.testing.assert_array_equal(conf, [[2, 1, 0], [0, 2, 1], [0, 0, 1]])
    assert metrics.pixel_accuracy(conf) == pytest.approx(5 / 7)
    # IoU0 = 2/3, IoU1 = 2/(3+3-2) = 1/2, IoU2 = 1/(2+1-1) = 1/2
    assert metrics.miou(conf) == pytest.approx((2 / 3 + 0.5 + 0.5) / 3)


def test_miou_skips_absent_classes():
    labels = np.zeros((1, 4), dtype=np.int64)
    conf = metrics.confusion_matrix(labels.copy(), labels, 5)
    assert metrics.miou(conf) == 1.0


def test_trimap_on_two_region_image():
    # Left half class 0, right half class 1, 8 wide: the boundary pixels are columns 3, 4.
    labels = np.zeros((1, 6, 8), dtype=np.int64)
    labels[:, :, 4:] = 1
    pred = labels.copy()
    pred[:, :, 2] = 1  # wrong column at distance 1 from the boundary
    dist = metrics.boundary_distance(labels)
    np.testing.assert_array_equal(dist[0, 0], [3, 2, 1, 0, 0, 1, 2, 3])
    scores = metrics.trimap_scores(pred, labels, 2, widths=[0, 1, 3])
    # w=0: columns 3, 4 only, all right
    assert scores[0][0] == 1.0
    # w=1: columns 2..5 (24 px), column 2 wrong (6 px)
    assert scores[1][0] == pytest.approx(18 / 24)
    # IoU0 = 6 / (12 + 6) ... class 0 true px in band: cols 2,3 = 12, right 6; pred0 = 6
    # IoU0 = 6 / (12 + 6 - 6) = 1/2 ; class 1: true 12, pred 18, inter 12 -> 12/18
    assert scores[1][1] == pytest.approx((0.5 + 12 / 18) / 2)
    # w=3: whole image (48 px), 6 wrong
    assert scores[3][0] == pytest.approx(42 / 48)


def test_trimap_ignores_void_pixels_but_they_mark_boundaries():
    labels = np.zeros((1, 1, 7), dtype=np.int64)
    labels[0, 0, 3] = 255
    labels[0, 0, 4:] = 1
    dist = metrics.boundary_distance(labels)
    np.testing.assert_array_equal(dist[0, 0], [2, 1, 0, 0, 0, 1, 2])
    scores = metrics.trimap_scores(labels.copy() % 255 * (labels != 255), labels, 2, widths=[0])
    assert scores[0][0] == 1.0  # the void pixel is not counted


def test_epe_and_aae_by_hand():
    gt = np.zeros((1, 2, 1, 2))
    pred = np.zeros((1, 2, 1, 2))
    pred[0, :, 0, 0] = (3.0, 4.0)
    assert metrics.end_point_error(pred, gt) == pytest.approx(2.5)
    # (3, 4, 1) vs (0, 0, 1): cos = 1/sqrt(26)
    expected = np.degrees(np.arccos(1 / np.sqrt(26))) / 2
    assert metrics.angular_error(pred, gt) == pytest.approx(expected)


def test_bad_inputs_name_the_function():
    with pytest.raises(ValueError, match=r"confusion_matrix: labels must be in \[0, 2\) or 255; got 7"):
        metrics.confusion_matrix(np.zeros(3, int), np.array([0, 7, 1]), 2)
    with pytest.raises(ValueError, match="confusion_matrix: pred and labels must have one shape"):
        metrics.confusion_matrix(np.zeros(3, int), np.zeros(4, int), 2)
    with pytest.raises(TypeError, match="confusion_matrix: pred must be an integer array"):
        metrics.confusion_matrix(np.zeros(3), np.zeros(3, int), 2)
    with pytest.raises(ValueError, match=r"end_point_error: flows must both be \(N, 2, H, W\)"):
        metrics.end_point_error(np.zeros((1, 3, 2, 2)), np.zeros((1, 3, 2, 2)))
