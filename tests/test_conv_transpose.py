"""conv_transpose2d against a scalar loop written from its definition (every input pixel
scatters the kernel, scaled, onto the output)

    y[n, f, h*SH - PH + i*DH, w*SW - PW + j*DW] += W[c, f, i, j] x[n, c, h, w]

against the adjoint of conv2d (<conv2d(y), x> == <y, conv_transpose2d(x)>), on the
NumPy backend and the CPU emulator of the CUDA kernels; float64 gradient checks; the
module; and the bad-input errors.
"""
import numpy as np
import pytest

import segnp
import segnp.functions as F
from segnp import nn
from segnp.backends import using_backend
from segnp.gradcheck import check_grad

BACKENDS = ["numpy", "cuda-emulator"]
# (x shape, F, ksize, stride, padding, output_padding, dilation): FlowNet's 4x4 stride 2
# padding 1, pairs, output padding, dilation, padding wider than the kernel reaches.
CASES = [
    ((2, 3, 4, 5), 2, 4, 2, 1, 0, 1),
    ((1, 2, 3, 3), 3, 3, 1, 0, 0, 1),
    ((2, 2, 3, 4), 2, 3, 2, 1, 1, 1),
    ((1, 3, 4, 3), 2, (2, 3), (2, 1), (1, 0), (1, 0), (1, 2)),
    ((1, 2, 5, 4), 2, 3, 3, 2, (2, 1), 2),
    ((2, 1, 2, 3), 3, 1, 2, 0, 1, 1),
]


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def naive_conv_transpose2d(x, W, b, stride, padding, output_padding, dilation):
    (SH, SW), (PH, PW), (OPH, OPW), (DH, DW) = map(
        _pair, (stride, padding, output_padding, dilation))
    N, C, H, Wd = x.shape
    _, Fn, KH, KW = W.shape
    OH = (H - 1) * SH - 2 * PH + DH * (KH - 1) + OPH + 1
    OW = (Wd - 1) * SW - 2 * PW + DW * (KW - 1) + OPW + 1
    y = np.zeros((N, Fn, OH, OW))
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(Wd):
                    for f in range(Fn):
                        for i in range(KH):
                            for j in range(KW):
                                r, q = h * SH - PH + i * DH, w * SW - PW + j * DW
                                if 0 <= r < OH and 0 <= q < OW:
                                    y[n, f, r, q] += W[c, f, i, j] * x[n, c, h, w]
    if b is not None:
        y += b[:, None, None]
    return y


def _inputs(shape, Fn, k, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    KH, KW = _pair(k)
    x = rng.standard_normal(shape).astype(dtype)
    W = rng.standard_normal((shape[1], Fn, KH, KW)).astype(dtype)
    b = rng.standard_normal(Fn).astype(dtype)
    return x, W, b


@pytest.mark.parametrize("shape,Fn,k,s,p,op,d", CASES)
def test_forward_matches_naive_loop(backend, shape, Fn, k, s, p, op, d):
    x, W, b = _inputs(shape, Fn, k)
    ref = naive_conv_transpose2d(x, W, b, s, p, op, d)
    y = F.conv_transpose2d(x, W, b, stride=s, padding=p, output_padding=op, dilation=d)
    y0 = F.conv_transpose2d(x, W, None, s, p, op, d)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y0.numpy(), ref - b[:, None, None], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape,Fn,k,s,p,op,d", CASES)
def test_adjoint_of_conv2d(backend, shape, Fn, k, s, p, op, d):
    x, W, _ = _inputs(shape, Fn, k, seed=1)
    y = F.conv_transpose2d(x, W, stride=s, padding=p, output_padding=op, dilation=d).numpy()
    z = np.random.default_rng(2).standard_normal(y.shape)
    # the same W (C, F, KH, KW), read by conv2d as (out, in, KH, KW), maps y's size
    # back to x's
    cz = F.conv2d(z, W, stride=s, padding=p, dilation=d).numpy()
    assert cz.shape == x.shape
    np.testing.assert_allclose(np.vdot(cz, x), np.vdot(z, y), rtol=1e-10)


@pytest.mark.parametrize("shape,Fn,k,s,p,op,d", CASES)
def test_gradients_float64(shape, Fn, k, s, p, op, d):
    x, W, b = _inputs(shape, Fn, k, seed=3)
    check_grad(lambda x_, W_, b_: F.conv_transpose2d(x_, W_, b_, s, p, op, d), [x, W, b],
               name=f"conv_transpose2d s={s} p={p} op={op} d={d}")


def test_gradients_on_the_emulator_match_numpy():
    x, W, b = _inputs((2, 3, 4, 5), 2, 4, seed=4)
    gy = np.random.default_rng(5).standard_normal((2, 2, 8, 10))
    grads = {}
    for backend in BACKENDS:
        with using_backend(backend):
            ts = [segnp.Tensor(a, requires_grad=True) for a in (x, W, b)]
            F.conv_transpose2d(*ts, stride=2, padding=1).backward(gy)
            grads[backend] = [t.grad for t in ts]
    for a, e in zip(grads["cuda-emulator"], grads["numpy"]):
        np.testing.assert_allclose(a, e, rtol=1e-11, atol=1e-12)


def test_only_needed_gradients_and_float32():
    x, W, b = _inputs((1, 2, 3, 4), 3, 4, seed=6, dtype=np.float32)
    ts = [segnp.Tensor(x), segnp.Tensor(W, requires_grad=True), segnp.Tensor(b)]
    y = F.conv_transpose2d(*ts, stride=2, padding=1)
    assert y.dtype == np.float32 and y.shape == (1, 3, 6, 8)
    y.sum().backward()
    assert ts[0].grad is None and ts[2].grad is None
    assert ts[1].grad.dtype == np.float32
    # d(sum y)/dW[c, f, i, j] = sum of the x pixels whose tap (i, j) lands inside y
    ref = naive_conv_transpose2d(x.astype(np.float64), np.ones_like(W, np.float64), None,
                                 2, 1, 0, 1)
    assert np.isclose(ts[1].grad.sum(), ref.sum(), rtol=1e-5)


def test_module_upsamples_by_the_stride_and_trains():
    segnp.manual_seed(0)
    m = nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1, dtype=np.float64)
    assert m.weight.shape == (3, 2, 4, 4) and m.bias.shape == (2,)
    x = np.random.default_rng(7).standard_normal((2, 3, 5, 6))
    y = m(x)
    assert y.shape == (2, 2, 10, 12)
    np.testing.assert_allclose(
        y.numpy(), naive_conv_transpose2d(x, m.weight.numpy(), m.bias.numpy(), 2, 1, 0, 1),
        rtol=1e-10, atol=1e-12)
    check_grad(lambda x_: m(x_), [x])
    assert "output_padding=(0, 0)" in repr(m)
    assert nn.ConvTranspose2d(2, 2, 3, bias=False).bias is None


def test_bad_input_names_the_function_expected_and_given():
    x, W, b = _inputs((2, 3, 4, 4), 2, 3)
    with pytest.raises(ValueError, match=r"conv_transpose2d: x has 2 channels but W expects "
                                         r"3: x \(N, C, H, W\) = \(2, 2, 4, 4\), "
                                         r"W \(C, F, KH, KW\) = \(3, 2, 3, 3\)"):
        F.conv_transpose2d(x[:, :2], W)
    with pytest.raises(TypeError, match=r"conv_transpose2d: x must be a floating-point "
                                        r"array .*got dtype int64"):
        F.conv_transpose2d(x.astype(np.int64), W)
    with pytest.raises(ValueError, match=r"conv_transpose2d: W must be \(C, F, KH, KW\); "
                                         r"got shape \(3, 2, 3\)"):
        F.conv_transpose2d(x, W[..., 0])
    with pytest.raises(ValueError, match=r"conv_transpose2d: b must have shape \(F,\) = "
                                         r"\(2,\) .* got \(3,\)"):
        F.conv_transpose2d(x, W, np.zeros(3))
    with pytest.raises(TypeError, match=r"conv_transpose2d: expected one floating dtype "
                                        r"for x, W; got x=float64, W=float32"):
        F.conv_transpose2d(x, W.astype(np.float32))
    with pytest.raises(ValueError, match=r"conv_transpose2d: output_padding must be smaller "
                                         r"than stride \(2, 2\); got \(2, 0\)"):
        F.conv_transpose2d(x, W, stride=2, output_padding=(2, 0))
    with pytest.raises(ValueError, match=r"conv_transpose2d: padding must be >= 0; got -1"):
        F.conv_transpose2d(x, W, padding=-1)
    with pytest.raises(ValueError, match=r"conv_transpose2d: padding \(4, 4\) crops more "
                                         r".* the output would be \(-2, -2\)"):
        F.conv_transpose2d(x, W, padding=4)
    with pytest.raises(ValueError, match=r"ConvTranspose2d: output_padding must be smaller "
                                         r"than stride \(1, 1\); got \(1, 1\)"):
        nn.ConvTranspose2d(2, 2, 3, output_padding=1)
    with pytest.raises(ValueError, match=r"ConvTranspose2d: in_channels must be a positive "
                                         r"int; got 0"):
        nn.ConvTranspose2d(0, 2, 3)
