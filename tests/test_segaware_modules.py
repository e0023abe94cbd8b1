"""segnp.nn.SegAwareConv2d and BilateralFilter: parameters, shapes, and the lam rule."""
import numpy as np
import pytest

import segnp
import segnp.functions as F
import segnp.nn as nn
from segnp import Tensor
from segnp.optim import SGD


def rng(seed=0):
    return np.random.default_rng(seed)


def two_regions(H=10, W=11, C=2, seed=0):
    """x flat on each side of a vertical edge plus noise; e separates the two sides."""
    r = rng(seed)
    x = np.zeros((1, C, H, W))
    x[:, :, :, W // 2:] = 3.0
    x += 0.1 * r.standard_normal(x.shape)
    e = np.zeros((1, 1, H, W))
    e[:, :, :, W // 2:] = 2.0
    return x, e


def test_segaware_conv2d_parameters_and_shapes():
    layer = nn.SegAwareConv2d(3, 5, 3, stride=2, rng=rng())
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias", "lam"]
    assert layer.weight.shape == (5, 3, 3, 3) and layer.bias.shape == (5,)
    assert layer.lam.shape == () and layer.lam.item() == 0.0
    assert layer.weight.dtype == layer.lam.dtype == np.float32
    x = Tensor(rng(1).standard_normal((2, 3, 9, 8)).astype(np.float32))
    e = Tensor(rng(2).standard_normal((2, 4, 9, 8)).astype(np.float32))
    y = layer(x, e)
    assert y.shape == (2, 5, 5, 4) and y.dtype == np.float32
    y.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())
    assert nn.SegAwareConv2d(3, 5, 5, dilation=2, bias=False, rng=rng())(x, e).shape \
        == (2, 5, 9, 8)


def test_segaware_conv2d_is_the_module_form_of_the_function():
    layer = nn.SegAwareConv2d(2, 3, 3, norm="l2", normalize=False, lam_init=0.4,
                              dtype=np.float64, rng=rng())
    x, e = rng(3).standard_normal((1, 2, 6, 7)), rng(4).standard_normal((1, 3, 6, 7))
    ref = F.segaware_conv2d(x, e, layer.weight.data, layer.bias.data, 0.4, norm="l2",
                            normalize=False)
    np.testing.assert_allclose(layer(Tensor(x), Tensor(e)).numpy(), ref.numpy(), rtol=1e-12)


def test_normalised_init_starts_as_the_he_convolution():
    # At lam = 0 an interior output divides by the k*k taps; the init multiplies them
    # back, so the layer equals conv2d with the He weight it was drawn from.
    layer = nn.SegAwareConv2d(4, 6, 3, dtype=np.float64, rng=rng(5))
    plain = nn.SegAwareConv2d(4, 6, 3, normalize=False, dtype=np.float64, rng=rng(5))
    np.testing.assert_allclose(layer.weight.data, 9 * plain.weight.data, rtol=1e-12)
    x = rng(6).standard_normal((1, 4, 8, 8))
    e = np.zeros((1, 1, 8, 8))
    a = layer(Tensor(x), Tensor(e)).numpy()[..., 1:-1, 1:-1]
    b = plain(Tensor(x), Tensor(e)).numpy()[..., 1:-1, 1:-1]
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_bilateral_filter_module():
    bf = nn.BilateralFilter(5, dilation=2, norm="l2sq", repeat=2, lam_init=0.5,
                            dtype=np.float64)
    assert [n for n, _ in bf.named_parameters()] == ["lam"]
    x, e = two_regions()
    y = bf(Tensor(x), Tensor(e))
    ref = F.segaware_bilateral(x, e, 0.5, 5, 2, "l2sq", repeat=2)
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-12)


def test_lam_constraint_clips_at_zero():
    layer = nn.BilateralFilter(3, lam_init=0.2, dtype=np.float64)
    layer.lam.data[...] = -0.7
    layer.lam.apply_constraint()
    assert layer.lam.item() == 0.0
    layer.lam.data[...] = 0.3
    layer.lam.apply_constraint()
    assert layer.lam.item() == 0.3


@pytest.mark.parametrize("make", [
    lambda: nn.BilateralFilter(5, lam_init=0.0, dtype=np.float64),
    lambda: nn.SegAwareConv2d(2, 2, 5, bias=False, lam_init=0.0, dtype=np.float64,
                              rng=rng(7)),
])
def test_lam_grows_from_zero_when_masking_helps(make):
    # Smoothing across the edge hurts; a mask that blocks the other region helps, so
    # one step from lam = 0 must increase lam.
    layer = make()
    if isinstance(layer, nn.SegAwareConv2d):
        w = np.zeros(layer.weight.shape)
        w[[0, 1], [0, 1]] = 1.0  # each channel averages itself: a box filter at lam = 0
        layer.weight.data[...] = w
    x, e = two_regions()
    opt = SGD(layer.parameters(), lr=0.05)
    before = None
    for _ in range(3):
        opt.zero_grad()
        loss = ((layer(Tensor(x), Tensor(e)) - x) ** 2).mean()
        loss.backward()
        assert layer.lam.grad < 0
        opt.step()
        before = loss.item() if before is None else before
    assert layer.lam.item() > 0
    assert loss.item() < before


def test_lam_stays_at_zero_when_masking_hurts():
    # The target extrapolates the filter to lam < 0 (2 y(0) - y(0.5)), a mask that
    # favours the other region: the step pushes lam below 0 and the constraint stops it
    # at 0.
    layer = nn.BilateralFilter(3, lam_init=0.0, dtype=np.float64)
    x, e = two_regions(seed=1)
    target = 2 * F.segaware_bilateral(x, e, 0.0, 3).numpy() \
        - F.segaware_bilateral(x, e, 0.5, 3).numpy()
    opt = SGD(layer.parameters(), lr=0.5)
    opt.zero_grad()
    loss = ((layer(Tensor(x), Tensor(e)) - target) ** 2).mean()
    loss.backward()
    assert layer.lam.grad > 0
    opt.step()
    assert layer.lam.item() == 0.0


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="SegAwareConv2d: kernel_size must be an odd positive "
                                         "int .*got 4"):
        nn.SegAwareConv2d(2, 2, 4)
    with pytest.raises(ValueError, match=r"SegAwareConv2d: lam_init must be a float >= 0; "
                                         r"got -1.0"):
        nn.SegAwareConv2d(2, 2, 3, lam_init=-1.0, rng=rng())
    with pytest.raises(ValueError, match="BilateralFilter: norm must be one of"):
        nn.BilateralFilter(3, norm="cos")
    with pytest.raises(ValueError, match="BilateralFilter: repeat must be an int >= 1; got 0"):
        nn.BilateralFilter(3, repeat=0)
    layer = nn.SegAwareConv2d(2, 2, 3, rng=rng())
    x = Tensor(np.zeros((1, 2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="segaware_conv2d: embeddings must be"):
        layer(x, Tensor(np.zeros((1, 3, 4, 4), np.float32)))


def test_state_dict_round_trip_keeps_lam():
    a = nn.SegAwareConv2d(2, 3, 3, lam_init=0.25, rng=rng(8))
    b = nn.SegAwareConv2d(2, 3, 3, rng=rng(9))
    b.load_state_dict(a.state_dict())
    assert b.lam.item() == pytest.approx(0.25)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert isinstance(b.lam, segnp.Parameter) and b.lam.constraint is not None
