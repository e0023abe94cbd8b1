"""max_pool2d and avg_pool2d against loops written from PyTorch's definitions.

Window (oh, ow) starts at input row oh*SH - PH (column ow*SW - PW) and spans KH x KW.
Floor mode keeps the windows that fit inside the padded input; ceil mode adds the
fewest extra windows that cover the padded input to its end, then drops a last window
that would start in the right/bottom padding or beyond.  Max pool: the max over the
window's input pixels, gradient to the first maximum in row-major order.  Avg pool: the
sum over input pixels divided by the window size clipped to the padded input
(count_include_pad) or by the number of input pixels.
"""
import numpy as np
import pytest

import segnp
import segnp.functions as F
from segnp.gradcheck import check_grad

# (x shape, kernel_size, stride, padding, ceil_mode)
CASES = [
    ((2, 3, 7, 9), 2, None, 0, False),
    ((2, 3, 7, 9), 2, None, 0, True),
    ((2, 2, 7, 9), 3, 2, 1, False),
    ((2, 2, 7, 9), 3, 2, 1, True),
    ((1, 2, 9, 7), 2, 2, 1, True),
    ((1, 3, 7, 9), (3, 2), (2, 1), (1, 0), True),
    ((1, 2, 8, 5), 3, 1, 1, False),
    ((2, 1, 11, 6), 4, 3, 2, True),
    ((1, 2, 5, 5), 3, 3, 0, True),
]


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _count(size, k, s, p, ceil_mode):
    padded = size + 2 * p
    if not ceil_mode:
        return sum(1 for o in range(padded) if o * s + k <= padded)
    o = 0
    while o * s + k < padded:  # add windows until one reaches the end of the padding
        o += 1
    n = o + 1
    return n - 1 if (n - 1) * s >= size + p else n


def _windows(shape, k, s, p, ceil_mode):
    """Yield (oh, ow, rows, cols, padded_size) with rows/cols clipped to the image."""
    (KH, KW), (SH, SW), (PH, PW) = _pair(k), _pair(s if s is not None else k), _pair(p)
    H, W = shape[2:]
    OH, OW = _count(H, KH, SH, PH, ceil_mode), _count(W, KW, SW, PW, ceil_mode)
    for oh in range(OH):
        for ow in range(OW):
            r0, q0 = oh * SH - PH, ow * SW - PW
            r1, q1 = min(r0 + KH, H + PH), min(q0 + KW, W + PW)
            padded = (r1 - r0) * (q1 - q0)
            yield (oh, ow, range(max(r0, 0), min(r1, H)), range(max(q0, 0), min(q1, W)),
                   padded, (OH, OW))


def naive_max_pool(x, gy, k, s, p, ceil_mode):
    """Forward and the gradient of <y, gy> (gradient to the first maximum)."""
    y = gx = None
    for oh, ow, rows, cols, _, out in _windows(x.shape, k, s, p, ceil_mode):
        if y is None:
            y = np.zeros(x.shape[:2] + out)
            gx = np.zeros_like(x)
        for n in range(x.shape[0]):
            for c in range(x.shape[1]):
                best, where = -np.inf, (rows[0], cols[0])
                for r in rows:
                    for q in cols:
                        if x[n, c, r, q] > best:
                            best, where = x[n, c, r, q], (r, q)
                y[n, c, oh, ow] = best
                gx[n, c, where[0], where[1]] += gy[n, c, oh, ow]
    return y, gx


def naive_avg_pool(x, k, s, p, ceil_mode, count_include_pad):
    y = None
    for oh, ow, rows, cols, padded, out in _windows(x.shape, k, s, p, ceil_mode):
        if y is None:
            y = np.zeros(x.shape[:2] + out)
        total = np.zeros(x.shape[:2])
        for r in rows:
            for q in cols:
                total += x[:, :, r, q]
        y[:, :, oh, ow] = total / (padded if count_include_pad else len(rows) * len(cols))
    return y


def _out_shape(x, k, s, p, ceil_mode):
    for *_, out in _windows(x.shape, k, s, p, ceil_mode):
        return x.shape[:2] + out


def _check_max_pool_against_naive_loop(x, rng, k, s, p, ceil_mode):
    gy = rng.standard_normal(_out_shape(x, k, s, p, ceil_mode))
    y_ref, gx_ref = naive_max_pool(x, gy, k, s, p, ceil_mode)
    xt = segnp.Tensor(x, requires_grad=True)
    y = F.max_pool2d(xt, k, s, p, ceil_mode)
    np.testing.assert_array_equal(y.numpy(), y_ref)
    y.backward(gy)
    np.testing.assert_allclose(xt.grad, gx_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,k,s,p,ceil_mode", CASES)
def test_max_pool_matches_naive_loop_forward_and_backward(shape, k, s, p, ceil_mode):
    rng = np.random.default_rng(0)
    _check_max_pool_against_naive_loop(rng.standard_normal(shape), rng, k, s, p, ceil_mode)


@pytest.mark.parametrize("infinite", [False, True], ids=["finite", "with infinities"])
@pytest.mark.parametrize("shape,k,s,p,ceil_mode", CASES)
def test_max_pool_with_many_ties_matches_naive_loop(shape, k, s, p, ceil_mode, infinite):
    # ties and infinities exercise the first-maximum rule across the phases of the canvas
    rng = np.random.default_rng(6)
    x = rng.integers(0, 3, shape).astype(np.float64)
    if infinite:
        x.flat[rng.choice(x.size, 3, replace=False)] = (np.inf, -np.inf, -np.inf)
    _check_max_pool_against_naive_loop(x, rng, k, s, p, ceil_mode)


@pytest.mark.parametrize("shape,k,s,p,ceil_mode", CASES)
def test_max_pool_images_spread_over_threads_match_naive_loop(spread, shape, k, s, p,
                                                              ceil_mode):
    # the images go to two threads (ties and infinities as above)
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, (3,) + shape[1:]).astype(np.float64)
    x.flat[rng.choice(x[0].size, 2, replace=False)] = (np.inf, -np.inf)
    _check_max_pool_against_naive_loop(x, rng, k, s, p, ceil_mode)
    assert spread.calls == [1, 2, 1, 2]   # forward and backward both spread
    # A NaN in the last image only: its run checks for NaN, the other does not.
    x[-1, 0, 0, 0] = np.nan
    y = F.max_pool2d(x, k, s, p, ceil_mode).numpy()
    assert np.isnan(y[-1, 0, 0, 0]) and not np.isnan(y[:-1]).any()


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape,k,s,p,ceil_mode", CASES)
def test_avg_pool_matches_naive_loop(shape, k, s, p, ceil_mode, count_include_pad):
    x = np.random.default_rng(1).standard_normal(shape)
    y = F.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad)
    np.testing.assert_allclose(y.numpy(), naive_avg_pool(x, k, s, p, ceil_mode,
                                                         count_include_pad),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,k,s,p,ceil_mode", CASES)
def test_gradients_float64(shape, k, s, p, ceil_mode):
    x = np.random.default_rng(2).standard_normal(shape)
    check_grad(lambda t: F.max_pool2d(t, k, s, p, ceil_mode), [x], name="max_pool2d")
    for include in (True, False):
        check_grad(lambda t: F.avg_pool2d(t, k, s, p, ceil_mode, include), [x],
                   name="avg_pool2d")


def test_gradients_elementwise_on_a_small_input():
    x = np.random.default_rng(3).standard_normal((1, 2, 5, 6))
    check_grad(lambda t: F.max_pool2d(t, 3, 2, 1, True), [x], max_elementwise=64)
    check_grad(lambda t: F.avg_pool2d(t, (2, 3), (2, 2), (1, 1), True, True), [x],
               max_elementwise=64)


def test_max_pool_ties_send_the_gradient_to_the_first_maximum():
    x = segnp.Tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 1  # the top-left pixel of each 2x2 window
    np.testing.assert_array_equal(x.grad[0, 0], expected)
    # With padding, the first *input* pixel of the window wins, never the padding.
    x = segnp.Tensor(np.full((1, 1, 3, 3), -np.inf), requires_grad=True)
    y = F.max_pool2d(x, 3, 2, 1)
    assert np.all(y.numpy() == -np.inf)
    y.sum().backward()
    assert x.grad.sum() == y.size and x.grad[0, 0, 0, 0] == 1


def test_max_pool_propagates_nan():
    x = np.random.default_rng(4).standard_normal((1, 1, 4, 4))
    x[0, 0, 1, 2] = np.nan
    y = F.max_pool2d(x, 2).numpy()
    assert np.isnan(y[0, 0, 0, 1]) and np.isfinite(np.delete(y.ravel(), 1)).all()


def test_float32_stays_float32():
    x = segnp.Tensor(np.random.default_rng(5).standard_normal((2, 3, 9, 9), dtype=np.float32),
                     requires_grad=True)
    (F.max_pool2d(x, 3, 2, 1, True) + F.avg_pool2d(x, 3, 2, 1, True)).sum().backward()
    assert x.grad.dtype == np.float32


@pytest.mark.parametrize("fn", ["max_pool2d", "avg_pool2d"])
def test_bad_input_names_the_function_expected_and_given(fn):
    pool = getattr(F, fn)
    x = np.zeros((2, 3, 6, 6))
    with pytest.raises(TypeError, match=fn + r": x must be a floating-point array .*got dtype int64"):
        pool(x.astype(np.int64), 2)
    with pytest.raises(ValueError, match=fn + r": padding must be >= 0; got -1"):
        pool(x, 2, padding=-1)
    with pytest.raises(ValueError, match=fn + r": padding must be at most half the kernel "
                                              r"size, i.e. <= \(1, 1\) for kernel_size "
                                              r"\(3, 3\); got \(2, 2\)"):
        pool(x, 3, padding=2)
    with pytest.raises(ValueError, match=fn + r": x must be \(N, C, H, W\); got shape \(6, 6\)"):
        pool(x[0, 0], 2)
    with pytest.raises(ValueError, match=fn + r": stride must be >= 1; got 0"):
        pool(x, 2, stride=0)
    with pytest.raises(ValueError, match=fn + r": a 7x7 window .* does not fit an input of size \(6, 6\)"):
        pool(x, 7)
