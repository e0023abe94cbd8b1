"""The NumPy segmentation-aware kernels against per-pixel loops written from the paper.

Forward kernels are compared element by element with the loops below (Eqs. 3, 4, 7 and
the distance of Sec. 4.2).  Backward kernels are compared with central differences of
those same loops along random directions, so neither side of a check comes from the
code under test alone.
"""
import re

import numpy as np
import pytest

import segnp.functions as F
from segnp.backends import get_backend
from segnp.window import NORM_EPS
from naive_ops import naive_masked_conv, norm_of
from windows import win

B = get_backend("numpy")

# (ksize, stride, padding, dilation); padding None is the default dilation*(ksize//2).
WINDOWS = [
    (3, 1, None, 1),
    (3, 1, None, 2),
    (3, 2, None, 1),
    (5, 2, 1, 2),
    (3, 1, 0, 1),
    (5, 3, 2, 1),
    (1, 1, None, 1),
]
NORMS = ["l1", "l2", "l2sq"]


# ---- the loops ---------------------------------------------------------------------
def out_len(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def window_of(H, W, ks, s, p, d):
    """Yield (oh, ow, centre (r, c), [(k, r, c, inside) for each tap])."""
    p = d * (ks // 2) if p is None else p
    OH, OW = out_len(H, ks, s, p, d), out_len(W, ks, s, p, d)
    for oh in range(OH):
        for ow in range(OW):
            centre = (oh * s - p + (ks // 2) * d, ow * s - p + (ks // 2) * d)
            taps = []
            for i in range(ks):
                for j in range(ks):
                    r, c = oh * s - p + i * d, ow * s - p + j * d
                    taps.append((i * ks + j, r, c, 0 <= r < H and 0 <= c < W))
            yield oh, ow, centre, taps


def shape_out(H, W, ks, s, p, d):
    p = d * (ks // 2) if p is None else p
    return out_len(H, ks, s, p, d), out_len(W, ks, s, p, d)


def loop_im2dist(e, ks, s, p, d, norm):
    N, D, H, W = e.shape
    out = np.zeros((N, ks * ks) + shape_out(H, W, ks, s, p, d))
    for n in range(N):
        for oh, ow, (cr, cc), taps in window_of(H, W, ks, s, p, d):
            for k, r, c, inside in taps:
                if inside:
                    out[n, k, oh, ow] = norm_of(e[n, :, cr, cc] - e[n, :, r, c], norm)
    return out


def loop_bilateral(x, m, ks, s, p, d):
    """Eq. 4: y_c(o) = sum_k x_c(tap_k(o)) m_k(o) / (sum_k m_k(o) + eps)."""
    N, C, H, W = x.shape
    y = np.zeros((N, C) + shape_out(H, W, ks, s, p, d))
    for n in range(N):
        for oh, ow, _, taps in window_of(H, W, ks, s, p, d):
            acc = np.zeros(C)
            for k, r, c, inside in taps:
                if inside:
                    acc += x[n, :, r, c] * m[n, k, oh, ow]
            y[n, :, oh, ow] = acc / (m[n, :, oh, ow].sum() + NORM_EPS)
    return y


def valid_of(N, H, W, ks, s, p, d):
    v = np.zeros((N, ks * ks) + shape_out(H, W, ks, s, p, d))
    for oh, ow, _, taps in window_of(H, W, ks, s, p, d):
        for k, r, c, inside in taps:
            v[:, k, oh, ow] = inside
    return v


def directional(f, args, index, g_kernel, gy, rng, h=1e-6):
    """<g_kernel, v> against (L(a + h v) - L(a - h v)) / 2h, L = <f(args), gy>."""
    v = rng.standard_normal(args[index].shape)
    plus, minus = list(args), list(args)
    plus[index] = args[index] + h * v
    minus[index] = args[index] - h * v
    numeric = ((f(*plus) - f(*minus)) * gy).sum() / (2 * h)
    analytic = (g_kernel * v).sum()
    assert abs(analytic - numeric) <= 1e-6 + 1e-5 * abs(numeric), (analytic, numeric)


def data(seed, N=2, C=3, D=4, H=7, W=9, F=5):
    rng = np.random.default_rng(seed)
    return (rng, rng.standard_normal((N, C, H, W)), rng.standard_normal((N, D, H, W)),
            rng.standard_normal((F, C)))


def mask_for(rng, N, H, W, ks, s, p, d):
    return rng.random((N, ks * ks) + shape_out(H, W, ks, s, p, d)) * valid_of(N, H, W, ks, s, p, d)


# ---- im2dist -------------------------------------------------------------------------
@pytest.mark.parametrize("ks,s,p,d", WINDOWS)
@pytest.mark.parametrize("norm", NORMS)
def test_im2dist_matches_loop(ks, s, p, d, norm):
    _, _, e, _ = data(1)
    got = B.im2dist(e, win(e, ks, s, p, d), norm)
    np.testing.assert_allclose(got, loop_im2dist(e, ks, s, p, d, norm), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ks,s,p,d", WINDOWS)
@pytest.mark.parametrize("norm", NORMS)
def test_im2dist_backward_matches_loop_derivative(ks, s, p, d, norm):
    rng, _, e, _ = data(2)
    w = win(e, ks, s, p, d)
    dist = B.im2dist(e, w, norm)
    gd = rng.standard_normal(dist.shape)
    ge = B.im2dist_backward(e, dist, gd, w, norm)
    assert ge.shape == e.shape and ge.dtype == e.dtype
    directional(lambda e_: loop_im2dist(e_, ks, s, p, d, norm), [e], 0, ge, gd, rng)


@pytest.mark.parametrize("norm", NORMS)
def test_im2dist_backward_is_zero_and_finite_at_coincident_embeddings(norm):
    e = np.ones((1, 3, 5, 6))
    dist = B.im2dist(e, win(e, 3), norm=norm)
    assert np.all(dist == 0)
    ge = B.im2dist_backward(e, dist, np.ones_like(dist), win(e, 3), norm=norm)
    assert np.all(np.isfinite(ge)) and np.all(ge == 0)


@pytest.mark.parametrize("norm", NORMS)
def test_im2dist_blocks_of_images_keep_the_values(monkeypatch, norm):
    """im2dist and its backward over blocks of images (here 2, 2 and 1 of 5, the rule
    for large maps) give the values of one block bit for bit, and those of the loop."""
    from segnp.backends.numpy import segaware as ns
    rng, _, e, _ = data(3, N=5)
    w = win(e, 3, 1, None, 2)
    gd = rng.standard_normal((5, 9) + e.shape[2:])
    runs = {}
    for block in (1 << 40, 2 * e[0].nbytes):
        monkeypatch.setattr(ns, "_DIST_BLOCK_BYTES", block)
        calls = []
        real = ns._im2dist_images
        monkeypatch.setattr(ns, "_im2dist_images", lambda e_, *a: (calls.append(len(e_)),
                                                                    real(e_, *a))[1])
        dist = B.im2dist(e, w, norm)
        runs[block] = (calls, dist, B.im2dist_backward(e, dist, gd, w, norm))
        monkeypatch.setattr(ns, "_im2dist_images", real)
    (one, d1, g1), (blocks, d2, g2) = runs.values()
    assert one == [5] and blocks == [2, 2, 1]
    np.testing.assert_array_equal(d2, d1)
    np.testing.assert_array_equal(g2, g1)
    np.testing.assert_allclose(d2, loop_im2dist(e, 3, 1, None, 2, norm), rtol=1e-12,
                               atol=1e-12)


def test_im2dist_keeps_float32():
    e = np.random.default_rng(0).standard_normal((1, 2, 5, 5)).astype(np.float32)
    dist = B.im2dist(e, win(e, 3))
    assert dist.dtype == np.float32
    assert B.im2dist_backward(e, dist, np.ones_like(dist), win(e, 3)).dtype == np.float32


# ---- masked convolution (Eq. 7) -------------------------------------------------------
@pytest.mark.parametrize("ks,s,p,d", WINDOWS)
@pytest.mark.parametrize("normalize", [True, False])
def test_masked_conv_matches_loop(ks, s, p, d, normalize):
    rng, x, _, _ = data(3)
    N, C, H, W = x.shape
    Wt = rng.standard_normal((5, C, ks, ks))
    m = mask_for(rng, N, H, W, ks, s, p, d)
    got = B.masked_conv(x, m, Wt, win(x, ks, s, p, d), normalize)
    np.testing.assert_allclose(got, naive_masked_conv(x, m, Wt, s, p, d, normalize),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ks,s,p,d", WINDOWS)
@pytest.mark.parametrize("normalize", [True, False])
def test_masked_conv_backward_matches_loop_derivative(ks, s, p, d, normalize):
    rng, x, _, _ = data(4)
    N, C, H, W = x.shape
    Wt = rng.standard_normal((5, C, ks, ks))
    # Masks bounded away from 0 keep the normalised quotient smooth for the differences.
    m = (0.2 + rng.random((N, ks * ks) + shape_out(H, W, ks, s, p, d))) \
        * valid_of(N, H, W, ks, s, p, d)
    gy = rng.standard_normal((N, 5) + m.shape[2:])
    gx, gm, gW = B.masked_conv_backward(x, m, Wt, gy, win(x, ks, s, p, d), normalize)
    assert (gx.shape, gm.shape, gW.shape) == (x.shape, m.shape, Wt.shape)

    def f(x_, m_, W_):
        return naive_masked_conv(x_, m_, W_, s, p, d, normalize)

    for i, g in enumerate((gx, gm, gW)):
        directional(f, [x, m, Wt], i, g, gy, rng)


@pytest.mark.parametrize("ks,s,p,d", [w for w in WINDOWS if w[1] == 1])
def test_masked_conv_in_canvas_chunks_matches_loop(monkeypatch, request, ks, s, p, d):
    """Stride 1 runs on column chunks of a padded canvas: chunks of 7 columns (a
    partial last one, taps reaching into the next chunks) give the loop's results, and
    spread over two threads the same bits as one after another."""
    from segnp.backends.numpy import masked_conv as ns
    rng, x, _, _ = data(3)
    N, C, H, W = x.shape
    Wt = rng.standard_normal((5, C, ks, ks))
    m = mask_for(rng, N, H, W, ks, s, p, d)
    gy = rng.standard_normal((N, 5) + m.shape[2:])
    w = win(x, ks, s, p, d)
    whole = ns.masked_conv_backward(x, m, Wt, gy, w)
    monkeypatch.setattr(ns, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(ns, "_MIN_CHUNK", 7)
    serial = (ns.masked_conv(x, m, Wt, w),) + ns.masked_conv_backward(x, m, Wt, gy, w)
    np.testing.assert_allclose(serial[0], naive_masked_conv(x, m, Wt, s, p, d, True),
                               rtol=1e-10, atol=1e-12)
    for got, want in zip(serial[1:], whole):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    fake = request.getfixturevalue("spread")
    spread = (ns.masked_conv(x, m, Wt, w),) + ns.masked_conv_backward(x, m, Wt, gy, w)
    assert fake.calls and fake.calls == [1, 2] * (len(fake.calls) // 2)  # spread, restored
    for a, b in zip(spread, serial):
        assert np.array_equal(a, b)


def test_masked_conv_backward_computes_only_what_is_asked():
    rng, x, _, _ = data(5)
    Wt = rng.standard_normal((5, 3, 3, 3))
    m = mask_for(rng, 2, 7, 9, 3, 1, None, 1)
    gy = rng.standard_normal((2, 5, 7, 9))
    full = B.masked_conv_backward(x, m, Wt, gy, win(x, 3))
    for flags in [(True, False, False), (False, True, False), (False, False, True)]:
        part = B.masked_conv_backward(x, m, Wt, gy, win(x, 3), need_x=flags[0],
                                      need_m=flags[1], need_W=flags[2])
        for want, got, g in zip(flags, part, full):
            if want:
                np.testing.assert_allclose(got, g, rtol=1e-12, atol=1e-12)
            else:
                assert got is None


def test_masked_conv_float32_and_bad_shapes():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 2, 6, 5)).astype(np.float32)
    Wt = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    m = np.ones((1, 9, 6, 5), np.float32)
    w = win(x, 3)
    y = B.masked_conv(x, m, Wt, w)
    assert y.dtype == np.float32
    assert all(g.dtype == np.float32 for g in B.masked_conv_backward(x, m, Wt, y, w))
    with pytest.raises(ValueError, match=r"masked_conv: m must be \(N, K, OH, OW\) = "
                                         r"\(1, 9, 6, 5\); got \(1, 9, 6, 4\)"):
        B.masked_conv(x, m[..., :4], Wt, w)
    with pytest.raises(ValueError, match=r"masked_conv: W must be \(F, C, KS, KS\) = "
                                         r"\(3, 2, 3, 3\); got \(3, 1, 3, 3\)"):
        B.masked_conv(x, m, Wt[:, :1], w)
    # The window and the dtypes are checked once, by the public function.
    with pytest.raises(ValueError, match="segaware_conv2d: padding must be at most"):
        F.segaware_conv2d(x, np.zeros_like(x), Wt, padding=2)
    with pytest.raises(TypeError, match="segaware_conv2d: expected one floating dtype"):
        F.segaware_conv2d(x, np.zeros_like(x, dtype=np.float64), Wt)


# ---- bilateral filter (Eq. 4) ---------------------------------------------------------
@pytest.mark.parametrize("ks,s,p,d", WINDOWS)
def test_bilateral_matches_loop(ks, s, p, d):
    rng, x, _, _ = data(7)
    N, C, H, W = x.shape
    m = mask_for(rng, N, H, W, ks, s, p, d)
    np.testing.assert_allclose(B.bilateral(x, m, win(x, ks, s, p, d)),
                               loop_bilateral(x, m, ks, s, p, d), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ks,s,p,d", WINDOWS)
def test_bilateral_backward_matches_loop_derivative(ks, s, p, d):
    rng, x, _, _ = data(8)
    N, C, H, W = x.shape
    m = (0.2 + rng.random((N, ks * ks) + shape_out(H, W, ks, s, p, d))) \
        * valid_of(N, H, W, ks, s, p, d)
    gy = rng.standard_normal((N, C) + m.shape[2:])
    w = win(x, ks, s, p, d)
    gx, gm = B.bilateral_backward(x, m, gy, w)
    assert (gx.shape, gm.shape) == (x.shape, m.shape)
    gx_only, none = B.bilateral_backward(x, m, gy, w, need_m=False)
    assert none is None
    np.testing.assert_allclose(gx_only, gx, rtol=1e-12, atol=1e-12)

    def f(x_, m_):
        return loop_bilateral(x_, m_, ks, s, p, d)

    directional(f, [x, m], 0, gx, gy, rng)
    directional(f, [x, m], 1, gm, gy, rng)


@pytest.mark.parametrize("ks,s,p,d", [w for w in WINDOWS if w[1] == 1] + [(5, 1, None, 1)])
@pytest.mark.parametrize("most", [0, np.inf])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bilateral_on_the_canvas_and_on_rectangles_match_the_loop(monkeypatch, ks, s, p, d,
                                                                  most, dtype):
    """Stride 1 runs the filter and its gx on a padded canvas unless that canvas is
    much larger than the output: forced either way (and counted, so that the path
    that ran is the one forced), every window gives the loop, in x's dtype.  The 5x5
    window on a 2x3 image has taps wholly outside it."""
    from segnp.backends.numpy import segaware as ns
    monkeypatch.setattr(ns, "_MOST_PADDING", most)
    ran = []
    for name in ("_bilateral_canvas", "_bilateral_gx_canvas"):
        real = getattr(ns, name)
        monkeypatch.setattr(ns, name, lambda *a, _real=real, _name=name: (
            ran.append(_name), _real(*a))[1])
    rng, x, _, _ = data(11)
    if ks == 5:
        x = x[:, :, :2, :3]
    x = x.astype(dtype)
    N, C, H, W = x.shape
    m = mask_for(rng, N, H, W, ks, s, p, d).astype(dtype)
    gy = rng.standard_normal((N, C) + m.shape[2:]).astype(dtype)
    w = win(x, ks, s, p, d)
    y = B.bilateral(x, m, w)
    gx, _ = B.bilateral_backward(x, m, gy, w, need_m=False)
    assert ran == ([] if most == 0 else ["_bilateral_canvas", "_bilateral_gx_canvas"])
    assert y.dtype == gx.dtype == dtype
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, loop_bilateral(x, m, ks, s, p, d), **tol)
    if dtype == np.float64:
        directional(lambda x_: loop_bilateral(x_, m, ks, s, p, d), [x], 0, gx, gy, rng)
    else:  # float32 against the float64 kernel: the same sums, rounded
        gx64, _ = B.bilateral_backward(x.astype(np.float64), m.astype(np.float64),
                                       gy.astype(np.float64), w, need_m=False)
        np.testing.assert_allclose(gx, gx64, **tol)


def loop_passes(x, m, ks, d, repeat):
    """Eq. 4 ``repeat`` times with one mask (stride 1, the default padding)."""
    for _ in range(repeat):
        x = loop_bilateral(x, m, ks, 1, None, d)
    return x


@pytest.mark.parametrize("ks,d", [(3, 1), (3, 2), (1, 1), (5, 1)])
@pytest.mark.parametrize("repeat", [1, 2, 3])
@pytest.mark.parametrize("most", [0, np.inf])
def test_bilateral_repeat_matches_the_loop(monkeypatch, ks, d, repeat, most):
    """The repeated filter, on the canvas (the mask laid out once, the passes' mask
    gradients summed tap by tap) and on rectangles (pass by pass), against Eq. 4's loop
    applied ``repeat`` times: the passes element by element, gx and gm along random
    directions, and gm element by element against the passes' bilateral_backward
    summed.  The 5x5 window on a 2x3 image has taps wholly outside it."""
    from segnp.backends.numpy import segaware as ns
    monkeypatch.setattr(ns, "_MOST_PADDING", most)
    ran = []
    real = ns._bilateral_canvas
    monkeypatch.setattr(ns, "_bilateral_canvas", lambda *a: (ran.append(1), real(*a))[1])
    rng, x, _, _ = data(12)
    if ks == 5:
        x = x[:, :, :2, :3]
    N, C, H, W = x.shape
    m = mask_for(rng, N, H, W, ks, 1, None, d)
    gy = rng.standard_normal(x.shape)
    w = win(x, ks, 1, None, d)
    ys = B.bilateral_repeat(x, m, w, repeat)
    assert len(ys) == repeat and len(ran) == (0 if most == 0 else repeat)
    for r, y in enumerate(ys):
        np.testing.assert_allclose(y, loop_passes(x, m, ks, d, r + 1), rtol=1e-10, atol=1e-12)
    gx, gm = B.bilateral_repeat_backward(x, ys, m, gy, w)
    assert (gx.shape, gm.shape) == (x.shape, m.shape)

    def f(x_, m_):
        return loop_passes(x_, m_, ks, d, repeat)

    directional(f, [x, m], 0, gx, gy, rng)
    directional(f, [x, m], 1, gm, gy, rng)
    g, passes = gy, 0
    for r in reversed(range(repeat)):
        g, gm_r = B.bilateral_backward(ys[r - 1] if r else x, m, g, w)
        passes = passes + gm_r
    np.testing.assert_allclose(gx, g, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gm, passes, rtol=1e-10, atol=1e-12)
    gx_only, none = B.bilateral_repeat_backward(x, ys, m, gy, w, need_m=False)
    none2, gm_only = B.bilateral_repeat_backward(x, ys, m, gy, w, need_x=False)
    assert none is None and none2 is None
    np.testing.assert_array_equal(gx_only, gx)
    np.testing.assert_array_equal(gm_only, gm)


def test_bilateral_repeat_backward_gm_blocks_keep_the_sums(monkeypatch):
    """The mask gradient summed in column blocks (at least 512 columns; here 5 blocks of
    the 2 x 34 x 34 canvas) equals the sum over whole rows bit for bit: each column
    adds the same products in the same order.  Also against the passes'
    bilateral_backward, so that a block written to the wrong columns cannot pass."""
    from segnp.backends.numpy import segaware as ns
    rng, x, _, _ = data(14, H=30, W=30)
    N, C, H, W = x.shape
    m = mask_for(rng, N, H, W, 5, 1, None, 1)
    gy = rng.standard_normal(x.shape)
    w = win(x, 5)
    ys = B.bilateral_repeat(x, m, w, 3)
    assert ns.Canvas.applies(w, x, ns._MOST_PADDING) and ns.Canvas(w, x).L > 4 * 512
    monkeypatch.setattr(ns, "_GM_BLOCK_BYTES", 1 << 40)
    whole = B.bilateral_repeat_backward(x, ys, m, gy, w)
    monkeypatch.setattr(ns, "_GM_BLOCK_BYTES", 1)
    blocks = B.bilateral_repeat_backward(x, ys, m, gy, w)
    for got, want in zip(blocks, whole):
        np.testing.assert_array_equal(got, want)
    g, passes = gy, 0
    for r in reversed(range(3)):
        g, gm_r = B.bilateral_backward(ys[r - 1] if r else x, m, g, w)
        passes = passes + gm_r
    np.testing.assert_allclose(blocks[1], passes, rtol=1e-10, atol=1e-12)


def test_bilateral_repeat_keeps_the_sums_of_one_pass():
    """One pass is :func:`bilateral` and its backward, bit for bit (the Table 1 rows
    that filter once are unchanged by the fused path)."""
    rng, x, _, _ = data(13)
    N, C, H, W = x.shape
    m = mask_for(rng, N, H, W, 3, 1, None, 1)
    gy = rng.standard_normal(x.shape)
    w = win(x, 3)
    y, = B.bilateral_repeat(x, m, w, 1)
    np.testing.assert_array_equal(y, B.bilateral(x, m, w))
    for got, want in zip(B.bilateral_repeat_backward(x, (y,), m, gy, w),
                         B.bilateral_backward(x, m, gy, w)):
        np.testing.assert_array_equal(got, want)


def test_bilateral_repeat_checks_its_launch():
    rng, x, _, _ = data(14)
    N, C, H, W = x.shape
    m3 = mask_for(rng, N, H, W, 3, 1, None, 1)
    keeps_size = (r": win must keep the input's size \(stride 1, the default padding\): "
                  r"its output \(OH, OW\) must be \(7, 9\); got \(4, 5\)$")
    m2, w2 = mask_for(rng, N, H, W, 3, 2, None, 1), win(x, 3, 2)
    with pytest.raises(ValueError, match="bilateral_repeat" + keeps_size):
        B.bilateral_repeat(x, m2, w2, 2)
    with pytest.raises(ValueError, match="bilateral_repeat_backward" + keeps_size):
        B.bilateral_repeat_backward(x, (x,), m2, m2[:, :C], w2)
    with pytest.raises(ValueError, match=r"bilateral_repeat: repeat must be >= 1; got 0$"):
        B.bilateral_repeat(x, m3, win(x, 3), 0)
    with pytest.raises(ValueError, match=r"bilateral_repeat_backward: ys must hold at least "
                                         r"one pass's output, each \(N, C, H, W\) = "
                                         r"\(2, 3, 7, 9\); got none$"):
        B.bilateral_repeat_backward(x, (), m3, x, win(x, 3))
    with pytest.raises(ValueError, match=r"bilateral_repeat_backward: ys\[1\] must be "):
        B.bilateral_repeat_backward(x, (x, x[:, :2]), m3, x, win(x, 3))


@pytest.mark.parametrize("N,C", [(0, 3), (2, 0)])
def test_bilateral_of_an_empty_batch_or_no_channels(N, C):
    x = np.zeros((N, C, 5, 6))
    m = np.ones((N, 9, 5, 6))
    w = win(x, 3)
    y = B.bilateral(x, m, w)
    gx, gm = B.bilateral_backward(x, m, np.zeros_like(y), w)
    assert (y.shape, gx.shape, gm.shape) == (x.shape, x.shape, m.shape)
    assert not np.any(gm)


def test_bilateral_of_a_fully_masked_window_is_zero_not_nan():
    x = np.ones((1, 2, 4, 4))
    m = np.zeros((1, 9, 4, 4))
    y = B.bilateral(x, m, win(x, 3))
    assert np.all(y == 0)
    gx, gm = B.bilateral_backward(x, m, np.ones_like(y), win(x, 3))
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gm))


def test_kernels_reject_even_windows_and_wide_padding():
    e = np.zeros((1, 2, 6, 6))
    # the window is checked where it is built, once (the public functions' Window)
    with pytest.raises(ValueError, match="im2dist: ksize must be odd"):
        F.im2dist(e, 4)
    with pytest.raises(ValueError, match=r"im2dist: padding must be at most dilation\*"
                                         r"\(ksize//2\) = \(2, 2\) .*got \(3, 3\)"):
        F.im2dist(e, 3, padding=3, dilation=2)
    with pytest.raises(ValueError, match=r"bilateral: m must be \(N, K, OH, OW\)"):
        B.bilateral(np.zeros((1, 2, 6, 6)), np.zeros((1, 25, 6, 6)), win(e, 3))


def test_kernels_accept_non_contiguous_views():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 7, 9, 3)).transpose(0, 3, 1, 2)  # (2, 3, 7, 9), a view
    e = rng.standard_normal((2, 7, 9, 4)).transpose(0, 3, 1, 2)
    Wt = rng.standard_normal((3, 3, 5, 4)).transpose(3, 0, 1, 2)[..., ::2]  # (4, 3, 3, 3)
    m = mask_for(rng, 2, 7, 9, 3, 2, None, 1)[:, ::-1]
    xc, ec, Wc, mc = (np.ascontiguousarray(a) for a in (x, e, Wt, m))
    w = win(x, 3, 2)
    np.testing.assert_array_equal(B.im2dist(e, w), B.im2dist(ec, w))
    np.testing.assert_allclose(B.masked_conv(x, m, Wt, w), B.masked_conv(xc, mc, Wc, w),
                               rtol=1e-13)
    np.testing.assert_allclose(B.bilateral(x, m, w), B.bilateral(xc, mc, w), rtol=1e-13)
    gy = rng.standard_normal((2, 4, 4, 5))[:, :, ::-1]
    for a, b in zip(B.masked_conv_backward(x, m, Wt, gy, w),
                    B.masked_conv_backward(xc, mc, Wc, np.ascontiguousarray(gy), w)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_canvas_fills_only_an_out_of_its_own_layout():
    """Canvas.image / on_outputs write into ``out`` only if it is the C-ordered array of
    the canvas's shape and x's dtype: another dtype would be cast into silently, another
    column count (the image's tail missing) filled without complaint."""
    from segnp.backends.numpy.canvas import Canvas
    rng, x, _, _ = data(15)
    N, C, H, W = x.shape
    cv = Canvas(win(x, 3), x)
    m = mask_for(rng, N, H, W, 3, 1, None, 1)
    cols = cv.L + cv.tail
    out = np.empty((C, cols))
    assert cv.image(out=out) is out
    np.testing.assert_array_equal(out, cv.image())
    for bad, got in ((np.empty((2 * C, cols))[::2], f"({C}, {cols}) float64, not C-contiguous"),
                     (np.empty((cols, C)).T, f"({C}, {cols}) float64, not C-contiguous"),
                     (np.empty((C, cv.L)), f"({C}, {cv.L}) float64"),
                     (np.empty((C, cols), np.float32), f"({C}, {cols}) float32")):
        with pytest.raises(ValueError, match=re.escape(
                f"Canvas.image: out must be a C-contiguous ({C}, {cols}) float64 array; "
                f"got {got}") + "$"):
            cv.image(out=bad)
    with pytest.raises(ValueError, match=re.escape(f"Canvas.on_outputs: out must be a "
                                                   f"C-contiguous (9, {cv.L}) float64 "
                                                   f"array; got (9, {cols}) float64")):
        cv.on_outputs(m, out=np.empty((9, cols)))


@pytest.mark.parametrize("N,C", [(0, 3), (2, 0)])
def test_numpy_masked_conv_backward_of_an_empty_batch_or_no_channels(N, C):
    from segnp.backends.numpy import masked_conv as ns
    x = np.zeros((N, C, 5, 5), np.float32)
    m = np.ones((N, 9, 5, 5), np.float32)
    W = np.ones((4, C, 3, 3), np.float32)
    gy = np.ones((N, 4, 5, 5), np.float32)
    gx, gm, gW = ns.masked_conv_backward(x, m, W, gy, win(x, 3, 1, 1, 1), True)
    assert gx.shape == (N, C, 5, 5) and gm.shape == (N, 9, 5, 5) and gW.shape == (4, C, 3, 3)
    assert not gm.any() and not gW.any()
