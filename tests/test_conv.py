"""conv2d against a scalar loop written from its definition (cross-correlation)

    y[n, f, oh, ow] = b[f] + sum_{c, i, j} W[f, c, i, j] x[n, c, oh*SH - PH + i*DH, ow*SW - PW + j*DW]

(x is 0 outside the image), float64 gradient checks at several (stride, padding,
dilation) settings with odd sizes, and the bad-input errors.
"""
import numpy as np
import pytest

import segnp
import segnp.functions as F
from segnp.gradcheck import check_grad

# (x shape, F, ksize, stride, padding, dilation)
CASES = [
    ((2, 3, 7, 9), 4, 3, 1, 0, 1),
    ((2, 3, 7, 9), 4, 3, 1, 1, 1),
    ((2, 3, 7, 9), 2, 3, 2, 1, 1),
    ((1, 2, 9, 7), 3, 3, 1, 2, 2),
    ((2, 2, 7, 9), 3, (2, 3), (2, 1), (1, 0), (1, 2)),
    ((1, 3, 5, 5), 2, 1, 1, 0, 1),
    ((2, 1, 11, 6), 2, 5, 3, 2, 1),
    ((1, 2, 3, 3), 2, 3, 5, 2, 1),
    # the one row of windows lies wholly in the top padding (PH > (OH-1)*SH + DH*(KH-1))
    ((1, 2, 10, 6), 2, (1, 3), (20, 1), (3, 1), 1),
]


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def naive_conv2d(x, W, b, stride, padding, dilation):
    (SH, SW), (PH, PW), (DH, DW) = map(_pair, (stride, padding, dilation))
    N, C, H, Wd = x.shape
    Fn, _, KH, KW = W.shape
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (Wd + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    y = np.zeros((N, Fn, OH, OW))
    for n in range(N):
        for f in range(Fn):
            for oh in range(OH):
                for ow in range(OW):
                    acc = 0.0 if b is None else b[f]
                    for c in range(C):
                        for i in range(KH):
                            for j in range(KW):
                                r = oh * SH - PH + i * DH
                                q = ow * SW - PW + j * DW
                                if 0 <= r < H and 0 <= q < Wd:
                                    acc += W[f, c, i, j] * x[n, c, r, q]
                    y[n, f, oh, ow] = acc
    return y


def _inputs(shape, Fn, k, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    KH, KW = _pair(k)
    x = rng.standard_normal(shape).astype(dtype)
    W = rng.standard_normal((Fn, shape[1], KH, KW)).astype(dtype)
    b = rng.standard_normal(Fn).astype(dtype)
    return x, W, b


@pytest.mark.parametrize("shape,Fn,k,s,p,d", CASES)
def test_forward_matches_naive_loop(shape, Fn, k, s, p, d):
    x, W, b = _inputs(shape, Fn, k)
    y = F.conv2d(x, W, b, stride=s, padding=p, dilation=d)
    np.testing.assert_allclose(y.numpy(), naive_conv2d(x, W, b, s, p, d), rtol=1e-10,
                               atol=1e-12)
    y0 = F.conv2d(x, W, None, stride=s, padding=p, dilation=d)
    np.testing.assert_allclose(y0.numpy(), naive_conv2d(x, W, None, s, p, d), rtol=1e-10,
                               atol=1e-12)


def test_float32_stays_float32_and_matches():
    x, W, b = _inputs((2, 3, 9, 7), 5, 3, seed=1, dtype=np.float32)
    xt, Wt, bt = (segnp.Tensor(a, requires_grad=True) for a in (x, W, b))
    y = F.conv2d(xt, Wt, bt, stride=2, padding=1)
    assert y.dtype == np.float32
    ref = naive_conv2d(x.astype(np.float64), W.astype(np.float64), b.astype(np.float64),
                       2, 1, 1)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-4)
    y.sum().backward()
    assert xt.grad.dtype == Wt.grad.dtype == bt.grad.dtype == np.float32


@pytest.mark.parametrize("shape,Fn,k,s,p,d", CASES)
def test_gradients_float64(shape, Fn, k, s, p, d):
    x, W, b = _inputs(shape, Fn, k, seed=2)
    check_grad(lambda x_, W_, b_: F.conv2d(x_, W_, b_, stride=s, padding=p, dilation=d),
               [x, W, b], name=f"conv2d s={s} p={p} d={d}")


def test_gradients_elementwise_on_a_small_input():
    # Small enough that check_grad perturbs every element of x and W one by one.
    x, W, b = _inputs((1, 2, 5, 4), 2, 3, seed=3)
    check_grad(lambda x_, W_, b_: F.conv2d(x_, W_, b_, stride=(2, 1), padding=(1, 2),
                                           dilation=(1, 2)),
               [x, W, b], max_elementwise=64)
    check_grad(lambda x_, W_: F.conv2d(x_, W_, padding=1), [x, W], max_elementwise=64)


def _analytic_grads(x, W, b, gy, **kw):
    """Gradients of <conv2d(x, W, b), gy> from the naive loop's adjoint, by hand."""
    (SH, SW), (PH, PW) = _pair(kw.get("stride", 1)), _pair(kw.get("padding", 0))
    N, C, H, Wd = x.shape
    Fn, _, KH, KW = W.shape
    gx, gW = np.zeros_like(x), np.zeros_like(W)
    for n in range(N):
        for f in range(Fn):
            for oh in range(gy.shape[2]):
                for ow in range(gy.shape[3]):
                    for c in range(C):
                        for i in range(KH):
                            for j in range(KW):
                                r, q = oh * SH - PH + i, ow * SW - PW + j
                                if 0 <= r < H and 0 <= q < Wd:
                                    gx[n, c, r, q] += W[f, c, i, j] * gy[n, f, oh, ow]
                                    gW[f, c, i, j] += x[n, c, r, q] * gy[n, f, oh, ow]
    return gx, gW, gy.sum(axis=(0, 2, 3))


# stride 2: gx by col2im; stride 1 with F <= 1.5 C: gx by the transposed convolution
@pytest.mark.parametrize("stride,gy_shape", [(2, (2, 4, 4, 3)), (1, (2, 4, 7, 6))])
def test_backward_matches_hand_written_adjoint_and_only_needed_grads(stride, gy_shape):
    x, W, b = _inputs((2, 3, 7, 6), 4, 3, seed=4)
    gy = np.random.default_rng(5).standard_normal(gy_shape)
    ref = _analytic_grads(x, W, b, gy, stride=stride, padding=1)
    for need in [(True, True, True), (True, False, False), (False, True, False),
                 (False, False, True)]:
        ts = [segnp.Tensor(a, requires_grad=r) for a, r in zip((x, W, b), need)]
        F.conv2d(*ts, stride=stride, padding=1).backward(gy)
        for t, r, g in zip(ts, need, ref):
            if r:
                np.testing.assert_allclose(t.grad, g, rtol=1e-10, atol=1e-12)
            else:
                assert t.grad is None


def test_bad_input_names_the_function_expected_and_given():
    x, W, b = _inputs((2, 3, 7, 7), 4, 3)
    with pytest.raises(ValueError, match=r"conv2d: x has 2 channels but W expects 3: "
                                         r"x \(N, C, H, W\) = \(2, 2, 7, 7\), "
                                         r"W \(F, C, KH, KW\) = \(4, 3, 3, 3\)"):
        F.conv2d(x[:, :2], W)
    with pytest.raises(TypeError, match=r"conv2d: x must be a floating-point array .*got dtype int64"):
        F.conv2d(x.astype(np.int64), W)
    with pytest.raises(TypeError, match=r"conv2d: W must be a floating-point array .*got dtype int32"):
        F.conv2d(x, W.astype(np.int32))
    with pytest.raises(ValueError, match=r"conv2d: padding must be >= 0; got -1"):
        F.conv2d(x, W, padding=-1)
    with pytest.raises(ValueError, match=r"conv2d: padding must be >= 0; got \(1, -2\)"):
        F.conv2d(x, W, padding=(1, -2))
    with pytest.raises(ValueError, match=r"conv2d: stride must be >= 1; got 0"):
        F.conv2d(x, W, stride=0)
    with pytest.raises(ValueError, match=r"conv2d: b must have shape \(F,\) = \(4,\) .* got \(3,\)"):
        F.conv2d(x, W, b[:3])
    with pytest.raises(TypeError, match=r"conv2d: expected one floating dtype for x, W; "
                                        r"got x=float64, W=float32"):
        F.conv2d(x, W.astype(np.float32))
    with pytest.raises(ValueError, match=r"conv2d: x must be \(N, C, H, W\); got shape \(3, 7, 7\)"):
        F.conv2d(x[0], W)
    with pytest.raises(ValueError, match=r"conv2d: W must be \(F, C, KH, KW\); got shape \(4, 3, 3\)"):
        F.conv2d(x, W[:, :, 0])
    with pytest.raises(ValueError, match=r"conv2d: a 9x9 window .* does not fit an input of size \(7, 7\)"):
        F.conv2d(x, np.zeros((1, 3, 9, 9)))
