"""segaware_conv_transpose2d (issue 22) on every backend: against the naive loop of
tests/naive_ops.py written from the definition, its special cases (lam = 0 is
conv_transpose2d, or it divided by the taps reaching each pixel), float64 gradient
checks of x, e, W, b and lam, the module, and the errors."""
import numpy as np
import pytest
from naive_ops import naive_segaware_conv_transpose

import segnp
import segnp.functions as F
from segnp import check_grad, nn
from segnp.window import NORM_EPS, Window

NORMS = ["l1", "l2", "l2sq"]
# (H, W, k, stride, padding, output_padding, dilation): x2 with k = 5 and with k = 3,
# stride 1 with no padding and dilation 2, unequal pairs, a 1x1 window, x4 with k = 7.
CASES = [(4, 5, 5, 2, 2, 1, 1), (4, 3, 3, 2, 1, 1, 1), (3, 3, 3, 1, 0, 0, 2),
         (4, 3, 5, (2, 3), (1, 2), (1, 0), (1, 2)), (3, 3, 1, 2, 0, 1, 1),
         (2, 3, 7, 4, 3, 3, 1)]


def case(H, W, k, s, p, op, d, seed=0, N=2, C=3, F_=4, D=2):
    rng = np.random.default_rng(seed)
    win = Window.transposed("test", H, W, k, s, p, op, d)
    x = rng.standard_normal((N, C, H, W))
    e = rng.standard_normal((N, D, win.H, win.W))
    Wt = rng.standard_normal((C, F_, k, k))
    b = rng.standard_normal(F_)
    return x, e, Wt, b


@pytest.mark.parametrize("geom", CASES)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_the_naive_loop(backend, geom, norm, normalize):
    x, e, Wt, b = case(*geom)
    (_, _, _, s, p, op, d) = geom
    y = F.segaware_conv_transpose2d(x, e, Wt, b, 0.7, s, p, op, d, norm, normalize)
    want = naive_segaware_conv_transpose(x, e, Wt, 0.7, s, p, d, norm, normalize)
    np.testing.assert_allclose(y.numpy(), want + b[:, None, None], rtol=1e-11, atol=1e-12)
    y32 = F.segaware_conv_transpose2d(*(a.astype(np.float32) for a in (x, e, Wt, b)), 0.7,
                                      s, p, op, d, norm, normalize)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.numpy(), y.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("geom", CASES)
def test_lam_zero_is_conv_transpose2d(backend, geom):
    """Without normalisation, lam = 0 gives conv_transpose2d; with it, conv_transpose2d
    divided by the number of taps that reach each output pixel (+ eps)."""
    x, e, Wt, b = case(*geom)
    (_, _, _, s, p, op, d) = geom
    plain = F.conv_transpose2d(x, Wt, b, s, p, op, d).numpy()
    y = F.segaware_conv_transpose2d(x, e, Wt, b, 0.0, s, p, op, d, "l1", False).numpy()
    np.testing.assert_allclose(y, plain, rtol=1e-12, atol=1e-12)
    ones = np.ones((1, 1) + x.shape[2:])
    count = F.conv_transpose2d(ones, np.ones((1, 1) + Wt.shape[2:]), None, s, p, op, d).numpy()
    yn = F.segaware_conv_transpose2d(x, e, Wt, None, 0.0, s, p, op, d, "l1", True).numpy()
    np.testing.assert_allclose(yn, (plain - b[:, None, None]) / (count + NORM_EPS),
                               rtol=1e-12, atol=1e-12)


def test_the_mask_stops_at_an_embedding_edge():
    """x2 upsampling of a constant 1 with two embedding regions: at lam large, an
    output pixel in region A takes nothing from the samples of region B."""
    H = W = 4
    x = np.ones((1, 1, H, W))
    x[..., :, 2:] = 5.0  # the samples of the right half carry 5
    e = np.zeros((1, 1, 8, 8))
    e[..., :, 4:] = 10.0  # the right half of the output is another region
    Wt = np.ones((1, 1, 5, 5))
    y = F.segaware_conv_transpose2d(x, e, Wt, None, 5.0, 2, 2, 1).numpy()
    np.testing.assert_allclose(y[..., :, :4], 1.0, rtol=1e-6)
    np.testing.assert_allclose(y[..., :, 4:], 5.0, rtol=1e-6)
    blurred = F.segaware_conv_transpose2d(x, e, Wt, None, 0.0, 2, 2, 1).numpy()
    assert blurred[0, 0, 0, 3] > 1.5  # without the mask the edge is smeared


@pytest.mark.parametrize("geom", [CASES[1], CASES[3]])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("normalize", [True, False])
def test_gradients(backend, geom, norm, normalize):
    x, e, Wt, b = case(*geom, seed=1, N=2, C=2, F_=3)
    (_, _, _, s, p, op, d) = geom
    check_grad(lambda x, e, W, b, lam: F.segaware_conv_transpose2d(
        x, e, W, b, lam, s, p, op, d, norm, normalize), [x, e, Wt, b, np.array(0.6)])


def test_lam_gradient_does_not_vanish_at_zero(backend):
    """At lam = 0 the mask can still switch itself on: the gradient of lam matches the
    one-sided difference quotient."""
    x, e, Wt, b = case(*CASES[0], seed=2)
    gy = np.random.default_rng(3).standard_normal((2, 4, 8, 10))

    def loss(lam):
        y = F.segaware_conv_transpose2d(x, e, Wt, b, lam, 2, 2, 1)
        return (y * gy).sum()

    lam = segnp.Parameter(np.array(0.0))
    loss(lam).backward()
    h = 1e-7
    slope = (float(loss(h).item()) - float(loss(0.0).item())) / h
    assert abs(float(lam.grad)) > 1e-3
    assert abs(float(lam.grad) - slope) <= 1e-4 * abs(slope)


def test_module():
    layer = nn.SegAwareConvTranspose2d(3, 2, 5, stride=2, padding=2, output_padding=1,
                                       lam_init=0.5, dtype=np.float64,
                                       rng=np.random.default_rng(0))
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias", "lam"]
    assert layer.weight.shape == (3, 2, 5, 5)
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    e = np.random.default_rng(2).standard_normal((2, 4, 8, 10))
    y = layer(x, e)
    assert y.shape == (2, 2, 8, 10)
    want = F.segaware_conv_transpose2d(x, e, layer.weight.data, layer.bias.data, 0.5, 2, 2, 1)
    np.testing.assert_allclose(y.numpy(), want.numpy())
    y.sum().backward()
    assert layer.lam.grad is not None and layer.weight.grad.shape == (3, 2, 5, 5)
    # the init keeps the scale of the plain transposed convolution (see the docstring)
    plain = nn.ConvTranspose2d(3, 2, 5, 2, 2, 1, dtype=np.float64, rng=np.random.default_rng(0))
    np.testing.assert_allclose(layer.weight.data, plain.weight.data * 25 / 4)
    with pytest.raises(ValueError, match="padding must be at most"):
        nn.SegAwareConvTranspose2d(3, 2, 3, stride=2, padding=2)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.SegAwareConvTranspose2d(3, 2, 4, stride=2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(W=np.zeros((3, 2, 4, 4))), "kernel size must be odd"),
    (dict(W=np.zeros((2, 2, 5, 5))), "x's channels"),
    (dict(padding=3), r"padding must be at most dilation\*\(ksize//2\) = \(2, 2\) so that .*p\(i\)"),
    (dict(output_padding=2), "output_padding must be smaller than stride"),
    (dict(e=np.zeros((2, 4, 8, 9))), r"e must be \(N, D, OH, OW\) = \(2, D, 8, 10\)"),
    (dict(e=np.zeros((1, 4, 8, 10))), r"e must be \(N, D, OH, OW\)"),
    (dict(b=np.zeros(3)), r"b must have shape \(F,\) = \(2,\)"),
    (dict(lam=-1.0), "lam"),
    (dict(norm="l3"), "norm"),
    (dict(e=np.zeros((2, 4, 8, 10), dtype=np.float32)), "dtype"),
])
def test_errors_name_the_argument(kwargs, match):
    args = dict(x=np.zeros((2, 3, 4, 5)), e=np.zeros((2, 4, 8, 10)), W=np.zeros((3, 2, 5, 5)),
                b=None, lam=0.5, stride=2, padding=2, output_padding=1)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match) as info:
        F.segaware_conv_transpose2d(**args)
    assert str(info.value).startswith("segaware_conv_transpose2d:")


def test_exported():
    assert segnp.functions.segaware_conv_transpose2d is F.segaware_conv_transpose2d
