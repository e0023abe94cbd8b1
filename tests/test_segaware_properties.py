"""Property tests over random shapes and window settings (hypothesis)."""
import numpy as np
from hypothesis import given, settings, strategies as st

import segnp.functions as F
from segnp.window import segaware_geometry, tap_valid

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def windows(draw):
    """(e, ksize, stride, padding, dilation, norm) with a window that fits e."""
    ksize = draw(st.sampled_from([1, 3, 5]))
    dilation = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    padding = draw(st.one_of(st.none(), st.integers(0, dilation * (ksize // 2))))
    pad = dilation * (ksize // 2) if padding is None else padding
    reach = dilation * (ksize - 1) + 1 - 2 * pad  # the smallest size the window fits
    H = draw(st.integers(max(1, reach), max(1, reach) + 8))
    W = draw(st.integers(max(1, reach), max(1, reach) + 8))
    N, D = draw(st.integers(1, 2)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    scale = draw(st.sampled_from([0.0, 0.1, 1.0, 10.0]))
    e = np.random.default_rng(seed).standard_normal((N, D, H, W)) * scale
    norm = draw(st.sampled_from(["l1", "l2", "l2sq"]))
    return e, ksize, stride, padding, dilation, norm


@SETTINGS
@given(windows(), st.floats(0.0, 20.0), st.booleans())
def test_mask_is_in_unit_interval_with_unit_centre(window, lam, include_center):
    e, ksize, stride, padding, dilation, norm = window
    m = F.segaware_mask(e, lam, ksize, stride, padding, dilation, norm,
                        include_center).numpy()
    assert np.all(np.isfinite(m)) and m.min() >= 0 and m.max() <= 1
    centre = m[:, (ksize * ksize) // 2]
    assert np.all(centre == (1.0 if include_center else 0.0))
    # Taps outside the image have weight 0.
    H, W = e.shape[2:]
    k, s, p, d, _ = segaware_geometry("test", H, W, ksize, stride, padding, dilation)
    valid = tap_valid(H, W, k, s, p, d, dtype=np.float64)
    assert np.all(m[np.broadcast_to(valid, m.shape) == 0] == 0)


def span(shift, size):
    """Pixels i with i - shift also in [0, size)."""
    return slice(max(0, shift), max(0, size + min(0, shift)))


@SETTINGS
@given(windows())
def test_distances_are_nonnegative_and_symmetric(window):
    e, ksize, stride, padding, dilation, norm = window
    d = F.im2dist(e, ksize, stride, padding, dilation, norm).numpy()
    assert d.min() >= 0 and np.all(d[:, (ksize * ksize) // 2] == 0)
    if stride == 1 and padding is None:
        # Tap k of pixel i is pixel j exactly when tap K-1-k of pixel j is pixel i.
        K, r = ksize * ksize, dilation * (ksize // 2)
        H, W = e.shape[2:]
        for k in range(K):
            di, dj = (k // ksize) * dilation - r, (k % ksize) * dilation - r
            a = d[:, k, span(-di, H), span(-dj, W)]
            b = d[:, K - 1 - k, span(di, H), span(dj, W)]
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(windows(), st.floats(0.0, 5.0), st.integers(1, 3))
def test_bilateral_is_a_convex_combination(window, lam, repeat):
    e, ksize, _, _, dilation, norm = window
    N, _, H, W = e.shape
    rng = np.random.default_rng(int(e.size))
    x = rng.random((N, 2, H, W)) + 1.0
    y = F.segaware_bilateral(x, e, lam, ksize, dilation, norm, repeat).numpy()
    # Weights are >= 0 and sum to Z / (Z + eps) with Z >= 1 (the centre): y stays within
    # the range of x, shrunk by at most a factor 1 - eps.
    assert y.min() >= x.min() * (1 - 1e-5) and y.max() <= x.max()
    c = F.segaware_bilateral(np.full_like(x, 3.0), e, lam, ksize, dilation, norm).numpy()
    np.testing.assert_allclose(c, 3.0, rtol=1e-5)


@SETTINGS
@given(windows(), st.integers(1, 3))
def test_lam_zero_convolution_is_linear_in_x_and_ignores_embeddings(window, F_out):
    e, ksize, stride, padding, dilation, norm = window
    N, _, H, W = e.shape
    rng = np.random.default_rng(int(e.size) + 1)
    x1, x2 = rng.standard_normal((2, N, 2, H, W))
    Wt = rng.standard_normal((F_out, 2, ksize, ksize))

    def conv(x, emb):
        return F.segaware_conv2d(x, emb, Wt, None, 0.0, stride, padding, dilation,
                                 norm).numpy()

    np.testing.assert_allclose(conv(x1 + 2 * x2, e), conv(x1, e) + 2 * conv(x2, e),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(conv(x1, e), conv(x1, rng.standard_normal(e.shape)),
                               rtol=1e-12, atol=1e-12)


@SETTINGS
@given(st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 8), st.integers(1, 8)),
       st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 8), st.integers(1, 8)))
def test_any_spatial_mismatch_is_reported_with_both_shapes(x_shape, e_shape):
    x, e = np.zeros(x_shape), np.zeros(e_shape)
    W = np.zeros((2, x_shape[1], 1, 1))
    same = x_shape[0] == e_shape[0] and x_shape[2:] == e_shape[2:]
    for call in (lambda: F.segaware_conv2d(x, e, W), lambda: F.segaware_bilateral(x, e, 1.0, 1)):
        if same:
            call()
            continue
        try:
            call()
        except ValueError as err:
            assert "embeddings must be (N, D, H, W)" in str(err)
            assert str(x_shape) in str(err) and str(e_shape) in str(err)
        else:
            raise AssertionError(f"no error for x {x_shape} and e {e_shape}")


@SETTINGS
@given(st.integers(-6, 12), st.floats(-5.0, -1e-9))
def test_even_windows_and_negative_lam_are_rejected(ksize, lam):
    e = np.zeros((1, 2, 12, 12))
    if ksize < 1 or ksize % 2 == 0:
        try:
            F.segaware_mask(e, 1.0, ksize)
        except ValueError as err:
            assert "segaware_mask: ksize must be odd and positive" in str(err)
            assert f"got {ksize}" in str(err)
        else:
            raise AssertionError(f"ksize {ksize} accepted")
    else:
        try:
            F.segaware_mask(e, lam, ksize)
        except ValueError as err:
            assert "segaware_mask: lam" in str(err) and "must be >= 0" in str(err)
        else:
            raise AssertionError(f"lam {lam} accepted")
