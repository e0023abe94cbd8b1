"""The Python steps of benchmarks/gpu_verify.sh (issue 13): each prints report lines.

    python benchmarks/gpu_verify.py STEP [--emulator]

STEP is one of
  versions  device, driver, CUDA runtime, CuPy, NVRTC and PyTorch versions (step 1);
  parity    every op on odd shapes against the NumPy backend, float32 and float64, with
            every output the launchers allocate pre-filled with NaN (step 3);
  identity  bitwise-identical results across launch configurations (threads 96, 256,
            1024; block counts capped at 7 or not) and from run to run (step 4);
  large     a batch of more than 2^31 elements: the last image equals that image
            computed alone, bitwise (step 5);
  small     a small run of every op, the program compute-sanitizer runs (step 6);
  timing    milliseconds of every kernel, and of the fused masked GEMM next to cuDNN
            (PyTorch) or, without PyTorch, segnp's im2col + cuBLAS path; the TF32 setting
            comes from the environment (CUPY_TF32, SEGNP_TF32) (step 7).

``--emulator`` runs the same code on the CUDA emulator (the .cu kernels on the CPU):
every step that needs a device prints "skipped: no GPU"; parity, identity and small
run, and timing runs on small shapes as a CPU figure, not a GPU one.  A step that
finds a problem prints "FAIL: ..." and exits with status 1.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from segnp.backends import get_backend  # noqa: E402
from segnp.backends.emulator import EmulatorBackend  # noqa: E402
from segnp.window import Window  # noqa: E402
# The composed masked GEMM (Sec. 4.2 literally) is the tests' reference.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from cuda_composed import masked_conv_composed, masked_conv_composed_backward  # noqa: E402

NUMPY = get_backend("numpy")
FAILURES = []


def say(line=""):
    print(line, flush=True)


def fail(what):
    FAILURES.append(what)
    say(f"FAIL: {what}")


class Device:
    """The backend under test (CuPy or the emulator), its array module and a clock."""

    def __init__(self, emulator, threads=256, max_blocks=65535):
        self.emulator = emulator
        if emulator:
            self.backend = EmulatorBackend(threads=threads, max_blocks=max_blocks)
        else:
            from segnp.backends.cuda.cupy import CupyBackend
            self.backend = CupyBackend(threads=threads, max_blocks=max_blocks)
        self.xp = self.backend.xp

    def put(self, a):
        return self.xp.asarray(a) if isinstance(a, np.ndarray) else a

    def get(self, a):
        return self.backend.to_numpy(a) if hasattr(a, "shape") else a

    def sync(self):
        if not self.emulator:
            self.xp.cuda.Device().synchronize()

    def time_ms(self, fn, repeat):
        """Median milliseconds of fn() (CUDA events on a GPU, the wall clock otherwise)."""
        fn()
        self.sync()
        times = []
        for _ in range(repeat):
            if self.emulator:
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1e3)
            else:
                start, stop = self.xp.cuda.Event(), self.xp.cuda.Event()
                start.record()
                fn()
                stop.record()
                stop.synchronize()
                times.append(self.xp.cuda.get_elapsed_time(start, stop))
        return float(np.median(times))


class NanPrefill:
    """An array module whose empty() and empty_like() return NaN-filled arrays (integer
    arrays: their largest value), so an output element no kernel writes is seen."""

    def __init__(self, xp):
        self._xp = xp

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def _fill(self, a):
        a.fill(np.nan if a.dtype.kind == "f" else np.iinfo(a.dtype).max)
        return a

    def empty(self, shape, dtype=float):
        return self._fill(self._xp.empty(shape, dtype))

    def empty_like(self, a, dtype=None):
        return self._fill(self._xp.empty_like(a, dtype=dtype))


# ---- the ops, on one case ------------------------------------------------------------------
def make_case(rng, N, C, F, H, W, ksize, stride, padding, dilation, dtype):
    """Inputs of every op for one window: x, e (N, C, H, W), m, W, gy, labels."""
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    win = Window.segaware("gpu_verify", H, W, ksize, stride, padding, dilation)
    d = NUMPY.im2dist(x, win)
    m = np.exp(-0.3 * d).astype(dtype) * (d > 0)  # 0 at taps outside, like Eq. 3
    m[:, ksize * ksize // 2] = 1
    Wt = (rng.standard_normal((F, C, ksize, ksize)) / np.sqrt(C * ksize ** 2)).astype(dtype)
    gy = rng.standard_normal((N, F) + d.shape[2:]).astype(dtype)
    labels = rng.integers(0, 3, (N, H, W)).astype(np.int32)
    return dict(x=x, m=m, W=Wt, gy=gy, labels=labels, d=d.astype(dtype),
                args=(ksize, stride, padding, dilation), win=win)


def op_calls(c):
    """(label, kernel name, args, kwargs) for every op of KERNEL_NAMES on case c."""
    x, m, Wt, gy, d = c["x"], c["m"], c["W"], c["gy"], c["d"]
    k, s, p, dl = c["args"]
    w = c["win"]
    conv_p = p if p is not None else dl * (k // 2)
    gcols = np.ones(NUMPY.im2col(x, k, s, conv_p, dl).shape, x.dtype)
    gyc = np.ones((x.shape[0], x.shape[1]) + d.shape[2:], x.dtype)
    pair_dil = dl if isinstance(dl, int) else dl[0]
    return [
        ("im2col", "im2col", (x, k, s, conv_p, dl), {}),
        ("col2im", "col2im", (gcols, x.shape[2:], s, conv_p, dl), {}),
        ("conv2d", "conv2d", (x, Wt, s, conv_p, dl), {}),
        ("conv2d_backward", "conv2d_backward", (x, Wt, gy, s, conv_p, dl), {}),
        ("im2dist", "im2dist", (x, w), {}),
        ("im2dist_backward", "im2dist_backward", (x, d, m, w), {}),
        ("masked_conv", "masked_conv", (x, m, Wt, w), {}),
        ("masked_conv_backward", "masked_conv_backward", (x, m, Wt, gy, w), {}),
        ("bilateral", "bilateral", (x, m, w), {}),
        ("bilateral_backward", "bilateral_backward", (x, m, gyc, w), {}),
        ("same_label_pairs", "same_label_pairs", (c["labels"], k, pair_dil), {}),
        ("embedding_pair_loss", "embedding_pair_loss", (x, c["labels"], k, pair_dil), {}),
        ("embedding_pair_loss_backward", "embedding_pair_loss_backward",
         (x, c["labels"], 0.5, k, pair_dil), {}),
    ]


def run_op(dev, name, args, kwargs):
    """The op on the device, its outputs as a tuple of NumPy arrays (None kept)."""
    out = getattr(dev.backend, name)(*[dev.put(a) for a in args], **kwargs)
    out = out if isinstance(out, tuple) else (out,)
    return tuple(None if o is None else np.asarray(dev.get(o)) for o in out)


# Odd shapes: 1x1 images, stride 2, dilation 5, C=130, F=131, unequal pairs.
PARITY_CASES = [
    dict(N=2, C=130, F=131, H=9, W=11, ksize=3, stride=2, padding=None, dilation=1),
    dict(N=3, C=5, F=7, H=1, W=1, ksize=3, stride=1, padding=None, dilation=1),
    dict(N=2, C=6, F=3, H=13, W=12, ksize=3, stride=1, padding=None, dilation=5),
    dict(N=1, C=4, F=5, H=10, W=9, ksize=5, stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
]


def step_parity(dev):
    dev.backend.rt.xp = NanPrefill(dev.backend.rt.xp)
    for dtype in (np.float32, np.float64):
        tol = dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-11)
        for i, shape in enumerate(PARITY_CASES):
            c = make_case(np.random.default_rng(i), dtype=dtype, **shape)
            bad = []
            for label, name, args, kwargs in op_calls(c):
                got = run_op(dev, name, args, kwargs)
                want = getattr(NUMPY, name)(*args, **kwargs)
                want = want if isinstance(want, tuple) else (want,)
                for j, (u, v) in enumerate(zip(got, want)):
                    v = np.asarray(v)
                    if u.dtype.kind == "f" and not np.isfinite(u).all():
                        bad.append(f"{label}[{j}] has unwritten (NaN) elements")
                    elif u.shape != v.shape or not np.allclose(u, v, **tol):
                        err = (np.abs(u.astype(np.float64) - v).max()
                               if u.shape == v.shape else "shape")
                        bad.append(f"{label}[{j}] differs from NumPy (max error {err})")
            where = f"{np.dtype(dtype).name} case {i} {shape}"
            if bad:
                for b in bad:
                    fail(f"{where}: {b}")
            else:
                say(f"ok: {where}: {len(op_calls(c))} ops match NumPy, no NaN left")


LAUNCHES = [(96, 65535), (256, 65535), (1024, 65535), (96, 7), (256, 7), (1024, 7)]
# A sum over blocks: its rounding depends on the grid, so it is compared across launch
# shapes with a tolerance and bitwise only from run to run.
GRID_DEPENDENT = {"embedding_pair_loss[0]"}


def step_identity(dev):
    c = make_case(np.random.default_rng(7), N=2, C=20, F=24, H=17, W=15, ksize=3, stride=1,
                  padding=None, dilation=2, dtype=np.float32)
    reference = None
    for threads, blocks in LAUNCHES:
        d = Device(dev.emulator, threads, blocks)
        runs = []
        for _ in range(2):
            res = {}
            for label, name, args, kwargs in op_calls(c):
                for j, o in enumerate(run_op(d, name, args, kwargs)):
                    res[f"{label}[{j}]"] = o
            runs.append(res)
        for key in runs[0]:
            if not np.array_equal(runs[0][key], runs[1][key]):
                fail(f"threads={threads} max_blocks={blocks}: {key} changed between runs")
        if reference is None:
            reference = runs[0]
            continue
        for key, v in reference.items():
            u = runs[0][key]
            same = np.allclose(u, v, rtol=1e-5) if key in GRID_DEPENDENT else np.array_equal(u, v)
            if not same:
                fail(f"threads={threads} max_blocks={blocks}: {key} differs from "
                     f"threads={LAUNCHES[0][0]} max_blocks={LAUNCHES[0][1]}")
    if not FAILURES:
        say(f"ok: {len(reference)} outputs of {len(op_calls(c))} ops bitwise identical over "
            f"{len(LAUNCHES)} launch shapes x 2 runs (the block-summed pair loss to 1e-5)")


def step_large(dev, N=257, C=8, F=4, H=1024, W=1024):
    """N*C*H*W > 2^31: x (257, 8, 1024, 1024) float32, 8.6 GB, plus m and the outputs
    (about 60 GB of device memory at the peak)."""
    xp = dev.xp
    say(f"batch x ({N}, {C}, {H}, {W}) = {N * C * H * W} elements (2^31 = {2 ** 31})")
    rng = xp.random.default_rng(0) if hasattr(xp.random, "default_rng") else xp.random
    x = rng.standard_normal((N, C, H, W), dtype=xp.float32)
    Wt = xp.asarray(np.random.default_rng(1).standard_normal((F, C, 3, 3)), xp.float32)
    b = dev.backend
    w = Window.segaware("gpu_verify", H, W, 3)
    m = xp.exp(-0.2 * b.im2dist(x, w))  # (N, 9, H, W): itself past 2^31
    m *= b.tap_valid(w, dtype=np.float32)
    last = slice(N - 1, N)
    checks = [
        ("im2dist", lambda s: b.im2dist(x[s], w)),
        ("masked_conv", lambda s: b.masked_conv(x[s], m[s], Wt, w)),
        ("bilateral", lambda s: b.bilateral(x[s], m[s], w)),
    ]
    gy = xp.ones((N, F, H, W), xp.float32)
    checks.append(("masked_conv_backward gx, gm",
                   lambda s: b.masked_conv_backward(x[s], m[s], Wt, gy[s], w,
                                                    need_W=False)[:2]))
    for label, fn in checks:
        whole = fn(slice(None))
        whole = whole if isinstance(whole, tuple) else (whole,)
        tail = [np.asarray(dev.get(o[-1:])) for o in whole]
        del whole
        alone = fn(last)
        alone = [np.asarray(dev.get(o)) for o in (alone if isinstance(alone, tuple) else (alone,))]
        if all(np.array_equal(u, v) for u, v in zip(tail, alone)):
            say(f"ok: {label}: the last image of the batch equals it computed alone, bitwise")
        else:
            fail(f"{label}: the last image of the >2^31-element batch differs from it alone")
        if hasattr(xp, "get_default_memory_pool"):
            xp.get_default_memory_pool().free_all_blocks()


def step_small(dev):
    c = make_case(np.random.default_rng(3), N=1, C=3, F=4, H=6, W=5, ksize=3, stride=1,
                  padding=None, dilation=1, dtype=np.float32)
    for label, name, args, kwargs in op_calls(c):
        run_op(dev, name, args, kwargs)
    dev.sync()
    say(f"ok: {len(op_calls(c))} ops ran")


TIMING_SHAPE = dict(N=8, C=64, F=64, H=128, W=128)  # the review's shape, 3x3, fp32
EMULATOR_TIMING_SHAPE = dict(N=1, C=8, F=8, H=16, W=16)


def step_timing(dev, repeat):
    shape = EMULATOR_TIMING_SHAPE if dev.emulator else TIMING_SHAPE
    tf32 = os.environ.get("SEGNP_TF32", "0") == "1"
    c = make_case(np.random.default_rng(5), ksize=3, stride=1, padding=None, dilation=1,
                  dtype=np.float32, **shape)
    say(f"shape N={shape['N']} C={shape['C']} F={shape['F']} {shape['H']}x{shape['W']}, "
        f"3x3, float32; " + ("emulator (CPU) milliseconds, not GPU figures" if dev.emulator
                             else f"GPU ms; TF32 {'on' if tf32 else 'off'} for cuBLAS/cuDNN"))
    ops = op_calls(c)
    fused = None
    for label, name, args, kwargs in ops:
        a = [dev.put(v) for v in args]
        fn = getattr(dev.backend, name)
        ms = dev.time_ms(lambda: fn(*a, **kwargs), repeat)
        if name.startswith("masked_conv"):
            fused = (fused or 0) + ms
        say(f"  {label:32s} {ms:10.3f} ms")
    rt = dev.backend.rt
    x, m, Wt, gy = (dev.put(c[k]) for k in ("x", "m", "W", "gy"))
    w = c["win"]
    comp = dev.time_ms(lambda: (masked_conv_composed(rt, x, m, Wt, w),
                                masked_conv_composed_backward(rt, x, m, Wt, gy, w)), repeat)
    say(f"  {'fused masked GEMM fwd+bwd':32s} {fused:10.3f} ms")
    say(f"  {'composed (im2col + BLAS) fwd+bwd':32s} {comp:10.3f} ms  (fused/composed "
        f"{fused / comp:.2f}x)")
    if dev.emulator:
        say("  cuDNN: skipped: no GPU")
        return
    try:
        import torch
    except ImportError:
        say("  cuDNN: skipped: PyTorch is not installed (the composed path above is the "
            "cuBLAS reference)")
        return
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    tx = torch.as_tensor(c["x"], device="cuda").requires_grad_()
    tw = torch.as_tensor(c["W"], device="cuda").requires_grad_()
    tg = torch.as_tensor(c["gy"], device="cuda")

    def conv():
        y = torch.nn.functional.conv2d(tx, tw, padding=1)
        y.backward(tg)
    ms = dev.time_ms(conv, repeat)
    say(f"  {'cuDNN conv2d fwd+bwd (PyTorch)':32s} {ms:10.3f} ms  (fused/cuDNN "
        f"{fused / ms:.2f}x)")


def step_versions(emulator):
    import platform
    say(f"python {platform.python_version()}, numpy {np.__version__}")
    try:
        import cupy
        say(f"cupy {cupy.__version__}")
        say(f"nvrtc {'.'.join(map(str, cupy.cuda.nvrtc.getVersion()))}")
        if not emulator:
            rt = cupy.cuda.runtime
            props = rt.getDeviceProperties(cupy.cuda.Device().id)
            say(f"device {props['name'].decode()} (sm_{props['major']}{props['minor']}, "
                f"{props['totalGlobalMem'] / 2 ** 30:.0f} GiB)")
            say(f"driver {rt.driverGetVersion()}, CUDA runtime {rt.runtimeGetVersion()}")
    except Exception as e:  # recorded, not fatal: step 2 fails on its own without a GPU
        say(f"cupy: not usable ({type(e).__name__}: {e})")
    try:
        import torch
        say(f"torch {torch.__version__} (cuDNN {torch.backends.cudnn.version()})")
    except ImportError:
        say("torch: not installed")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=["versions", "parity", "identity", "large", "small",
                                    "timing"])
    p.add_argument("--emulator", action="store_true", help="run on the CUDA emulator")
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args()
    if a.step == "versions":
        step_versions(a.emulator)
        return 0
    dev = Device(a.emulator)
    if a.step == "large" and a.emulator:
        say("skipped: no GPU (the emulator checks these offsets on sparse mappings in "
            "tests/test_cuda_limits.py)")
        return 0
    {"parity": step_parity, "identity": step_identity, "large": step_large,
     "small": step_small, "timing": lambda d: step_timing(d, a.repeat)}[a.step](dev)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
