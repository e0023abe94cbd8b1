"""The CUDA backends as a whole: every kernel name of ``backends/api.py`` has a CUDA
twin, the CuPy and emulator backends expose it with the NumPy backend's signature, the
emulator is selected by ``SEGNP_BACKEND``, and a small segmentation-aware network
trains on the emulator exactly as on NumPy.

The CuPy checks here need ``cupy`` importable but no device: building the backend and
its launchers touches no GPU (kernels compile on first launch).
"""
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

import segnp
import segnp.functions as F
from segnp import Tensor, nn, optim
from segnp.backends import KERNEL_NAMES, get_backend, using_backend
from segnp.backends import emulator as emulator_pkg
from segnp.backends.emulator import EmulatorRuntime
from segnp.backends.emulator import EmulatorBackend
from segnp.backends.cuda import masked_conv as mc
from segnp.backends.cuda.source import CUDA_DIR, load_source, parse_kernels
from segnp.window import Window, tap_valid
from cuda_composed import masked_conv_composed, masked_conv_composed_backward
from windows import win

NUMPY = get_backend("numpy")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _signature(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


# ---- names and signatures -------------------------------------------------------------
def test_cupy_backend_matches_numpy_signatures_without_a_device():
    pytest.importorskip("cupy", reason="cupy (the 'test' extra) is not installed")
    from segnp.backends.cuda.cupy import CupyBackend
    gpu = CupyBackend()
    for name in KERNEL_NAMES:
        assert callable(getattr(gpu, name, None)), f"cupy backend lacks {name}"
        assert _signature(getattr(gpu, name)) == _signature(getattr(NUMPY, name)), name


def test_emulator_backend_matches_numpy_signatures():
    emu = get_backend("cuda-emulator")
    for name in KERNEL_NAMES:
        assert callable(getattr(emu, name, None)), f"emulator backend lacks {name}"
        assert _signature(getattr(emu, name)) == _signature(getattr(NUMPY, name)), name


def test_composed_reference_has_the_fused_signature():
    for fused, composed in ((mc.masked_conv, masked_conv_composed),
                            (mc.masked_conv_backward, masked_conv_composed_backward)):
        assert _signature(fused) == _signature(composed)


def _sample_calls(rng):
    """One small call per kernel name: (name, args, kwargs)."""
    x = rng.standard_normal((1, 2, 5, 6))
    m = rng.uniform(0.1, 1.0, (1, 9, 5, 6))
    W = rng.standard_normal((3, 2, 3, 3))
    w = win(x, 3)
    d = NUMPY.im2dist(x, w)
    labels = rng.integers(0, 2, (1, 5, 6))
    # the transposed product: x's 5x6 samples to a 10x12 output, W as (C, F, 3, 3)
    wt, Wt = Window.transposed("test", 5, 6, 3, 2, 1, 1, 1), W.transpose(1, 0, 2, 3).copy()
    x2 = rng.standard_normal((2, 2, 10, 11))
    w2 = win(x2, 3)
    m2 = rng.uniform(0.1, 1.0, (2, 9, 10, 11)) * tap_valid(10, 11, (3, 3), (1, 1), (1, 1),
                                                          (1, 1), dtype=np.float64)
    ys2 = NUMPY.bilateral_repeat(x2, m2, w2, 2)
    return [
        ("im2col", (x, 3), dict(padding=1)),
        ("col2im", (NUMPY.im2col(x, 3, padding=1), (5, 6)), dict(padding=1)),
        ("conv2d", (x, W), dict(stride=(1, 2), padding=1)),
        ("conv2d_backward", (x, W, rng.standard_normal((1, 3, 5, 3))),
         dict(stride=(1, 2), padding=1)),
        ("im2dist", (x, w), {}),
        ("im2dist_backward", (x, d, np.ones_like(d), w), {}),
        ("masked_conv", (x, m, W, w), {}),
        ("masked_conv_backward", (x, m, W, rng.standard_normal((1, 3, 5, 6)), w), {}),
        ("bilateral", (x, m, w), {}),
        ("bilateral_backward", (x, m, np.ones_like(x), w), {}),
        # 10x11, where the NumPy twin runs on its canvas (5x6 pads it past its limit)
        ("bilateral_repeat", (x2, m2, w2, 3), {}),
        ("bilateral_repeat_backward", (x2, ys2, m2, rng.standard_normal(x2.shape), w2), {}),
        ("same_label_pairs", (labels, 3), {}),
        ("embedding_pair_loss", (x, labels), {}),
        ("embedding_pair_loss_backward", (x, labels, 1.0), {}),
        ("masked_conv_transpose", (x, m, Wt, wt), {}),
        ("masked_conv_transpose_backward", (x, m, Wt, rng.standard_normal((1, 3, 10, 12)), wt),
         {}),
    ]


class RecordingRuntime(EmulatorRuntime):
    """An emulator runtime that remembers which .cu kernels were launched."""

    def __init__(self):
        super().__init__(threads=64)
        self.launched = []

    def kernel(self, source, name, dtype, defines=None):
        k = super().kernel(source, name, dtype, defines)
        launched = self.launched

        def launch(*args, **kwargs):
            launched.append(f"{source}:{name}")
            return k(*args, **kwargs)
        return launch


def test_every_kernel_name_runs_cuda_kernels_and_matches_numpy():
    """Each name of KERNEL_NAMES is a launcher that runs .cu kernels (no NumPy
    fallback), and its result equals the NumPy backend's."""
    emu = EmulatorBackend()
    emu.rt = RecordingRuntime()
    calls = _sample_calls(np.random.default_rng(0))
    assert sorted(c[0] for c in calls) == sorted(KERNEL_NAMES)
    defined = {f"{src}:{k}" for src in os.listdir(CUDA_DIR) if src.endswith(".cu")
               for k in parse_kernels(load_source(os.path.join(CUDA_DIR, src)))}
    for name, args, kwargs in calls:
        emu.rt.launched.clear()
        got = getattr(emu, name)(*args, **kwargs)
        assert emu.rt.launched, f"{name} launched no CUDA kernel"
        assert set(emu.rt.launched) <= defined
        want = getattr(NUMPY, name)(*args, **kwargs)
        got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
        assert len(got) == len(want), name
        for u, v in zip(got, want):
            if isinstance(v, int):
                assert u == v, name
            else:
                assert np.asarray(u).dtype == np.asarray(v).dtype, name
                np.testing.assert_allclose(u, v, rtol=1e-11, atol=1e-12, err_msg=name)


def test_env_var_selects_the_emulator():
    code = ("import numpy as np, segnp, segnp.functions as F\n"
            "from segnp.backends import get_backend\n"
            "y = F.segaware_bilateral(np.ones((1, 1, 4, 4)), np.zeros((1, 2, 4, 4)), 1.0, 3)\n"
            "print(get_backend().name, float(y.numpy().sum()))\n")
    env = dict(os.environ, SEGNP_BACKEND="cuda-emulator",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    name, total = out.stdout.split()
    assert name == "cuda-emulator"
    # A constant image stays constant under a normalised filter: 16 pixels of ~1.
    assert abs(float(total) - 16.0) < 1e-4


# ---- a tiny segmentation-aware network -------------------------------------------------
class TinySegNet(nn.Module):
    """Embeddings from a conv, then a segmentation-aware conv and a bilateral filter
    guided by them, then 1x1 class scores (Secs. 3.2-3.4 in miniature)."""

    def __init__(self, dtype):
        super().__init__()
        self.embed = nn.Conv2d(3, 4, 3, padding=1, dtype=dtype)
        self.conv = nn.SegAwareConv2d(3, 6, 3, lam_init=0.5, dtype=dtype)
        self.conv2 = nn.SegAwareConv2d(6, 6, 3, stride=1, dilation=2, norm="l2",
                                       lam_init=0.2, dtype=dtype)
        self.smooth = nn.BilateralFilter(3, norm="l2sq", lam_init=1.0, dtype=dtype)
        self.score = nn.Conv2d(6, 2, 1, dtype=dtype)

    def forward(self, x):
        e = self.embed(x)
        h = F.relu(self.conv(x, e))
        h = F.relu(self.conv2(h, e))
        return self.score(self.smooth(h, e)), e


def _images(dtype):
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 0.3, (2, 3, 7, 8))
    y = np.zeros((2, 7, 8), np.int64)
    x[0, :, 1:5, 2:6] += 0.6
    y[0, 1:5, 2:6] = 1
    x[1, :, 3:, :4] += 0.6
    y[1, 3:, :4] = 1
    y[1, 0, 0] = 255
    return x.astype(dtype), y


def _train(backend, dtype, steps=4):
    segnp.manual_seed(0)
    with using_backend(backend):
        net = TinySegNet(dtype)
        opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        x, y = _images(dtype)
        x = Tensor(x)
        losses = []
        for _ in range(steps):
            logits, e = net(x)
            loss = F.softmax_cross_entropy(logits, y) + 0.1 * F.embedding_loss(e, y, 3, (1, 2))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return np.array(losses), {k: p.numpy() for k, p in net.named_parameters()}


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-11), (np.float32, 1e-5)])
def test_tiny_segaware_network_trains_the_same_on_the_emulator(monkeypatch, dtype, rtol):
    launches = []
    real_call = emulator_pkg.EmulatorKernel.__call__

    def counting_call(self, *args, **kwargs):
        launches.append(self.sig.name)
        return real_call(self, *args, **kwargs)
    monkeypatch.setattr(emulator_pkg.EmulatorKernel, "__call__", counting_call)

    emu_losses, emu_params = _train("cuda-emulator", dtype)
    assert {"masked_gemm_fwd", "masked_gemm_bwd_w", "bilateral_fwd", "im2dist_bwd",
            "pair_loss_fwd", "im2col_kernel"} <= set(launches)
    n_emu = len(launches)
    np_losses, np_params = _train("numpy", dtype)
    assert len(launches) == n_emu  # the NumPy run launched nothing
    assert np.all(np.isfinite(emu_losses))
    assert emu_losses[-1] < emu_losses[0]  # it learns
    np.testing.assert_allclose(emu_losses, np_losses, rtol=rtol)
    for k in np_params:
        scale = max(1.0, float(np.abs(np_params[k]).max()))
        np.testing.assert_allclose(emu_params[k], np_params[k], rtol=rtol,
                                   atol=rtol * scale, err_msg=k)


def test_gpu_benchmark_exits_cleanly_without_a_gpu():
    try:
        import cupy
        if cupy.is_available():
            pytest.skip("a GPU is present: run benchmarks/bench_gpu.py itself")
    except ImportError:
        pass
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_gpu.py"),
                          "--repeat", "1"], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "nothing to measure without a GPU" in out.stdout


def test_launch_checks_accept_cupy_array_flags():
    """check_args on arrays that carry cupy's own flags object (which has no
    ``writeable``), as every launch on a GPU does; no device needed."""
    flags_mod = pytest.importorskip("cupy._core.flags")
    from segnp.backends.cuda.runtime import check_args

    class DeviceArray:  # what check_args reads of a cupy.ndarray
        def __init__(self, dtype, contiguous=True):
            self.dtype = np.dtype(dtype)
            self.flags = flags_mod.Flags(contiguous, False, True)
            self.strides = (self.dtype.itemsize * (1 if contiguous else 2),)

    sig = parse_kernels("template <typename T>\n__global__ void k(const T* x, T* y, int n)"
                        " { y[0] = x[0] + n; }\n")["k"]
    check_args(sig, np.float32, (DeviceArray(np.float32), DeviceArray(np.float32),
                                 np.int32(1)), DeviceArray)
    with pytest.raises(TypeError, match="y must be C-contiguous"):
        check_args(sig, np.float32, (DeviceArray(np.float32),
                                     DeviceArray(np.float32, contiguous=False), np.int32(1)),
                   DeviceArray)


# ---- the CuPy runtime's own code, without a device ---------------------------------------
@pytest.fixture
def dry_cupy(monkeypatch):
    """A CupyBackend whose runtime runs on NumPy arrays: ``cupy`` inside runtime_cupy is
    replaced by a stand-in whose RawModule builds the source with the emulator, so
    CupyKernel (module cache, name expressions, argument checks) and every launcher run
    as on a GPU, minus the device.  Returns (backend, list of RawModule builds)."""
    pytest.importorskip("cupy", reason="cupy (the 'test' extra) is not installed")
    import re
    import types
    from segnp.backends.cuda import cupy as runtime_cupy
    from segnp.backends.cuda.cupy import CupyBackend
    from segnp.backends.emulator import EmulatorKernel, build
    from segnp.backends.cuda.source import COMPILE_OPTIONS

    modules = []

    class RawModule:
        def __init__(self, code, options, name_expressions):
            assert tuple(options) == COMPILE_OPTIONS
            self.sigs = parse_kernels(code)
            self.lib = build.load(code, self.sigs)
            self.exprs = tuple(name_expressions)
            modules.append(self.exprs)

        def get_function(self, expr):
            assert expr in self.exprs, (expr, self.exprs)
            m = re.fullmatch(r"(\w+)(?:<(float|double)>)?", expr)
            dtype = np.float64 if m.group(2) == "double" else np.float32
            k = EmulatorKernel(self.lib, self.sigs[m.group(1)], np.dtype(dtype))
            return lambda grid, block, args, shared_mem=0: k(grid, block, args, shared_mem)

    fake = types.SimpleNamespace(
        ndarray=np.ndarray, RawModule=RawModule,
        cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=0)))
    monkeypatch.setattr(runtime_cupy, "cupy", fake)
    monkeypatch.setattr(runtime_cupy, "_MODULES", {})
    gpu = CupyBackend(threads=64)
    gpu.rt.xp = np
    return gpu, modules


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cupy_runtime_runs_every_launcher(dry_cupy, dtype):
    gpu, modules = dry_cupy
    rng = np.random.default_rng(3)
    def cast(a):  # the float arrays, also those of a tuple (the repeated filter's passes)
        if isinstance(a, tuple):
            return tuple(cast(b) for b in a)
        return a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a

    for name, args, kwargs in _sample_calls(rng):
        args = tuple(cast(a) for a in args)
        got = getattr(gpu, name)(*args, **kwargs)
        want = getattr(NUMPY, name)(*args, **kwargs)
        got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
        for u, v in zip(got, want):
            if isinstance(v, int):
                assert u == v, name
            else:
                assert np.asarray(u).dtype == np.asarray(v).dtype, name
                np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5, err_msg=name)
    c = "float" if dtype == np.float32 else "double"
    # One module per (file, dtype), plus one for the plain kernel im2parity, whose
    # launcher asks for it with dtype int8.
    assert ("im2parity",) in modules
    assert len(modules) == len(set(modules))
    assert all(e == "im2parity" or e.endswith(f"<{c}>") for exprs in modules for e in exprs
               if exprs != ("im2parity",))


# ---- the window mask, cached per shape and device ----------------------------------------
def test_tap_valid_is_copied_to_the_device_once_per_shape(monkeypatch):
    """segaware_mask's validity mask is a constant of the window: a backend puts it on
    its device once per (shape, window, dtype) and reuses it, instead of a host-to-device
    copy (and its stall) on every forward."""
    from segnp import window as win
    from windows import win as window_of
    emu = EmulatorBackend()
    copies = []
    real = emu.asarray
    monkeypatch.setattr(emu, "asarray", lambda a, dtype=None: copies.append(a.shape) or
                        real(a, dtype))
    e = np.random.default_rng(5).standard_normal((2, 3, 6, 7))
    monkeypatch.setitem(segnp.backends._instances, "cuda-emulator-test", emu)
    monkeypatch.setitem(segnp.backends._REGISTRY, "cuda-emulator-test", "unused:unused")
    with using_backend("cuda-emulator-test"):
        m = [F.segaware_mask(e, 0.5, 3).numpy() for _ in range(3)]
        F.segaware_mask(e[:, :, :5], 0.5, 3)  # another shape: one more copy
    assert copies == [(1, 9, 6, 7), (1, 9, 5, 7)]
    w = window_of(e, 3)
    want = np.exp(-0.5 * NUMPY.im2dist(e, w)) * win.tap_valid(6, 7, (3, 3), (1, 1), (1, 1),
                                                               (1, 1), dtype=np.float64)
    for mi in m:
        np.testing.assert_allclose(mi, want, rtol=1e-12)
    valid = emu.tap_valid(w, dtype=np.float64)
    assert valid is emu.tap_valid(window_of(e, 3), dtype=np.float64)
    assert not valid.flags.writeable  # shared: nobody may write to it
    assert valid is not emu.tap_valid(w, dtype=np.float32)


def test_tap_valid_cache_is_per_device(monkeypatch):
    pytest.importorskip("cupy", reason="cupy (the 'test' extra) is not installed")
    import types
    from segnp.backends.cuda import cupy as cupy_backend
    device = [0]
    fake = types.SimpleNamespace(
        asarray=lambda a, dtype=None: np.array(a, dtype=dtype),
        cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=device[0])))
    monkeypatch.setattr(cupy_backend, "cupy", fake)
    gpu = cupy_backend.CupyBackend()
    args = (win(np.zeros((1, 1, 5, 5)), 3),)
    on0 = gpu.tap_valid(*args)
    device[0] = 1
    on1 = gpu.tap_valid(*args)
    assert on1 is not on0 and gpu.tap_valid(*args) is on1
    device[0] = 0
    assert gpu.tap_valid(*args) is on0
    np.testing.assert_array_equal(on0, on1)


# ---- SEGNP_REQUIRE_GPU: a GPU run cannot pass by skipping ---------------------------------
def test_require_gpu_turns_skipped_gpu_tests_into_failures():
    try:
        import cupy
        if cupy.is_available():
            pytest.skip("a GPU is present: the gpu tests run instead of skipping")
    except ImportError:
        pass
    node = "tests/test_cuda_conv.py::test_gpu_rejects_python_ints"
    env = dict(os.environ, SEGNP_REQUIRE_GPU="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          node], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 1, out.stdout[-2000:]
    assert "1 failed" in out.stdout
    assert "SEGNP_REQUIRE_GPU=1, but this gpu test was skipped" in out.stdout
