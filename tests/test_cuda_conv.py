"""im2col / col2im of cuda/conv.cu, run by the CPU emulator (and on a GPU when one is
present), against the NumPy backend and against loops written from the definition

    cols[n, c, i, j, oh, ow] = x[n, c, oh*SH - PH + i*DH, ow*SW - PW + j*DW]  (0 outside)

with col2im its adjoint.  Launch shapes vary (threads per block, a capped grid that
forces the grid-stride loop to wrap), and inputs are non-contiguous views.  The CUDA
tier's conv2d and conv2d_backward (im2col, col2im and a product) match NumPy's.
"""
import numpy as np
import pytest

from segnp.backends import get_backend
from segnp.backends.emulator import EmulatorBackend
from naive_ops import naive_im2col

NP = get_backend("numpy")

# Every test here runs with the emulator's threads in ascending and in descending
# order (tests/conftest.py), so a missing __syncthreads shows in one of them.
pytestmark = pytest.mark.usefixtures("emulator_order")

# (x shape, ksize, stride, padding, dilation): odd sizes, pairs, a tap wholly in the
# padding (3x3 input, stride 5, padding 2), padding wider than the window.
CASES = [
    ((2, 3, 7, 9), 3, 1, 1, 1),
    ((1, 2, 9, 7), 3, 2, 2, 2),
    ((2, 2, 7, 9), (2, 3), (2, 1), (1, 0), (1, 2)),
    ((1, 3, 5, 5), 1, 1, 0, 1),
    ((1, 2, 3, 3), 3, 5, 2, 1),
    ((1, 1, 5, 7), 2, (1, 3), 4, (3, 1)),
    ((1, 2, 10, 6), (1, 3), (20, 1), (3, 1), 1),   # every window row in the padding
]
# (threads per block, most blocks): 7 and 3 blocks make each thread visit many items.
LAUNCH = [(256, 65535), (32, 3), (7, 2), (1024, 1)]


@pytest.fixture(scope="module", params=LAUNCH, ids=lambda p: f"t{p[0]}b{p[1]}")
def emu(request):
    threads, blocks = request.param
    return EmulatorBackend(threads=threads, max_blocks=blocks)


def _strided(a):
    """A non-contiguous view holding ``a``: every other element of a wider array."""
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    view = wide[..., ::2]
    assert not view.flags.c_contiguous
    return view


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,s,p,d", CASES)
def test_im2col_matches_numpy_and_definition(emu, dtype, shape, k, s, p, d):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    cols = emu.im2col(_strided(x), k, s, p, d)
    assert cols.dtype == dtype and cols.flags.c_contiguous
    # A copy, so the result is bit-exact.
    np.testing.assert_array_equal(cols, NP.im2col(x, k, s, p, d))
    np.testing.assert_array_equal(cols, naive_im2col(x, k, s, p, d))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,s,p,d", CASES)
def test_col2im_matches_numpy_and_is_the_adjoint(emu, dtype, shape, k, s, p, d):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    cols_shape = NP.im2col(x, k, s, p, d).shape
    g = rng.standard_normal(cols_shape).astype(dtype)
    gx = emu.col2im(_strided(g), shape[2:], s, p, d)
    assert gx.dtype == dtype and gx.shape == shape
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(gx, NP.col2im(g, shape[2:], s, p, d), **tol)
    # <im2col(x), g> == <x, col2im(g)>, with im2col from the definition.
    lhs = np.vdot(naive_im2col(x, k, s, p, d), g.astype(np.float64))
    np.testing.assert_allclose(lhs, np.vdot(x, gx.astype(np.float64)),
                               rtol=1e-5 if dtype == np.float32 else 1e-12)


# (x shape, F, ksize, stride, padding, dilation): NumPy's gx by the transposed convolution
# with gW from the same blocks; by col2im at F > 1.5 C; and at stride (2, 1)
CONV_CASES = [
    ((2, 4, 7, 6), 5, 3, 1, 1, 1),
    ((1, 2, 8, 7), 4, 3, 1, 2, 2),
    ((2, 3, 7, 9), 2, (2, 3), (2, 1), (1, 0), (1, 2)),
]


@pytest.mark.parametrize("shape,Fn,k,s,p,d", CONV_CASES)
def test_conv2d_and_its_backward_match_numpy(spread, shape, Fn, k, s, p, d):
    # the NumPy kernels in row blocks spread over two threads; the CUDA tier's composition
    emu = EmulatorBackend(threads=64)
    rng = np.random.default_rng(4)
    KH, KW = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal(shape)
    W = rng.standard_normal((Fn, shape[1], KH, KW))
    y = emu.conv2d(_strided(x), W, s, p, d)
    np.testing.assert_allclose(y, NP.conv2d(x, W, s, p, d), rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    for need in ((True, True), (True, False), (False, True)):
        got = emu.conv2d_backward(x, W, gy, s, p, d, *need)
        for a, b in zip(got, NP.conv2d_backward(x, W, gy, s, p, d, *need)):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_col2im_is_deterministic():
    emu = EmulatorBackend(threads=64, max_blocks=5)
    g = np.random.default_rng(2).standard_normal((2, 3, 3, 3, 6, 8)).astype(np.float32)
    a = emu.col2im(g, (11, 15), 2, 1, 1)
    b = EmulatorBackend(threads=256).col2im(g, (11, 15), 2, 1, 1)
    np.testing.assert_array_equal(a, b)


def test_launchers_check_their_inputs():
    emu = get_backend("cuda-emulator")
    with pytest.raises(TypeError, match=r"float32 and float64 only; got int64"):
        emu.im2col(np.zeros((1, 1, 4, 4), np.int64), 3)
    with pytest.raises(ValueError, match=r"im2col: x must be \(N, C, H, W\); got shape \(4, 4\)"):
        emu.im2col(np.zeros((4, 4), np.float32), 3)
    with pytest.raises(ValueError, match=r"im2col: a 5x5 window .* does not fit"):
        emu.im2col(np.zeros((1, 1, 3, 3), np.float32), 5)
    with pytest.raises(ValueError, match=r"col2im: cols hold a \(2, 2\) output, but size "
                                         r"\(5, 5\) with this window gives \(3, 3\)"):
        emu.col2im(np.zeros((1, 1, 3, 3, 2, 2), np.float32), (5, 5))
    with pytest.raises(ValueError, match=r"col2im: size must be the image size"):
        emu.col2im(np.zeros((1, 1, 3, 3, 2, 2), np.float32), 5)


def test_empty_batch():
    emu = get_backend("cuda-emulator")
    assert emu.im2col(np.zeros((0, 2, 5, 5), np.float32), 3).shape == (0, 2, 3, 3, 3, 3)
    assert emu.col2im(np.zeros((0, 2, 3, 3, 3, 3)), (5, 5)).shape == (0, 2, 5, 5)


# ----------------------------------------------------------------------------- GPU
def _cupy_or_skip():
    cupy = pytest.importorskip("cupy")
    if not cupy.is_available():
        pytest.skip("no CUDA device")
    return cupy


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,s,p,d", CASES)
@pytest.mark.parametrize("threads,blocks", [(256, 65535), (32, 3)])
def test_gpu_matches_numpy_and_emulator(dtype, shape, k, s, p, d, threads, blocks):
    cupy = _cupy_or_skip()
    from segnp.backends.cuda.cupy import CupyBackend
    gpu = CupyBackend(threads=threads, max_blocks=blocks)
    emu = EmulatorBackend(threads=threads, max_blocks=blocks)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    wide = cupy.zeros(shape[:-1] + (2 * shape[-1],), dtype)
    wide[..., ::2] = cupy.asarray(x)
    cols = gpu.to_numpy(gpu.im2col(wide[..., ::2], k, s, p, d))  # a strided view
    np.testing.assert_array_equal(cols, NP.im2col(x, k, s, p, d))
    np.testing.assert_array_equal(cols, emu.im2col(x, k, s, p, d))
    g = rng.standard_normal(cols.shape).astype(dtype)
    gx = gpu.to_numpy(gpu.col2im(cupy.asarray(g), shape[2:], s, p, d))
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(gx, NP.col2im(g, shape[2:], s, p, d), **tol)
    # Same kernel, same summation order: the emulator agrees with the device exactly.
    np.testing.assert_array_equal(gx, emu.col2im(g, shape[2:], s, p, d))


@pytest.mark.gpu
def test_gpu_rejects_python_ints():
    cupy = _cupy_or_skip()
    from segnp.backends.cuda.cupy import CupyBackend
    rt = CupyBackend().rt
    k = rt.kernel("conv.cu", "im2col_kernel", np.float32)
    x = cupy.zeros((1, 1, 3, 3), np.float32)
    cols = cupy.zeros((1, 1, 1, 1, 3, 3), np.float32)
    with pytest.raises(TypeError, match="N is a C int and must be passed as numpy.int32"):
        k((1,), (32,), (x, cols, 1, 1, 3, 3, 1, 1, 3, 3, 1, 1, 0, 0, 1, 1))


# ------------------------------------------------------- launch helpers, cupy runtime
def test_launch_helpers():
    from segnp.backends.cuda._common import grid_1d, int32, real
    emu = EmulatorBackend(threads=32, max_blocks=4)
    assert grid_1d(emu.rt, 1) == (1,) and grid_1d(emu.rt, 65) == (3,)
    assert grid_1d(emu.rt, 10 ** 6) == (4,)
    assert [type(v) for v in int32(1, 2)] == [np.int32, np.int32]
    with pytest.raises(ValueError, match="32-bit ints; got 2147483648"):
        int32(2 ** 31)
    assert real(np.float32, 0.1)[0].dtype == np.float32


def test_cupy_backend_binds_the_same_launchers_without_a_device(monkeypatch):
    """Checks what needs no GPU: the signatures, and that a kernel compiles once per
    device through cupy.RawModule with the run-time options and every name expression."""
    import inspect
    pytest.importorskip("cupy")
    from segnp.backends.cuda import cupy as runtime_cupy
    from segnp.backends.cuda.cupy import CupyBackend
    from segnp.backends.cuda.source import COMPILE_OPTIONS
    gpu = CupyBackend()
    for name in ("im2col", "col2im"):
        assert inspect.signature(getattr(gpu, name)) == inspect.signature(getattr(NP, name))

    built, device = [], [0]

    class FakeModule:
        def __init__(self, code, options, name_expressions):
            built.append((options, tuple(name_expressions)))

        def get_function(self, expr):
            return expr

    class FakeDevice:
        @property
        def id(self):
            return device[0]

    monkeypatch.setattr(runtime_cupy.cupy, "RawModule", FakeModule)
    monkeypatch.setattr(runtime_cupy.cupy.cuda, "Device", FakeDevice)
    monkeypatch.setattr(runtime_cupy, "_MODULES", {})
    k = gpu.rt.kernel("conv.cu", "col2im_kernel", np.float64)
    assert built == []  # nothing compiles before the first launch
    assert k.function() == "col2im_kernel<double>"
    assert gpu.rt.kernel("conv.cu", "im2col_kernel", np.float64).function() == \
        "im2col_kernel<double>"
    assert built == [(COMPILE_OPTIONS, ("col2im_kernel<double>", "im2col_kernel<double>"))]
    device[0] = 1
    k.function()
    assert len(built) == 2
