"""The CUDA kernels of the masked transposed convolution (masked_conv_transpose.cu) on
the CPU emulator, in both thread orders and three launch shapes: against the naive loop
of tests/naive_ops.py and against their NumPy twins, every gradient and flag."""
import numpy as np
import pytest
from naive_ops import naive_masked_conv_transpose

from segnp.backends import get_backend
from segnp.backends.cuda import masked_conv_transpose as mct
from segnp.backends.emulator import EmulatorRuntime
from segnp.window import Window, tap_valid

RUNTIMES = [EmulatorRuntime(), EmulatorRuntime(threads=32, max_blocks=2),
            EmulatorRuntime(threads=100, max_blocks=7)]
NUMPY = get_backend("numpy")
CASES = [(5, 4, 5, 2, 2, 1, 1), (3, 4, 3, 1, 0, 0, 2), (4, 3, 5, (2, 3), (1, 2), (1, 0), (1, 2)),
         (3, 3, 1, 2, 0, 1, 1)]

pytestmark = pytest.mark.usefixtures("emulator_order")


def operands(geom, dtype, seed=0, N=2, C=3, F_=4):
    rng = np.random.default_rng(seed)
    H, W, k = geom[:3]
    win = Window.transposed("test", *geom)
    valid = tap_valid(win.H, win.W, win.ksize, win.stride, win.padding, win.dilation,
                      dtype=np.float64)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    m = (rng.uniform(0.05, 1.0, (N, k * k, H, W)) * valid).astype(dtype)
    Wt = rng.standard_normal((C, F_, k, k)).astype(dtype)
    gy = rng.standard_normal((N, F_, win.H, win.W)).astype(dtype)
    return win, x, m, Wt, gy


def close(a, b, dtype):
    tol = 1e-4 if dtype == np.float32 else 1e-11
    b = np.asarray(b, dtype=np.float64)
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), b, rtol=tol,
                               atol=tol * max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize("geom", CASES)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_naive_loop_and_numpy(geom, normalize, dtype):
    win, x, m, Wt, gy = operands(geom, dtype)
    rt = RUNTIMES[CASES.index(geom) % 3]
    y = mct.masked_conv_transpose(rt, x, m, Wt, win, normalize)
    assert y.dtype == dtype
    want = naive_masked_conv_transpose(x.astype(np.float64), m.astype(np.float64),
                                       Wt.astype(np.float64), (win.H, win.W), *geom[3:5],
                                       geom[6], normalize)
    close(y, want, dtype)
    close(NUMPY.masked_conv_transpose(x, m, Wt, win, normalize), want, dtype)
    grads = mct.masked_conv_transpose_backward(rt, x, m, Wt, gy, win, normalize)
    ref = NUMPY.masked_conv_transpose_backward(x, m, Wt, gy, win, normalize)
    for got, r in zip(grads, ref):
        assert got.dtype == dtype and r.dtype == dtype
        close(got, r, dtype)


def test_gradients_are_the_adjoint_of_the_forward_pass():
    """<gy, d y> = <gx, dx> + <gm, dm> + <gW, dW> along a random direction (float64),
    for the CUDA kernels: the NumPy twin is checked against them above."""
    win, x, m, Wt, gy = operands(CASES[0], np.float64, seed=3)
    rng = np.random.default_rng(4)
    dx, dm, dW = (rng.standard_normal(a.shape) for a in (x, m, Wt))
    dm *= m > 0
    rt, h = RUNTIMES[0], 1e-6

    def f(t):
        return mct.masked_conv_transpose(rt, x + t * dx, m + t * dm, Wt + t * dW, win, True)

    numeric = float(((f(h) - f(-h)) * gy).sum() / (2 * h))
    gx, gm, gW = mct.masked_conv_transpose_backward(rt, x, m, Wt, gy, win, True)
    analytic = float((gx * dx).sum() + (gm * dm).sum() + (gW * dW).sum())
    assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic))


def test_backward_skips_unneeded_gradients():
    win, x, m, Wt, gy = operands(CASES[0], np.float64)
    full = mct.masked_conv_transpose_backward(RUNTIMES[0], x, m, Wt, gy, win)
    for i, flag in enumerate(("need_x", "need_m", "need_W")):
        part = mct.masked_conv_transpose_backward(RUNTIMES[0], x, m, Wt, gy, win,
                                                  **{flag: False})
        assert part[i] is None
        for j in range(3):
            if j != i:
                np.testing.assert_array_equal(part[j], full[j])


def test_launch_checks_the_operands_against_the_window():
    win, x, m, Wt, gy = operands(CASES[0], np.float64)
    with pytest.raises(ValueError, match=r"masked_conv_transpose: m must be \(N, K, H, W\)"):
        mct.masked_conv_transpose(RUNTIMES[0], x, m[:, :4], Wt, win)
    with pytest.raises(ValueError, match=r"gy must be \(N, F, OH, OW\)"):
        mct.masked_conv_transpose_backward(RUNTIMES[0], x, m, Wt, gy[..., :-1], win)


@pytest.mark.gpu
def test_gpu_matches_numpy():
    cupy = pytest.importorskip("cupy", reason="cupy (the 'test' extra) is not installed")
    if not cupy.is_available():
        pytest.skip("needs a CUDA device")
    gpu = get_backend("cupy")
    for normalize in (True, False):
        win, x, m, Wt, gy = operands(CASES[2], np.float64)
        got = gpu.masked_conv_transpose(*map(cupy.asarray, (x, m, Wt)), win, normalize)
        close(cupy.asnumpy(got), NUMPY.masked_conv_transpose(x, m, Wt, win, normalize),
              np.float64)
        grads = gpu.masked_conv_transpose_backward(*map(cupy.asarray, (x, m, Wt, gy)), win,
                                                   normalize)
        for g, r in zip(grads, NUMPY.masked_conv_transpose_backward(x, m, Wt, gy, win,
                                                                    normalize)):
            close(cupy.asnumpy(g), r, np.float64)
