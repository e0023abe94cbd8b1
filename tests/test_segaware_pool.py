"""segaware_avg_pool2d (issue 22) on every backend: against the naive loop of
tests/naive_ops.py, its special cases (stride 1 is the bilateral filter of Eq. 4,
lam = 0 the average over valid taps), float64 gradient checks of x, e and lam, the
CUDA tier against NumPy in both emulator thread orders, the module and the errors."""
import numpy as np
import pytest
from naive_ops import naive_segaware_avg_pool

import segnp
import segnp.functions as F
from segnp import check_grad, nn
from segnp.backends import using_backend

NORMS = ["l1", "l2", "l2sq"]
# (ksize, stride, padding, dilation): 3x3 by 2 (the counterpart of 2x2 pooling), the
# default stride (= ksize), a reduced padding, unequal pairs with dilation, stride 1.
WINDOWS = [(3, 2, 1, 1), (3, None, None, 1), (5, 2, 1, 1), (3, (2, 1), (0, 2), (1, 2)),
           (3, 1, None, 1)]


def inputs(seed=0, N=2, C=3, D=2, H=7, W=6):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, C, H, W)), rng.standard_normal((N, D, H, W))


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("norm", NORMS)
def test_matches_the_naive_loop(backend, window, norm):
    x, e = inputs()
    k, s, p, d = window
    y = F.segaware_avg_pool2d(x, e, k, 0.8, s, p, d, norm).numpy()
    want = naive_segaware_avg_pool(x, e, k, 0.8, k if s is None else s,
                                   (d if isinstance(d, int) else d[0]) * (k // 2)
                                   if p is None else p, d, norm)
    np.testing.assert_allclose(y, want, rtol=1e-11, atol=1e-12)


def test_stride_one_is_the_bilateral_filter(backend):
    x, e = inputs(1)
    y = F.segaware_avg_pool2d(x, e, 5, 0.7, 1, None, 2, "l2")
    np.testing.assert_array_equal(y.numpy(), F.segaware_bilateral(x, e, 0.7, 5, 2, "l2").numpy())


@pytest.mark.parametrize("window", [(3, 2, 1), (3, 3, 0), (5, 2, 2)])
def test_lam_zero_is_the_average_over_valid_taps(backend, window):
    x, e = inputs(2)
    k, s, p = window
    y = F.segaware_avg_pool2d(x, e, k, 0.0, s, p).numpy()
    want = F.avg_pool2d(x, k, s, p, count_include_pad=False).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-5)  # the taps' count has NORM_EPS added


@pytest.mark.parametrize("window", [WINDOWS[0], WINDOWS[3]])
@pytest.mark.parametrize("norm", NORMS)
def test_gradients(backend, window, norm):
    x, e = inputs(3, N=2, C=2, H=6, W=5)
    k, s, p, d = window
    check_grad(lambda x, e, lam: F.segaware_avg_pool2d(x, e, k, lam, s, p, d, norm),
               [x, e, np.array(0.6)])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cuda_tier_matches_numpy(emulator_order, dtype):
    x, e = (a.astype(dtype) for a in inputs(4))
    gy = np.random.default_rng(5).standard_normal((2, 3, 4, 3)).astype(dtype)
    results = []
    for name in ("numpy", "cuda-emulator"):
        with using_backend(name):
            xt, et = segnp.Tensor(x, requires_grad=True), segnp.Tensor(e, requires_grad=True)
            lam = segnp.Parameter(np.array(0.9, dtype=dtype))
            y = F.segaware_avg_pool2d(xt, et, 3, lam, 2, 1, 1, "l1")
            (y * gy).sum().backward()
            results.append([y.numpy(), xt.grad, et.grad, lam.grad])
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for a, b in zip(*results):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def test_module():
    pool = nn.SegAwareAvgPool2d(3, stride=2, padding=1, lam_init=0.5, dtype=np.float64)
    assert [n for n, _ in pool.named_parameters()] == ["lam"]
    x, e = inputs(6)
    y = pool(x, e)
    assert y.shape == (2, 3, 4, 3)
    np.testing.assert_allclose(y.numpy(), F.segaware_avg_pool2d(x, e, 3, 0.5, 2, 1).numpy())
    y.sum().backward()
    assert pool.lam.grad is not None
    assert nn.SegAwareAvgPool2d(3).stride == (3, 3)
    with pytest.raises(ValueError, match="ksize"):
        nn.SegAwareAvgPool2d(2)


@pytest.mark.parametrize("kwargs,match", [
    ({"ksize": 2}, "ksize must be odd"),
    ({"padding": 2}, r"padding must be at most dilation\*\(ksize//2\)"),
    ({"e": np.zeros((2, 2, 7, 5))}, "same N, H, W as x"),
    ({"lam": -1.0}, "lam"),
    ({"stride": 0}, "stride must be >= 1"),
])
def test_errors_name_the_argument(kwargs, match):
    x, e = inputs()
    args = {"x": x, "e": e, "ksize": 3, "lam": 0.5, "stride": 2}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match) as info:
        F.segaware_avg_pool2d(**args)
    assert str(info.value).startswith("segaware_avg_pool2d:")
