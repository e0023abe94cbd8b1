"""The speed paths of issue 12 against the references they replace.

- conv2d's two ways of computing gx (a product plus col2im, or for stride 1 the
  transposed convolution), each forced on and compared with a hand-written adjoint;
- im2col (one strided copy of a zero canvas) against a loop over its definition;
- max_pool2d's argmax backward against a scatter over all windows written from the
  definition, with ties, -inf and NaN;
- float64 gradient checks of the shapes where the paths switch.
"""
import numpy as np
import pytest

import segnp
import segnp.functions as F
from segnp.backends.numpy import conv as npconv
from segnp.gradcheck import check_grad


def _naive_conv_grads(x, W, gy, stride, padding, dilation):
    """(gx, gW) of <conv2d(x, W), gy> by a loop over every product of the definition."""
    N, C, H, Wd = x.shape
    Fn, _, KH, KW = W.shape
    gx, gW = np.zeros_like(x), np.zeros_like(W)
    for oh in range(gy.shape[2]):
        for ow in range(gy.shape[3]):
            for i in range(KH):
                for j in range(KW):
                    r = oh * stride - padding + i * dilation
                    q = ow * stride - padding + j * dilation
                    if 0 <= r < H and 0 <= q < Wd:
                        g = gy[:, :, oh, ow]  # (N, F)
                        gx[:, :, r, q] += g @ W[:, :, i, j]
                        gW[:, :, i, j] += g.T @ x[:, :, r, q]
    return gx, gW


# (N, C, H, W), F, k, stride, padding, dilation
GX_CASES = [
    ((2, 3, 7, 6), 4, 3, 1, 1, 1),
    ((2, 4, 9, 8), 8, 3, 1, 2, 2),   # F = 2 C
    ((1, 2, 6, 7), 3, 3, 1, 0, 1),   # no padding
    ((2, 3, 5, 5), 2, 1, 1, 0, 1),   # 1x1
    ((1, 2, 8, 7), 3, 3, 2, 1, 1),   # stride 2: only col2im applies
]


@pytest.mark.parametrize("transposed", [True, False])
@pytest.mark.parametrize("shape,Fn,k,s,p,d", GX_CASES)
def test_each_gx_strategy_matches_the_naive_adjoint(monkeypatch, shape, Fn, k, s, p, d,
                                                   transposed):
    if transposed and s != 1:
        pytest.skip("the transposed convolution is used for stride 1 only")
    chosen = []

    def force(*args):
        chosen.append(transposed)
        return transposed

    monkeypatch.setattr(npconv, "_gx_by_transposed_conv", force)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    W = rng.standard_normal((Fn, shape[1], k, k))
    xt, Wt = segnp.Tensor(x, requires_grad=True), segnp.Tensor(W, requires_grad=True)
    y = F.conv2d(xt, Wt, stride=s, padding=p, dilation=d)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    gx, gW = _naive_conv_grads(x, W, gy, s, p, d)
    assert chosen == [transposed]
    np.testing.assert_allclose(xt.grad, gx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(Wt.grad, gW, rtol=1e-10, atol=1e-12)


def test_gx_strategy_follows_the_shape():
    choose = npconv._gx_by_transposed_conv
    one = (1, 1)
    assert choose(16, 16, (3, 3), one, one, one)
    assert choose(48, 64, (3, 3), one, (2, 2), (2, 2))
    assert not choose(16, 32, (3, 3), one, one, one)         # many more output channels
    assert not choose(16, 16, (3, 3), (2, 2), one, one)      # stride 2
    assert not choose(16, 16, (1, 1), one, one, one)         # padding > DH*(KH-1)


@pytest.mark.parametrize("shape,Fn,k,s,p,d", [((2, 3, 6, 5), 4, 3, 1, 1, 1),
                                              ((1, 2, 7, 6), 5, 3, 1, 2, 2)])
def test_gradients_float64_on_both_sides_of_the_switch(shape, Fn, k, s, p, d):
    rng = np.random.default_rng(1)
    x, W = rng.standard_normal(shape), rng.standard_normal((Fn, shape[1], k, k))
    b = rng.standard_normal(Fn)
    check_grad(lambda x_, W_, b_: F.conv2d(x_, W_, b_, stride=s, padding=p, dilation=d),
               [x, W, b])


@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), (3, 2, 0, 2), ((2, 3), (1, 2), (1, 0), 1),
                                     (1, 1, 2, 1), (3, 3, 2, 1)])
def test_im2col_is_the_definition_for_strided_inputs(k, s, p, d):
    x = np.random.default_rng(2).standard_normal((2, 3, 9, 8))[:, :, ::-1]  # not contiguous
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = (np.broadcast_to(v, 2) for v in (k, s, p, d))
    cols = npconv.im2col(x, k, s, p, d)
    N, C, _, _, OH, OW = cols.shape
    assert cols.flags.c_contiguous and cols.shape[2:4] == (KH, KW)
    ref = np.zeros_like(cols)
    for i in range(KH):
        for j in range(KW):
            for oh in range(OH):
                for ow in range(OW):
                    r, q = oh * SH - PH + i * DH, ow * SW - PW + j * DW
                    if 0 <= r < 9 and 0 <= q < 8:
                        ref[:, :, i, j, oh, ow] = x[:, :, r, q]
    np.testing.assert_array_equal(cols, ref)


def _naive_max_pool_grad(x, gy, k, s, p):
    """Scatter gy to the first maximum (row-major) of each window, NaN winning (the last
    NaN), from the definition (floor mode)."""
    gx = np.zeros_like(x)
    H, W = x.shape[2:]
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for oh in range(gy.shape[2]):
                for ow in range(gy.shape[3]):
                    best, where = -np.inf, None
                    for i in range(k):
                        for j in range(k):
                            r, q = oh * s - p + i, ow * s - p + j
                            if not (0 <= r < H and 0 <= q < W):
                                continue
                            v = x[n, c, r, q]
                            if where is None:
                                where = (r, q)
                            if v > best or np.isnan(v):
                                best, where = v, (r, q)
                    gx[n, c][where] += gy[n, c, oh, ow]
    return gx


@pytest.mark.parametrize("fill", ["ties", "inf", "nan"])
def test_max_pool_argmax_backward_matches_the_scatter(fill):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (2, 3, 9, 8)).astype(np.float64)  # many ties
    if fill == "inf":
        x[0, 0] = -np.inf
        x[1, 2, :4] = -np.inf
    elif fill == "nan":
        x[0, 1, 2, 3] = x[0, 1, 3, 3] = x[1, 0, 0, 0] = np.nan
    xt = segnp.Tensor(x, requires_grad=True)
    y = F.max_pool2d(xt, 3, 2, 1)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    # the same gradients reach each pixel, summed in another order
    np.testing.assert_allclose(xt.grad, _naive_max_pool_grad(x, gy, 3, 2, 1), rtol=1e-12,
                               atol=1e-14)


def test_max_pool_float64_gradient():
    x = np.random.default_rng(4).standard_normal((2, 2, 7, 6))
    check_grad(lambda x_: F.max_pool2d(x_, 3, 2, 1), [x])
