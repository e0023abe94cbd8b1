"""The CUDA segmentation-aware kernels (segaware.cu, masked_conv.cu) on the CPU emulator.

Each kernel is checked three ways: against a per-pixel loop written here from its
equation (Eq. 4, Eq. 7, the distances of Sec. 4.2), against the NumPy backend, and,
for the masked GEMM, against the composed path (masked columns + matmul).  Then float64
gradient checks of the differentiable ops running on the emulator backend, and the same
parity on a real GPU when one is present (marked ``gpu``).
"""
import numpy as np
import pytest

import segnp.functions as F
from segnp import check_grad
from segnp.backends import get_backend, using_backend
from segnp.window import NORM_EPS
from segnp.backends.emulator import EmulatorRuntime
from segnp.backends.cuda import masked_conv as mc
from segnp.backends.cuda import segaware as sa
from naive_ops import naive_masked_conv
from windows import win
from cuda_composed import masked_conv_composed, masked_conv_composed_backward
from segnp.window import segaware_geometry, tap_valid

# (ksize, stride, padding, dilation): default "same" windows, stride and dilation,
# unequal pairs with a padding below the default (shifted centres), a 1x1 window.
WINDOWS = [(3, 1, None, 1), (3, 2, None, 2), (5, (2, 1), (1, 2), (1, 2)), (3, 1, 0, 1),
           (1, 1, None, 1)]
DTYPES = [np.float64, np.float32]
NORMS = ["l1", "l2", "l2sq"]

# Launch shapes of the grid-stride kernels: the default, a tiny grid whose threads
# loop many times, and a block size that is not a power of two.
RUNTIMES = [EmulatorRuntime(), EmulatorRuntime(threads=32, max_blocks=2),
            EmulatorRuntime(threads=100, max_blocks=7)]
NUMPY = get_backend("numpy")

# Every test here runs with the emulator's threads in ascending and in descending
# order (tests/conftest.py), so a missing __syncthreads shows in one of them.
pytestmark = pytest.mark.usefixtures("emulator_order")


def tol(dtype):
    # float32: sums of ~100 terms, and the normalised mask gradient cancels
    # (inv * (Q - inv * m Q) is ~eps/m for a 1-tap window), so 1e-4 of the scale.
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)


def geometry(H, W, ksize, stride, padding, dilation):
    """(KS, (SH, SW), (PH, PW), (DH, DW), (OH, OW))."""
    k, s, p, d, o = segaware_geometry("test", H, W, ksize, stride, padding, dilation)
    return k[0], s, p, d, o


def tap(oh, ow, k, KS, s, p, d):
    return oh * s[0] - p[0] + (k // KS) * d[0], ow * s[1] - p[1] + (k % KS) * d[1]


def inside(i, j, H, W):
    return 0 <= i < H and 0 <= j < W


def random_mask(rng, N, H, W, ksize, stride, padding, dilation, dtype):
    """A mask in (0, 1] at valid taps and 0 outside, like exp(-lam d) * valid (Eq. 3)."""
    KS, s, p, d, o = geometry(H, W, ksize, stride, padding, dilation)
    valid = tap_valid(H, W, (KS, KS), s, p, d, dtype=np.float64)
    return (rng.uniform(0.05, 1.0, (N, KS * KS) + o) * valid).astype(dtype)


# ---- naive references, straight from the equations --------------------------------------
def naive_im2dist(e, ksize, stride, padding, dilation, norm):
    N, D, H, W = e.shape
    KS, s, p, d, (OH, OW) = geometry(H, W, ksize, stride, padding, dilation)
    out = np.zeros((N, KS * KS, OH, OW))
    for n in range(N):
        for k in range(KS * KS):
            for oh in range(OH):
                for ow in range(OW):
                    th, tw = tap(oh, ow, k, KS, s, p, d)
                    ch, cw = tap(oh, ow, KS * KS // 2, KS, s, p, d)
                    if inside(th, tw, H, W):
                        delta = e[n, :, th, tw] - e[n, :, ch, cw]
                        out[n, k, oh, ow] = {"l1": np.abs(delta).sum(),
                                             "l2": np.sqrt((delta ** 2).sum()),
                                             "l2sq": (delta ** 2).sum()}[norm]
    return out


def naive_im2dist_backward(e, gd, ksize, stride, padding, dilation, norm):
    N, D, H, W = e.shape
    KS, s, p, d, (OH, OW) = geometry(H, W, ksize, stride, padding, dilation)
    ge = np.zeros(e.shape)
    for n in range(N):
        for k in range(KS * KS):
            for oh in range(OH):
                for ow in range(OW):
                    th, tw = tap(oh, ow, k, KS, s, p, d)
                    ch, cw = tap(oh, ow, KS * KS // 2, KS, s, p, d)
                    if not inside(th, tw, H, W):
                        continue
                    delta = e[n, :, th, tw] - e[n, :, ch, cw]
                    dist = np.sqrt((delta ** 2).sum())
                    g = {"l1": np.sign(delta), "l2sq": 2 * delta,
                         "l2": delta / dist if dist > 0 else 0 * delta}[norm]
                    ge[n, :, th, tw] += gd[n, k, oh, ow] * g
                    ge[n, :, ch, cw] -= gd[n, k, oh, ow] * g
    return ge


def close(a, b, dtype, scale=None):
    """Compare with a tolerance relative to the size of the reference."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    scale = max(1.0, float(np.abs(b).max())) if scale is None else scale
    t = tol(dtype)
    np.testing.assert_allclose(a, b, rtol=t["rtol"], atol=t["atol"] * scale)


# ---- im2dist ----------------------------------------------------------------------
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2dist_matches_equation_and_numpy(window, norm, dtype):
    rng = np.random.default_rng(0)
    rt = RUNTIMES[(WINDOWS.index(window) + NORMS.index(norm)) % 3]
    e = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    e[0, :, 2, 3] = e[0, :, 2, 2]  # coincident embeddings: 'l2' must give gradient 0, no NaN
    w = win(e, *window)
    d = sa.im2dist(rt, e, w, norm=norm)
    assert d.dtype == dtype
    close(d, naive_im2dist(e.astype(np.float64), *window, norm), dtype)
    close(d, NUMPY.im2dist(e, w, norm=norm), dtype)

    gd = rng.standard_normal(d.shape).astype(dtype)
    ge = sa.im2dist_backward(rt, e, d, gd, w, norm=norm)
    assert ge.dtype == dtype and np.isfinite(ge).all()
    close(ge, naive_im2dist_backward(e.astype(np.float64), gd, *window, norm), dtype)
    close(ge, NUMPY.im2dist_backward(e, d, gd, w, norm=norm), dtype)


# ---- bilateral filter (Eq. 4) ------------------------------------------------------------
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bilateral_matches_equation_and_numpy(window, dtype):
    rng = np.random.default_rng(1)
    rt = RUNTIMES[WINDOWS.index(window) % 3]
    N, C, H, W = 2, 3, 7, 6
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    m = random_mask(rng, N, H, W, *window, dtype)
    w = win(x, *window)
    y = sa.bilateral(rt, x, m, w)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx, gm = sa.bilateral_backward(rt, x, m, gy, w)
    # Eq. 4 is Eq. 7 (normalised) with the filter "copy channel c from every tap".
    KS = window[0]
    ident = np.repeat(np.eye(C)[:, :, None, None], KS, 2).repeat(KS, 3)
    y0, (gx0, gm0, _) = naive_masked_conv(x.astype(np.float64), m.astype(np.float64),
                                          ident, *window[1:], True, gy)
    for got, want in ((y, y0), (gx, gx0), (gm, gm0)):
        assert got.dtype == dtype
        close(got, want, dtype)
    ref = NUMPY.bilateral_backward(x, m, gy, w)
    close(y, NUMPY.bilateral(x, m, w), dtype)
    close(gx, ref[0], dtype)
    close(gm, ref[1], dtype)
    assert sa.bilateral_backward(rt, x, m, gy, w, need_x=False)[0] is None
    assert sa.bilateral_backward(rt, x, m, gy, w, need_m=False)[1] is None


@pytest.mark.parametrize("window, canvas", [((3, 1, None, 1), True),
                                            ((3, 1, None, 2), False),
                                            ((1, 1, None, 1), True)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("repeat", [1, 3])
def test_bilateral_repeat_matches_the_passes_and_numpy(window, canvas, dtype, repeat):
    """The repeated filter (a launch a pass, the passes' mask gradients summed) against
    the launches of :func:`bilateral` one by one and against the NumPy twin: on 10 x 11
    the 3x3 window takes the twin's canvas (the mask laid out once for every pass), the
    dilated one its rectangles (its padded image is over the canvas's limit)."""
    from segnp.backends.numpy import segaware as ns
    rng = np.random.default_rng(2)
    rt = RUNTIMES[repeat % 3]
    N, C, H, W = 2, 3, 10, 11
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    m = random_mask(rng, N, H, W, *window, dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    w = win(x, *window)
    assert ns.Canvas.applies(w, x, ns._MOST_PADDING) == canvas
    ys = sa.bilateral_repeat(rt, x, m, w, repeat)
    ys_np = NUMPY.bilateral_repeat(x, m, w, repeat)
    y = x
    for r in range(repeat):
        y = sa.bilateral(rt, y, m, w)
        assert ys[r].dtype == dtype
        close(ys[r], y, dtype)
        close(ys[r], ys_np[r], dtype)
    gx, gm = sa.bilateral_repeat_backward(rt, x, ys, m, gy, w)
    gx_np, gm_np = NUMPY.bilateral_repeat_backward(x, ys_np, m, gy, w)
    g, gm_sum = gy, 0
    for r in reversed(range(repeat)):
        g, gm_r = sa.bilateral_backward(rt, ys[r - 1] if r else x, m, g, w)
        gm_sum = gm_sum + gm_r
    for got, want in ((gx, g), (gx, gx_np), (gm, gm_sum), (gm, gm_np)):
        assert got.dtype == dtype
        close(got, want, dtype)
    assert sa.bilateral_repeat_backward(rt, x, ys, m, gy, w, need_x=False)[0] is None
    assert sa.bilateral_repeat_backward(rt, x, ys, m, gy, w, need_m=False)[1] is None
    with pytest.raises(ValueError, match=r"bilateral_repeat: win must keep the input's size "
                                         r"\(stride 1, the default padding\): its output "
                                         r"\(OH, OW\) must be \(10, 11\); got \(5, 6\)$"):
        sa.bilateral_repeat(rt, x, random_mask(rng, N, H, W, 3, 2, None, 1, dtype),
                            win(x, 3, 2), repeat)
    with pytest.raises(ValueError, match=r"bilateral_repeat_backward: ys must hold at least "
                                         r"one pass's output"):
        sa.bilateral_repeat_backward(rt, x, (), m, gy, w)


# ---- the masked GEMM (Eq. 7) -------------------------------------------------------------
def conv_case(rng, dtype, window, N=2, C=3, F_=5, H=7, W=6):
    KS = window[0]
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    m = random_mask(rng, N, H, W, *window, dtype)
    Wt = rng.standard_normal((F_, C, KS, KS)).astype(dtype)
    gy = rng.standard_normal((N, F_) + m.shape[2:]).astype(dtype)
    return x, m, Wt, gy


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_conv_matches_equation_numpy_and_composed(window, normalize, dtype):
    rng = np.random.default_rng(2)
    rt = RUNTIMES[0]
    x, m, Wt, gy = conv_case(rng, dtype, window)
    stride, padding, dilation = window[1:]
    y0, g0 = naive_masked_conv(x.astype(np.float64), m.astype(np.float64),
                               Wt.astype(np.float64), stride, padding, dilation, normalize, gy)
    args = (win(x, *window), normalize)
    y = mc.masked_conv(rt, x, m, Wt, *args)
    grads = mc.masked_conv_backward(rt, x, m, Wt, gy, *args)
    yc = masked_conv_composed(rt, x, m, Wt, *args)
    gc = masked_conv_composed_backward(rt, x, m, Wt, gy, *args)
    yn = NUMPY.masked_conv(x, m, Wt, *args)
    gn = NUMPY.masked_conv_backward(x, m, Wt, gy, *args)
    for want, got in [(y0, y), (y0, yc), (y0, yn)] + list(zip(g0 * 3, grads + gc + gn)):
        assert got.dtype == dtype
        close(got, want, dtype)


def test_masked_conv_backward_skips_unneeded_gradients():
    rng = np.random.default_rng(3)
    x, m, Wt, gy = conv_case(rng, np.float64, WINDOWS[0])
    full = mc.masked_conv_backward(RUNTIMES[0], x, m, Wt, gy, win(x, 3))
    for i, flag in enumerate(["need_x", "need_m", "need_W"]):
        part = mc.masked_conv_backward(RUNTIMES[0], x, m, Wt, gy, win(x, 3), **{flag: False})
        assert part[i] is None
        for j in set(range(3)) - {i}:
            np.testing.assert_array_equal(part[j], full[j])


def test_masked_conv_split_reduction_of_gW():
    """N*OH*OW >= 1024 makes gW a sum over several fixed chunks (partial sums)."""
    rng = np.random.default_rng(4)
    window = (3, 1, None, 2)
    x, m, Wt, gy = conv_case(rng, np.float64, window, N=2, C=2, F_=3, H=24, W=23)
    assert mc._split(2 * 24 * 23, 1, 16)[0] > 1
    gW = mc.masked_conv_backward(RUNTIMES[0], x, m, Wt, gy, win(x, *window),
                                 need_x=False, need_m=False)[2]
    close(gW, NUMPY.masked_conv_backward(x, m, Wt, gy, win(x, *window), need_x=False,
                                         need_m=False)[2], np.float64)


def test_masked_conv_at_lam_zero_is_conv_over_valid_taps():
    """Sec. 3.4: with an all-ones mask over valid taps, Eq. 7 unnormalised is conv2d,
    and normalised it is conv2d divided by the number of valid taps."""
    rng = np.random.default_rng(5)
    window = (3, 2, None, 1)
    x, _, Wt, _ = conv_case(rng, np.float64, window)
    KS, s, p, d, o = geometry(7, 6, *window)
    ones = np.broadcast_to(tap_valid(7, 6, (KS, KS), s, p, d, dtype=np.float64),
                           (2, KS * KS) + o)
    conv = NUMPY.im2col(x, KS, s, p, d)  # (N, C, KH, KW, OH, OW)
    conv = np.einsum("fcij,ncijhw->nfhw", Wt, conv)
    close(mc.masked_conv(RUNTIMES[0], x, ones, Wt, win(x, *window), normalize=False), conv,
          np.float64)
    close(mc.masked_conv(RUNTIMES[0], x, ones, Wt, win(x, *window)),
          conv / (ones.sum(axis=1)[:, None] + NORM_EPS), np.float64)


@pytest.mark.parametrize("window", [WINDOWS[2], WINDOWS[1]])
def test_small_tile_matches_large_tile_and_composed(monkeypatch, window):
    """The masked GEMM with another tile shape (another block size: 256 threads for
    'large', 64 for 'small') gives the same result, in the same process (the emulator
    keeps each build's shared arrays apart; see emulator/build.py)."""
    rng = np.random.default_rng(6)
    x, m, Wt, gy = conv_case(rng, np.float64, window, C=3, F_=5, H=9, W=8)
    rt = RUNTIMES[0]
    for normalize in (True, False):
        args = (win(x, *window), normalize)
        ref = [masked_conv_composed(rt, x, m, Wt, *args)]
        ref += masked_conv_composed_backward(rt, x, m, Wt, gy, *args)
        for tile in ("small", "large", "small"):
            monkeypatch.setattr(mc, "TILE", tile)
            got = [mc.masked_conv(rt, x, m, Wt, *args)]
            got += mc.masked_conv_backward(rt, x, m, Wt, gy, *args)
            for u, v in zip(got, ref):
                np.testing.assert_allclose(u, v, rtol=1e-11, atol=1e-11)


# ---- contract: strides, dtypes, shapes ---------------------------------------------------
def test_non_contiguous_inputs_give_the_same_results():
    rng = np.random.default_rng(7)
    rt = RUNTIMES[0]
    window = (3, 1, None, 1)
    x, m, Wt, gy = conv_case(rng, np.float64, window)
    # Same values, other memory layouts: Fortran order, a reversed view, a strided slice.
    xf = np.asfortranarray(x)
    m_rev = m[:, ::-1].copy()[:, ::-1]
    W_big = np.zeros(Wt.shape[:3] + (2 * Wt.shape[3],))
    W_big[..., ::2] = Wt
    W_str = W_big[..., ::2]
    gy_t = np.ascontiguousarray(gy.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not any(a.flags.c_contiguous for a in (xf, m_rev, W_str, gy_t))
    w = win(x, 3)
    for f, plain, strided in [
            (mc.masked_conv, (x, m, Wt, w), (xf, m_rev, W_str, w)),
            (mc.masked_conv_backward, (x, m, Wt, gy, w), (xf, m_rev, W_str, gy_t, w)),
            (sa.bilateral, (x, m, w), (xf, m_rev, w)),
            (sa.bilateral_backward, (x, m, gy[:, :3], w), (xf, m_rev, gy_t[:, :3], w)),
            (sa.im2dist, (x, w), (xf, w))]:
        a, b = f(rt, *plain), f(rt, *strided)
        for u, v in zip(a if isinstance(a, tuple) else [a], b if isinstance(b, tuple) else [b]):
            np.testing.assert_array_equal(u, v)


def test_bad_inputs_raise_errors_naming_the_function():
    rt = RUNTIMES[0]
    x = np.zeros((1, 2, 6, 6))
    m = np.zeros((1, 9, 6, 6))
    Wt = np.zeros((3, 2, 3, 3))
    w = win(x, 3)
    # The launchers keep the checks of a launch: the arrays agree with the window, and
    # (the runtime's) every array has the kernel's dtype.
    with pytest.raises(ValueError, match=r"masked_conv: m must be \(N, K, OH, OW\)"):
        mc.masked_conv(rt, x, m[:, :4], Wt, w)
    with pytest.raises(TypeError, match=r"masked_gemm_fwd<double>: m must be an array of "
                                        r"float64; got float32"):
        mc.masked_conv(rt, x, m.astype(np.float32), Wt, w)
    with pytest.raises(TypeError, match=r"masked_gemm_fwd<double>: \w+ must be an array of "
                                        r"float64; got float16"):
        mc.masked_conv(rt, x, m, Wt.astype(np.float16), w)
    with pytest.raises(ValueError, match=r"masked_conv: W must be \(F, C, KS, KS\) = "
                                         r"\(3, 2, 3, 3\); got \(3, 4, 3, 3\)"):
        mc.masked_conv(rt, x, m, np.zeros((3, 4, 3, 3)), w)
    with pytest.raises(ValueError, match=r"im2dist_backward: gd must be \(N, K, OH, OW\)"):
        sa.im2dist_backward(rt, x, m, m[:, :, :5], w)
    with pytest.raises(ValueError, match=r"bilateral_backward: gy must be \(N, C, OH, OW\)"):
        sa.bilateral_backward(rt, x, m, m, w)
    # The window and the norm are checked once, where the public function builds them.
    with pytest.raises(ValueError, match="bilateral: padding must be at most"):
        win(x, 3, padding=2, fn="bilateral")
    with pytest.raises(ValueError, match="im2dist: ksize must be odd"):
        win(x, 4, fn="im2dist")
    with using_backend("cuda-emulator"), \
            pytest.raises(ValueError, match="im2dist: norm must be one of"):
        F.im2dist(x, 3, norm="l3")


# ---- autograd on the emulator backend ----------------------------------------------------
def test_emulator_backend_exposes_the_launchers():
    emu = get_backend("cuda-emulator")
    rng = np.random.default_rng(8)
    x, m, Wt, gy = conv_case(rng, np.float64, WINDOWS[1])
    np.testing.assert_array_equal(emu.masked_conv(x, m, Wt, win(x, *WINDOWS[1])),
                                  mc.masked_conv(emu.rt, x, m, Wt, win(x, *WINDOWS[1])))


@pytest.mark.parametrize("norm", NORMS)
def test_segaware_conv2d_gradients_on_emulator(norm):
    rng = np.random.default_rng(9)
    x, e = rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((1, 3, 5, 4))
    W, b = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal(2)
    with using_backend("cuda-emulator"):
        check_grad(lambda x, e, W, b, lam: F.segaware_conv2d(x, e, W, b, lam, norm=norm),
                   [x, e, W, b, np.array(0.7)], max_elementwise=20)
        check_grad(lambda x, e, W, lam: F.segaware_conv2d(x, e, W, None, lam, stride=2,
                                                          dilation=2, norm=norm,
                                                          normalize=False),
                   [x, e, W, np.array(0.4)], max_elementwise=0)


@pytest.mark.parametrize("norm", NORMS)
def test_segaware_bilateral_gradients_on_emulator(norm):
    rng = np.random.default_rng(10)
    x, e = rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((1, 3, 5, 6))
    with using_backend("cuda-emulator"):
        check_grad(lambda x, e, lam: F.segaware_bilateral(x, e, lam, 3, 2, norm, repeat=2),
                   [x, e, np.array(0.8)], max_elementwise=20)
        check_grad(lambda x, e, lam: F.segaware_bilateral(x, e, lam, 3, 1, norm,
                                                          include_center=False),
                   [x, e, np.array(0.3)], max_elementwise=0)


# ---- on a real GPU -----------------------------------------------------------------------
def _gpu():
    cupy = pytest.importorskip("cupy")
    if not cupy.is_available():
        pytest.skip("needs a CUDA device")
    return cupy, get_backend("cupy")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window", WINDOWS[:3])
def test_gpu_matches_numpy_and_emulator(dtype, window):
    cupy, gpu = _gpu()
    rng = np.random.default_rng(11)
    emu = get_backend("cuda-emulator")
    x, m, Wt, gy = conv_case(rng, dtype, window, N=2, C=5, F_=7, H=13, W=11)
    w = (win(x, *window),)
    cases = [
        ("masked_conv", (x, m, Wt) + w),
        ("masked_conv_backward", (x, m, Wt, gy) + w),
        ("bilateral", (x, m) + w),
        ("bilateral_backward", (x, m, gy[:, :5]) + w),
        ("im2dist", (x,) + w),
    ]
    d = NUMPY.im2dist(x, *w)
    cases.append(("im2dist_backward", (x, d, m) + w))
    for name, args in cases:
        dev = getattr(gpu, name)(*[cupy.asarray(a) if isinstance(a, np.ndarray) else a
                                   for a in args])
        dev = [cupy.asnumpy(v) for v in (dev if isinstance(dev, tuple) else (dev,))]
        for ref in (getattr(NUMPY, name)(*args), getattr(emu, name)(*args)):
            for u, v in zip(dev, ref if isinstance(ref, tuple) else (ref,)):
                assert u.dtype == dtype, name
                close(u, v, dtype)


@pytest.mark.gpu
def test_gpu_fused_matches_composed_and_is_deterministic():
    cupy, gpu = _gpu()
    rng = np.random.default_rng(12)
    x, m, Wt, gy = (cupy.asarray(a) for a in conv_case(rng, np.float32, WINDOWS[0], N=4,
                                                         C=16, F_=24, H=40, W=36))
    rt, w = gpu.rt, win(x, 3)
    a = [mc.masked_conv(rt, x, m, Wt, w)] + list(mc.masked_conv_backward(rt, x, m, Wt, gy, w))
    b = [masked_conv_composed(rt, x, m, Wt, w)]
    b += list(masked_conv_composed_backward(rt, x, m, Wt, gy, w))
    again = [mc.masked_conv(rt, x, m, Wt, w)] + list(mc.masked_conv_backward(rt, x, m, Wt, gy,
                                                                               w))
    for u, v, w in zip(a, b, again):
        close(cupy.asnumpy(u), cupy.asnumpy(v), np.float32)
        assert bool((u == w).all())  # no atomics: bitwise the same on every run
