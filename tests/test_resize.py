"""resize_bilinear against a per-pixel loop written from PyTorch's definition
(F.interpolate(mode='bilinear') with an explicit size):

    align_corners=True:  src = o * (in - 1) / (out - 1)   (0 when out == 1)
    align_corners=False: src = max((o + 0.5) * in / out - 0.5, 0)
    i0 = floor(src), i1 = min(i0 + 1, in - 1), lam = src - i0,
    value = (1 - lam) * v[i0] + lam * v[i1], along rows and then columns.
"""
import math

import numpy as np
import pytest

import segnp
import segnp.functions as F
from segnp.gradcheck import check_grad

SIZES = [((5, 7), (11, 13)), ((9, 8), (4, 3)), ((1, 1), (3, 4)), ((4, 5), (1, 1)),
         ((6, 5), (6, 5)), ((3, 7), (8, 2)), ((2, 9), (2, 17))]


def _source(o, n_in, n_out, align_corners):
    if align_corners:
        src = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        src = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = min(int(math.floor(src)), n_in - 1)
    return i0, min(i0 + 1, n_in - 1), src - i0


def naive_resize(x, size, align_corners):
    N, C, H, W = x.shape
    OH, OW = size
    y = np.zeros((N, C, OH, OW))
    for oh in range(OH):
        r0, r1, a = _source(oh, H, OH, align_corners)
        for ow in range(OW):
            q0, q1, b = _source(ow, W, OW, align_corners)
            y[:, :, oh, ow] = ((1 - a) * ((1 - b) * x[:, :, r0, q0] + b * x[:, :, r0, q1])
                               + a * ((1 - b) * x[:, :, r1, q0] + b * x[:, :, r1, q1]))
    return y


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("src,dst", SIZES)
def test_matches_naive_loop(src, dst, align_corners):
    x = np.random.default_rng(0).standard_normal((2, 3) + src)
    y = F.resize_bilinear(x, dst, align_corners=align_corners)
    np.testing.assert_allclose(y.numpy(), naive_resize(x, dst, align_corners),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("src,dst", SIZES)
def test_gradients_float64(src, dst, align_corners):
    x = np.random.default_rng(1).standard_normal((2, 2) + src)
    check_grad(lambda t: F.resize_bilinear(t, dst, align_corners=align_corners), [x],
               max_elementwise=64)


def test_special_cases():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 5, 6))
    for ac in (False, True):  # same size is the identity in both modes
        np.testing.assert_allclose(F.resize_bilinear(x, (5, 6), ac).numpy(), x, atol=1e-14)
    y = F.resize_bilinear(x, (9, 11), align_corners=True).numpy()
    np.testing.assert_allclose(y[..., ::-8, ::-10], x[..., ::-4, ::-5], atol=1e-14)
    # Doubling without align_corners: output 0 clamps to pixel 0, output 1 is 3/4 + 1/4.
    y = F.resize_bilinear(x, (10, 12)).numpy()
    np.testing.assert_allclose(y[..., 0, 0], x[..., 0, 0], atol=1e-14)
    np.testing.assert_allclose(y[..., 1, 0], 0.75 * x[..., 0, 0] + 0.25 * x[..., 1, 0],
                               atol=1e-14)
    # A constant image stays constant at any size, in both modes.
    c = np.full((1, 1, 4, 3), 2.5)
    for ac in (False, True):
        np.testing.assert_allclose(F.resize_bilinear(c, 7, ac).numpy(), 2.5, atol=1e-14)


def test_int_size_and_float32():
    x = segnp.Tensor(np.random.default_rng(3).standard_normal((2, 3, 5, 4), dtype=np.float32),
                     requires_grad=True)
    y = F.resize_bilinear(x, 7)
    assert y.shape == (2, 3, 7, 7) and y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.shape == (2, 3, 5, 4)
    # Each output row and column distributes weights summing to one.
    np.testing.assert_allclose(x.grad.sum(axis=(2, 3)), 49.0, rtol=1e-5)


def test_bad_input_names_the_function_expected_and_given():
    x = np.zeros((1, 2, 4, 4))
    with pytest.raises(TypeError, match=r"resize_bilinear: x must be a floating-point array .*got dtype int64"):
        F.resize_bilinear(x.astype(np.int64), 8)
    with pytest.raises(ValueError, match=r"resize_bilinear: size must be >= 1; got \(0, 3\)"):
        F.resize_bilinear(x, (0, 3))
    with pytest.raises(TypeError, match=r"resize_bilinear: size must be an int or a pair of ints; got 2.0"):
        F.resize_bilinear(x, 2.0)
    with pytest.raises(ValueError, match=r"resize_bilinear: x must be \(N, C, H, W\); got shape \(2, 4, 4\)"):
        F.resize_bilinear(x[0], 8)
    with pytest.raises(TypeError, match=r"resize_bilinear: align_corners must be a bool; got 'yes'"):
        F.resize_bilinear(x, 8, align_corners="yes")


def test_interpolation_matrices_go_to_the_device_once_per_shape(monkeypatch):
    """The matrices are constants of (size, output size, dtype): a backend copies them
    to its device once and reuses them, like the window masks."""
    from segnp.backends.numpy import NumpyBackend
    b = NumpyBackend()
    copies = []
    real = b.asarray
    monkeypatch.setattr(b, "asarray", lambda a, dtype=None: (
        copies.append(np.shape(a)) if np.ndim(a) == 2 else None) or real(a, dtype))
    monkeypatch.setitem(segnp.backends._instances, "numpy-test", b)
    monkeypatch.setitem(segnp.backends._REGISTRY, "numpy-test", "unused:unused")
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 7))
    with segnp.using_backend("numpy-test"):
        ys = [F.resize_bilinear(x, (4, 9)).numpy() for _ in range(3)]
        F.resize_bilinear(x, (4, 8))  # another width: one more copy
    assert copies == [(4, 5), (9, 7), (8, 7)]
    for y in ys:
        np.testing.assert_array_equal(y, ys[0])
    np.testing.assert_allclose(ys[0], naive_resize(x, (4, 9), False), rtol=1e-12)
