"""segnp.functions segmentation-aware ops: gradients, the special cases of Sec. 3.2 and
Eq. 7's equalities with conv2d, and the errors they raise."""
import re

import numpy as np
import pytest
from scipy import ndimage

import segnp
import segnp.functions as F
from segnp import Tensor, check_grad
from segnp.window import NORM_EPS
from naive_ops import naive_masked_conv, norm_of

NORMS = ["l1", "l2", "l2sq"]


def rand(rng, *shape):
    return rng.standard_normal(shape)


def coords(H, W, sigma):
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    return np.stack([rows, cols]).astype(np.float64) / sigma


# ---- the differentiable ops against per-pixel loops from Eqs. 3, 4 and 7 -------------
def loop_mask(e, lam, ks, s, p, d, norm, include_center=True):
    """Eq. 3 pixel by pixel: m = exp(-lam ||e_centre - e_tap||) at taps inside the
    image (the centre being tap K//2), 0 elsewhere."""
    N, _, H, W = e.shape
    p = d * (ks // 2) if p is None else p
    OH, OW = (H + 2 * p - d * (ks - 1) - 1) // s + 1, (W + 2 * p - d * (ks - 1) - 1) // s + 1
    m = np.zeros((N, ks * ks, OH, OW))
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                cr, cc = oh * s - p + (ks // 2) * d, ow * s - p + (ks // 2) * d
                for i in range(ks):
                    for j in range(ks):
                        r, c = oh * s - p + i * d, ow * s - p + j * d
                        k = i * ks + j
                        if not (0 <= r < H and 0 <= c < W) \
                                or (k == ks * ks // 2 and not include_center):
                            continue
                        m[n, k, oh, ow] = np.exp(-lam * norm_of(e[n, :, cr, cc]
                                                                - e[n, :, r, c], norm))
    return m


def loop_conv(x, e, Wt, b, lam, s, p, d, norm, normalize):
    """Eq. 7 pixel by pixel: sum_{c,k} W x m / (sum_k m + eps) + b."""
    m = loop_mask(e, lam, Wt.shape[2], s, p, d, norm)
    return naive_masked_conv(x, m, Wt, s, p, d, normalize) + b.reshape(1, -1, 1, 1)


def loop_bilateral(x, e, lam, ks, d, norm, include_center, repeat):
    """Eq. 4 pixel by pixel, ``repeat`` times with the mask of the first pass."""
    N, C, H, W = x.shape
    m = loop_mask(e, lam, ks, 1, None, d, norm, include_center)
    r0 = d * (ks // 2)
    for _ in range(repeat):
        y = np.zeros_like(x)
        for n in range(N):
            for i0 in range(H):
                for j0 in range(W):
                    acc = np.zeros(C)
                    for i in range(ks):
                        for j in range(ks):
                            r, c = i0 - r0 + i * d, j0 - r0 + j * d
                            if 0 <= r < H and 0 <= c < W:
                                acc += x[n, :, r, c] * m[n, i * ks + j, i0, j0]
                    y[n, :, i0, j0] = acc / (m[n, :, i0, j0].sum() + NORM_EPS)
        x = y
    return x


LOOP_WINDOWS = [(3, 1, None, 1), (3, 2, None, 1), (5, 2, 1, 2), (3, 1, 0, 1), (5, 3, 2, 1),
                (3, 1, None, 3)]


@pytest.mark.parametrize("ks,s,p,d", LOOP_WINDOWS)
@pytest.mark.parametrize("norm", NORMS)
def test_segaware_mask_matches_loop(ks, s, p, d, norm):
    rng = np.random.default_rng(20)
    e = rand(rng, 2, 3, 7, 9)
    for include_center in (True, False):
        got = F.segaware_mask(e, 0.7, ks, s, p, d, norm, include_center).numpy()
        np.testing.assert_allclose(got, loop_mask(e, 0.7, ks, s, p, d, norm, include_center),
                                   rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("ks,s,p,d", LOOP_WINDOWS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("normalize", [True, False])
def test_segaware_conv2d_matches_loop(ks, s, p, d, norm, normalize):
    rng = np.random.default_rng(21)
    x, e, W, b = rand(rng, 2, 3, 7, 9), rand(rng, 2, 2, 7, 9), rand(rng, 4, 3, ks, ks), rand(rng, 4)
    got = F.segaware_conv2d(x, e, W, b, 0.4, s, p, d, norm, normalize).numpy()
    np.testing.assert_allclose(got, loop_conv(x, e, W, b, 0.4, s, p, d, norm, normalize),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ks,d,norm,include_center,repeat", [
    (3, 1, "l1", True, 1), (3, 2, "l2", False, 2), (5, 1, "l2sq", True, 1),
    (5, 3, "l1", False, 1), (1, 1, "l2", True, 2)])
def test_segaware_bilateral_matches_loop(ks, d, norm, include_center, repeat):
    rng = np.random.default_rng(22)
    x, e = rand(rng, 2, 3, 7, 9), rand(rng, 2, 2, 7, 9)
    got = F.segaware_bilateral(x, e, 0.9, ks, d, norm, repeat, include_center).numpy()
    np.testing.assert_allclose(got, loop_bilateral(x, e, 0.9, ks, d, norm, include_center,
                                                   repeat), rtol=1e-10, atol=1e-12)


# ---- gradients ---------------------------------------------------------------------
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("stride,padding,dilation", [(1, None, 1), (2, None, 1),
                                                      (2, 1, 2), (1, 0, 1)])
@pytest.mark.parametrize("normalize", [True, False])
def test_segaware_conv2d_gradients(norm, stride, padding, dilation, normalize):
    rng = np.random.default_rng(0)
    x, e, W, b = rand(rng, 2, 3, 7, 6), rand(rng, 2, 4, 7, 6), rand(rng, 4, 3, 3, 3), rand(rng, 4)

    def f(x, e, W, b, lam):
        return F.segaware_conv2d(x, e, W, b, lam, stride, padding, dilation, norm, normalize)

    check_grad(f, [x, e, W, b, np.array(0.6)])


def test_segaware_conv2d_gradient_of_lam_at_zero_is_nonzero():
    rng = np.random.default_rng(1)
    x, e, W = rand(rng, 1, 2, 6, 5), rand(rng, 1, 3, 6, 5), rand(rng, 3, 2, 3, 3)
    gy = rand(rng, 1, 3, 6, 5)

    def loss(value):
        lam = Tensor(np.array(value), requires_grad=True)
        y = F.segaware_conv2d(x, e, W, None, lam)
        out = (y * Tensor(gy)).sum()
        out.backward()
        return out.item(), lam.grad

    # lam < 0 is rejected, so the check is one-sided: a second-order forward difference.
    h = 1e-5
    l0, g0 = loss(0.0)
    l1, _ = loss(h)
    l2, _ = loss(2 * h)
    numeric = (-3 * l0 + 4 * l1 - l2) / (2 * h)
    assert abs(g0 - numeric) <= 1e-6 + 1e-5 * abs(numeric)
    assert abs(g0) > 1e-3


@pytest.mark.parametrize("norm", NORMS)
def test_segaware_bilateral_gradients(norm):
    rng = np.random.default_rng(2)
    x, e = rand(rng, 2, 3, 7, 8), rand(rng, 2, 2, 7, 8)
    check_grad(lambda x, e, lam: F.segaware_bilateral(x, e, lam, 3, 2, norm, repeat=2),
               [x, e, np.array(0.8)])
    check_grad(lambda x, e, lam: F.segaware_bilateral(x, e, lam, 5, 1, norm,
                                                      include_center=False),
               [x, e, np.array(0.3)])


@pytest.mark.parametrize("norm", NORMS)
def test_segaware_bilateral_repeated_on_the_canvas_gradients(monkeypatch, norm):
    """Three passes through the NumPy canvas (the mask laid out once, the passes' mask
    gradients summed by the kernel): the 3x3 window on 10x11 pads to a canvas 1.4x the
    image, under the canvas's limit; the fused backward ran, and the pass-by-pass one
    (which also gathers gx on the canvas) did not."""
    from segnp.backends.numpy import segaware as ns
    ran, fallback = [], []
    real = ns._bilateral_gx_canvas
    monkeypatch.setattr(ns, "_bilateral_gx_canvas", lambda *a: (ran.append(1), real(*a))[1])
    monkeypatch.setattr(ns, "filter_passes_backward", lambda *a: fallback.append(1))
    rng = np.random.default_rng(3)
    x, e = rand(rng, 2, 2, 10, 11), rand(rng, 2, 3, 10, 11)
    check_grad(lambda x, e, lam: F.segaware_bilateral(x, e, lam, 3, 1, norm, repeat=3),
               [x, e, np.array(0.6)])
    assert ran and not fallback


@pytest.mark.parametrize("norm", NORMS)
def test_segaware_mask_and_im2dist_gradients(norm):
    rng = np.random.default_rng(3)
    e = rand(rng, 2, 3, 5, 7)
    check_grad(lambda e, lam: F.segaware_mask(e, lam, 3, 2, 1, 2, norm, include_center=False),
               [e, np.array(1.3)])
    check_grad(lambda e: F.im2dist(e, 5, 1, None, 1, norm), [e])


@pytest.mark.parametrize("norm", NORMS)
def test_constant_embeddings_give_finite_gradients(norm):
    rng = np.random.default_rng(4)
    x, W = rand(rng, 1, 2, 6, 6), rand(rng, 3, 2, 3, 3)
    e = Tensor(np.full((1, 3, 6, 6), 0.7), requires_grad=True)
    lam = Tensor(np.array(2.0), requires_grad=True)
    y = F.segaware_conv2d(Tensor(x), e, Tensor(W), None, lam, norm=norm)
    (y * Tensor(rand(rng, *y.shape))).sum().backward()
    assert np.all(np.isfinite(e.grad)) and np.isfinite(lam.grad)
    # Every distance is 0: each pair's gradient is 0 there (for 'l1' and 'l2' by the
    # choice of subgradient), and lam's, -sum(gm * d * m), is 0 as well.
    assert np.all(e.grad == 0) and lam.grad == 0


@pytest.mark.parametrize("norm", NORMS)
def test_gradcheck_at_constant_embeddings(norm):
    # Every pair coincides: 'l1' and 'l2' have a kink at every distance, where the
    # central difference is 0 by symmetry, the subgradient the kernels take.
    rng = np.random.default_rng(15)
    x, W, b = rand(rng, 1, 2, 5, 6), rand(rng, 2, 2, 3, 3), rand(rng, 2)
    e = np.full((1, 2, 5, 6), -0.4)
    grads = check_grad(lambda x, e, W, b, lam: F.segaware_conv2d(x, e, W, b, lam, 2,
                                                                 norm=norm),
                       [x, e, W, b, np.array(1.5)])
    assert all(np.all(np.isfinite(g)) for g in grads)
    grads = check_grad(lambda x, e, lam: F.segaware_bilateral(x, e, lam, 3, 1, norm,
                                                              include_center=False),
                       [x, e, np.array(1.5)])
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_l2_gradient_at_coincident_embeddings():
    # Two flat regions: most pairs coincide (delta = 0), where 'l2' is not differentiable;
    # its central difference is 0 by symmetry, which is the gradient we define there.
    rng = np.random.default_rng(5)
    e = np.zeros((1, 2, 6, 7))
    e[:, 0, :, 4:] = 1.5
    x = rand(rng, 1, 2, 6, 7)
    check_grad(lambda x, e, lam: F.segaware_bilateral(x, e, lam, 3, 1, "l2"),
               [x, e, np.array(0.9)])
    W = rand(rng, 2, 2, 3, 3)
    check_grad(lambda e: F.segaware_conv2d(x, e, W, None, 0.9, norm="l2", stride=2), [e])


def test_float32_stays_float32():
    rng = np.random.default_rng(6)
    x = Tensor(rand(rng, 1, 2, 5, 5).astype(np.float32), requires_grad=True)
    e = Tensor(rand(rng, 1, 3, 5, 5).astype(np.float32), requires_grad=True)
    W = Tensor(rand(rng, 2, 2, 3, 3).astype(np.float32), requires_grad=True)
    lam = Tensor(np.array(0.5, np.float32), requires_grad=True)
    y = F.segaware_conv2d(x, e, W, None, lam)
    z = F.segaware_bilateral(y, e, lam, 3)
    assert y.dtype == z.dtype == np.float32
    z.sum().backward()
    assert all(t.grad.dtype == np.float32 for t in (x, e, W, lam))


# ---- special cases of Sec. 3.2 ----------------------------------------------------------
@pytest.mark.parametrize("ksize,dilation", [(3, 1), (5, 1), (3, 2)])
def test_zero_embeddings_give_the_box_filter_over_valid_taps(ksize, dilation):
    rng = np.random.default_rng(7)
    x = rand(rng, 2, 3, 9, 8)
    y = F.segaware_bilateral(x, np.zeros((2, 4, 9, 8)), 5.0, ksize, dilation).numpy()
    footprint = np.zeros((1, 1) + (dilation * (ksize - 1) + 1,) * 2)
    footprint[..., ::dilation, ::dilation] = 1
    total = ndimage.correlate(x, footprint, mode="constant")
    count = ndimage.correlate(np.ones_like(x), footprint, mode="constant")
    np.testing.assert_allclose(y, total / (count + NORM_EPS), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, total / count, rtol=1e-6)


@pytest.mark.parametrize("sigma,ksize", [(1.0, 7), (1.5, 9)])
def test_coordinate_embeddings_give_gaussian_smoothing(sigma, ksize):
    rng = np.random.default_rng(8)
    H, W = 21, 19
    x = rand(rng, 1, 2, H, W)
    e = coords(H, W, sigma)[None]
    y = F.segaware_bilateral(x, e, 0.5, ksize, 1, "l2sq").numpy()
    r = ksize // 2
    ref = ndimage.gaussian_filter(x, sigma=(0, 0, sigma, sigma), truncate=r / sigma,
                                  mode="constant")
    np.testing.assert_allclose(y[..., r:-r, r:-r], ref[..., r:-r, r:-r], rtol=1e-6, atol=1e-9)


def test_coordinate_and_colour_embeddings_give_the_bilateral_filter():
    rng = np.random.default_rng(9)
    H, W, r, sigma_s, sigma_r = 11, 12, 2, 1.5, 0.4
    image = rng.random((H, W))
    e = np.concatenate([coords(H, W, sigma_s), image[None] / sigma_r])[None]
    y = F.segaware_bilateral(image[None, None], e, 0.5, 2 * r + 1, 1, "l2sq").numpy()[0, 0]
    # The classic filter (Tomasi and Manduchi): weights G_s(|p - q|) G_r(|I_p - I_q|).
    ref = np.zeros((H, W))
    for i in range(H):
        for j in range(W):
            num = den = 0.0
            for a in range(max(0, i - r), min(H, i + r + 1)):
                for b in range(max(0, j - r), min(W, j + r + 1)):
                    w = np.exp(-((a - i) ** 2 + (b - j) ** 2) / (2 * sigma_s ** 2)
                               - (image[a, b] - image[i, j]) ** 2 / (2 * sigma_r ** 2))
                    num += w * image[a, b]
                    den += w
            ref[i, j] = num / den
    np.testing.assert_allclose(y, ref, rtol=1e-6)


def test_repeat_applies_the_same_mask_again():
    rng = np.random.default_rng(10)
    x, e = rand(rng, 1, 2, 8, 7), rand(rng, 1, 3, 8, 7)
    once = F.segaware_bilateral(x, e, 0.7, 3)
    twice = F.segaware_bilateral(x, e, 0.7, 3, repeat=2)
    again = F.segaware_bilateral(once, e, 0.7, 3)
    np.testing.assert_allclose(twice.numpy(), again.numpy(), rtol=1e-12)
    assert not np.allclose(twice.numpy(), once.numpy())


# ---- Eq. 7 with lam = 0 -----------------------------------------------------------------
@pytest.mark.parametrize("stride,padding,dilation", [(1, None, 1), (2, None, 2), (1, 0, 1),
                                                      (3, 1, 1)])
def test_lam_zero_unnormalised_is_conv2d(stride, padding, dilation):
    rng = np.random.default_rng(11)
    x, e, W, b = rand(rng, 2, 3, 9, 7), rand(rng, 2, 4, 9, 7), rand(rng, 5, 3, 3, 3), rand(rng, 5)
    pad = dilation if padding is None else padding
    y = F.segaware_conv2d(x, e, W, b, 0.0, stride, padding, dilation, normalize=False)
    ref = F.conv2d(Tensor(x), Tensor(W), Tensor(b), stride, pad, dilation)
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride,padding,dilation,ksize", [(1, None, 1, 3), (2, None, 1, 5),
                                                            (1, 1, 2, 3)])
def test_lam_zero_normalised_is_conv2d_over_valid_taps(stride, padding, dilation, ksize):
    rng = np.random.default_rng(12)
    x, e, W = rand(rng, 2, 3, 9, 8), rand(rng, 2, 4, 9, 8), rand(rng, 4, 3, ksize, ksize)
    pad = dilation * (ksize // 2) if padding is None else padding
    y = F.segaware_conv2d(x, e, W, None, 0.0, stride, padding, dilation).numpy()
    conv = F.conv2d(Tensor(x), Tensor(W), None, stride, pad, dilation).numpy()
    count = F.conv2d(Tensor(np.ones((1, 1, 9, 8))), Tensor(np.ones((1, 1, ksize, ksize))),
                     None, stride, pad, dilation).numpy()
    np.testing.assert_allclose(y, conv / (count + NORM_EPS), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, conv / count, rtol=1e-6, atol=1e-12)


def test_lam_as_tensor_gets_gradient_and_float_lam_does_not_need_one():
    rng = np.random.default_rng(13)
    x, e = rand(rng, 1, 2, 5, 5), Tensor(rand(rng, 1, 2, 5, 5), requires_grad=True)
    lam = segnp.Parameter(np.array(0.0))
    F.segaware_bilateral(Tensor(x), e, lam, 3).sum().backward()
    assert lam.grad is not None and lam.grad.shape == ()
    y = F.segaware_bilateral(Tensor(x), e.detach(), 0.0, 3)
    assert not y.requires_grad


# ---- bad input --------------------------------------------------------------------------
def _inputs():
    rng = np.random.default_rng(14)
    return rand(rng, 2, 3, 16, 16), rand(rng, 2, 8, 16, 16), rand(rng, 4, 3, 3, 3)


def test_mismatched_spatial_sizes_name_both_shapes():
    x, e, W = _inputs()
    msg = (r"segaware_conv2d: embeddings must be \(N, D, H, W\) with the same N, H, W as x "
           r"of shape \(2, 3, 16, 16\); got e of shape \(2, 8, 15, 16\)")
    with pytest.raises(ValueError, match=msg):
        F.segaware_conv2d(x, e[:, :, :15], W)
    with pytest.raises(ValueError, match="segaware_bilateral: embeddings must be"):
        F.segaware_bilateral(x, e[:1], 1.0)


def test_wrong_ndim_of_embeddings():
    x, e, W = _inputs()
    with pytest.raises(ValueError, match=r"segaware_conv2d: embeddings must be \(N, D, H, W\)"
                                         r".*got e of shape \(8, 16, 16\)"):
        F.segaware_conv2d(x, e[0], W)
    with pytest.raises(ValueError, match=r"segaware_mask: e must be \(N, D, H, W\); "
                                         r"got shape \(8, 16, 16\)"):
        F.segaware_mask(e[0], 1.0, 3)
    with pytest.raises(ValueError, match=r"im2dist: e must be \(N, D, H, W\)"):
        F.im2dist(e[0, 0], 3)
    with pytest.raises(ValueError, match=r"segaware_bilateral: embeddings must be "
                                         r"\(N, D, H, W\).*got e of shape \(2, 8, 16\)"):
        F.segaware_bilateral(x, e[:, :, 0], 1.0)
    with pytest.raises(ValueError, match=r"segaware_conv2d: x must be \(N, C, H, W\)"):
        F.segaware_conv2d(x[0], e, W)


def test_even_ksize():
    x, e, W = _inputs()
    with pytest.raises(ValueError, match="segaware_bilateral: ksize must be odd and positive.*"
                                         "got 4"):
        F.segaware_bilateral(x, e, 1.0, ksize=4)
    with pytest.raises(ValueError, match="segaware_conv2d: ksize must be odd.*got 2"):
        F.segaware_conv2d(x, e, np.zeros((4, 3, 2, 2)))
    with pytest.raises(ValueError, match="segaware_conv2d: W must be .*square odd window; "
                                         r"got W of shape \(4, 3, 3, 5\)"):
        F.segaware_conv2d(x, e, np.zeros((4, 3, 3, 5)))


def test_negative_lam_float_and_tensor():
    x, e, W = _inputs()
    with pytest.raises(ValueError, match="segaware_conv2d: lam .* must be >= 0; got -0.5"):
        F.segaware_conv2d(x, e, W, lam=-0.5)
    with pytest.raises(ValueError, match="segaware_mask: lam .* must be >= 0; got -1.0"):
        F.segaware_mask(e, Tensor(np.array(-1.0)), 3)
    with pytest.raises(ValueError, match=r"segaware_bilateral: lam must be a float or a 0-d "
                                         r"Tensor; got a Tensor of shape \(1,\)"):
        F.segaware_bilateral(x, e, Tensor(np.ones(1)))
    with pytest.raises(TypeError, match="segaware_bilateral: lam must be a float or a 0-d "
                                        "Tensor; got str"):
        F.segaware_bilateral(x, e, "1")


def test_other_bad_arguments():
    x, e, W = _inputs()
    with pytest.raises(ValueError, match=r"segaware_conv2d: norm must be one of .*got 'l3'"):
        F.segaware_conv2d(x, e, W, norm="l3")
    with pytest.raises(ValueError, match=r"segaware_conv2d: b must have shape \(4,\); "
                                         r"got \(3,\)"):
        F.segaware_conv2d(x, e, W, np.zeros(3))
    with pytest.raises(ValueError, match=r"segaware_conv2d: W must be \(F, C, k, k\) with "
                                         r"C = 3"):
        F.segaware_conv2d(x, e, W[:, :2])
    with pytest.raises(TypeError, match="segaware_conv2d: expected one floating dtype"):
        F.segaware_conv2d(x, e.astype(np.float32), W)
    with pytest.raises(TypeError, match="segaware_bilateral: e must be a floating-point"):
        F.segaware_bilateral(x, np.zeros((2, 1, 16, 16), np.int64), 1.0)
    for bad in (0, -2, 2.0, True, np.float64(3)):
        with pytest.raises(ValueError, match=re.escape("segaware_bilateral: repeat must "
                                                       f"be an int >= 1; got {bad!r}")):
            F.segaware_bilateral(x, e, 1.0, repeat=bad)
    np.testing.assert_array_equal(F.segaware_bilateral(x, e, 1.0, repeat=np.int64(2)).data,
                                  F.segaware_bilateral(x, e, 1.0, repeat=2).data)
    with pytest.raises(ValueError, match=r"segaware_conv2d: padding must be at most "
                                         r"dilation\*\(ksize//2\) = \(1, 1\)"):
        F.segaware_conv2d(x, e, W, padding=2)
