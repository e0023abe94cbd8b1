"""The CPU emulator of the CUDA kernels (segnp/backends/emulator): barriers, shared
memory, argument checks, the disk cache and AddressSanitizer builds.

Small kernels written here exercise one feature each; every result is compared with
what the CUDA programming model defines, computed in NumPy.
"""
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from segnp.backends.emulator import EmulatorRuntime, build
from segnp.backends.cuda.source import CUDA_DIR, load_source, parse_kernels

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "g++") is None,
                                reason="the CUDA emulator needs a C++ compiler (g++)")

i32 = np.int32

# Each thread stores its value in shared memory and reads its right neighbour's; the
# barrier between the two is what makes the neighbour's store visible.
SHIFT = """
template <typename T>
__global__ void shift_sync(const T* x, T* y, int n)
{
    __shared__ T s[64];
    const int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    s[t] = i < n ? x[i] : T(0);
    __syncthreads();
    if (i < n) y[i] = s[(t + 1) % blockDim.x];
}

template <typename T>
__global__ void shift_nosync(const T* x, T* y, int n)
{
    __shared__ T s[64];
    const int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    s[t] = i < n ? x[i] : T(0);
    if (i < n) y[i] = s[(t + 1) % blockDim.x];
}

// The barrier sits in a helper: the emulator must still run this kernel as fibers.
__device__ void barrier_then_copy(float* s, float* y, int t)
{
    __syncthreads();
    y[t] = s[(t + 1) % blockDim.x];
}
__global__ void shift_via_helper(const float* x, float* y)
{
    __shared__ float s[64];
    s[threadIdx.x] = x[threadIdx.x];
    barrier_then_copy(s, y, threadIdx.x);
}

// Thread 0 leaves before the barrier the others wait at: undefined on a GPU.
__global__ void early_exit(float* y)
{
    if (threadIdx.x == 0) return;
    __syncthreads();
    y[threadIdx.x] = 1.0f;
}

// __launch_bounds__ before the name must not hide the barrier from the parser.
__global__ __launch_bounds__(64)
void shift_bounded(const float* x, float* y)
{
    __shared__ float s[64];
    s[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    y[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}

__global__ void split_barriers(float* y)
{
    if (threadIdx.x % 2)
        __syncthreads();
    else
        __syncthreads();
    y[threadIdx.x] = 1.0f;
}
"""

FEATURES = """
// Block sums with atomicAdd into one cell.
template <typename T>
__global__ void atomic_sum(const T* x, T* total, int n)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        atomicAdd(total, x[i]);
}

// Reverse each block's slice through dynamic shared memory.
__global__ void reverse_blocks(const float* x, float* y)
{
    extern __shared__ float buf[];
    const int t = threadIdx.x, base = blockIdx.x * blockDim.x;
    buf[t] = x[base + t];
    __syncthreads();
    y[base + t] = buf[blockDim.x - 1 - t];
}

// Where every thread of a 3-D grid of 3-D blocks lands.
__global__ void coordinates(int* out)
{
    const int b = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    const int t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    int* o = out + 6 * (b * blockDim.x * blockDim.y * blockDim.z + t);
    o[0] = blockIdx.x; o[1] = blockIdx.y; o[2] = blockIdx.z;
    o[3] = threadIdx.x; o[4] = threadIdx.y; o[5] = threadIdx.z;
}

// CUDA math functions the prelude maps to C++.
__global__ void math_funcs(const float* x, float* y, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float v = x[i];
    y[6 * i + 0] = rsqrtf(fabsf(v) + 1.0f);
    y[6 * i + 1] = __expf(-v * v);
    y[6 * i + 2] = fmaxf(v, 0.25f) + fminf(v, -0.25f);
    y[6 * i + 3] = copysignf(1.0f, v) * __fdividef(1.0f, 2.0f + fabsf(v));
    y[6 * i + 4] = max(i, 3) + min(v, 0.5f);
    y[6 * i + 5] = __saturatef(v);
}

__global__ void checked(const float* x, float* y)
{
    assert(x[threadIdx.x] >= 0.0f);
    y[threadIdx.x] = x[threadIdx.x];
}

__global__ void widths(const float* x, double* y, float a, double b, int n, long long big,
                       const signed char* flags)
{
    for (int i = 0; i < n; ++i) y[i] = (double)(x[i] * a) + b + (double)big + flags[i];
}
"""


def _runtime(tmp_path, sources, **kw):
    for name, text in sources.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return EmulatorRuntime(source_dir=str(tmp_path), **kw)


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    # Ascending, whatever SEGNP_EMULATOR_ORDER says: the missing-barrier checks below
    # know which neighbour has already run.
    return _runtime(tmp_path_factory.mktemp("cu"), {"shift.cu": SHIFT, "features.cu": FEATURES},
                    order="ascending")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_barrier_makes_neighbour_stores_visible(rt, dtype):
    n, threads = 150, 64  # 3 blocks, the last one partial
    x = np.random.default_rng(0).uniform(1, 2, n).astype(dtype)
    blocks = -(-n // threads)
    want = np.empty(n, dtype)
    for b in range(blocks):  # y[i] = x of the next thread in the same block (0 past n)
        lo = b * threads
        seg = np.zeros(threads, dtype)
        seg[:min(threads, n - lo)] = x[lo:lo + threads]
        want[lo:lo + threads] = np.roll(seg, -1)[:min(threads, n - lo)]

    y = np.zeros(n, dtype)
    rt.kernel("shift.cu", "shift_sync", dtype)((blocks,), (threads,), (x, y, i32(n)))
    np.testing.assert_array_equal(y, want)

    # Without the barrier, thread t runs to the end before thread t+1 stores: it reads
    # whatever the previous block left in shared memory.
    y = np.zeros(n, dtype)
    rt.kernel("shift.cu", "shift_nosync", dtype)((blocks,), (threads,), (x, y, i32(n)))
    wrong = np.flatnonzero(y != want)
    assert wrong.size >= n - blocks - 2  # every thread but the last of each block


def test_barrier_inside_a_device_function_is_found(rt):
    sigs = parse_kernels(SHIFT)
    assert sigs["shift_via_helper"].syncs and sigs["shift_bounded"].syncs
    assert not sigs["shift_nosync"].syncs
    x = np.arange(32, dtype=np.float32)
    for name in ("shift_via_helper", "shift_bounded"):
        y = np.zeros(32, np.float32)
        rt.kernel("shift.cu", name, np.float32)((1,), (32,), (x, y))
        np.testing.assert_array_equal(y, np.roll(x, -1))


@pytest.mark.parametrize("kernel,message", [
    ("early_exit", "returned while 31 wait at __syncthreads"),
    ("split_barriers", "wait at different __syncthreads"),
])
def test_barrier_misuse_is_an_error_not_a_hang(rt, kernel, message):
    y = np.zeros(32, np.float32)
    with pytest.raises(RuntimeError, match=message):
        rt.kernel("shift.cu", kernel, np.float32)((2,), (32,), (y,))
    # The runtime is usable after a failed launch.
    x = np.arange(32, dtype=np.float32)
    rt.kernel("shift.cu", "shift_via_helper", np.float32)((1,), (32,), (x, y))
    np.testing.assert_array_equal(y, np.roll(x, -1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_atomic_add(rt, dtype):
    x = np.random.default_rng(1).integers(-50, 50, 1000).astype(dtype)  # exact sums
    total = np.zeros(1, dtype)
    rt.kernel("features.cu", "atomic_sum", dtype)((3,), (128,), (x, total, i32(x.size)))
    assert total[0] == x.sum()


def test_dynamic_shared_memory(rt):
    x = np.arange(96, dtype=np.float32)
    y = np.zeros(96, np.float32)
    rt.kernel("features.cu", "reverse_blocks", np.float32)((3,), (32,), (x, y), shared_mem=32 * 4)
    np.testing.assert_array_equal(y, x.reshape(3, 32)[:, ::-1].ravel())


def test_grid_and_block_coordinates_follow_cuda_order(rt):
    grid, block = (3, 2, 2), (4, 3, 2)
    out = np.full((2, 2, 3, 2, 3, 4, 6), -1, np.int32)  # (bz, by, bx, tz, ty, tx, 6)
    rt.kernel("features.cu", "coordinates", np.float32)(grid, block, (out,))
    bz, by, bx, tz, ty, tx = np.meshgrid(*(np.arange(s) for s in out.shape[:6]), indexing="ij")
    np.testing.assert_array_equal(out, np.stack([bx, by, bz, tx, ty, tz], axis=-1))


def test_math_functions(rt):
    x = np.linspace(-2, 2, 37).astype(np.float32)
    y = np.zeros((37, 6), np.float32)
    rt.kernel("features.cu", "math_funcs", np.float32)((2,), (32,), (x, y, i32(37)))
    i = np.arange(37)
    want = np.stack([1 / np.sqrt(np.abs(x) + 1), np.exp(-x * x),
                     np.maximum(x, 0.25) + np.minimum(x, -0.25),
                     np.copysign(1, x) / (2 + np.abs(x)), np.maximum(i, 3) + np.minimum(x, 0.5),
                     np.clip(x, 0, 1)], axis=1)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


def test_device_assert_raises(rt):
    x = np.array([1, 2, -3, 4], np.float32)
    with pytest.raises(RuntimeError, match=r"assert\(x\[threadIdx.x\] >= 0.0f\) failed.*"
                                           r"thread \(2, 0, 0\)"):
        rt.kernel("features.cu", "checked", np.float32)((1,), (4,), (x, np.zeros(4, np.float32)))


def _read_only(a):
    a.flags.writeable = False
    return a


def _widths_args(**change):
    args = dict(x=np.ones(3, np.float32), y=np.zeros(3, np.float64), a=np.float32(2),
                b=np.float64(0.5), n=i32(3), big=np.int64(2 ** 40),
                flags=np.array([1, 0, -1], np.int8))
    args.update(change)
    return tuple(args.values())


def test_scalars_and_arrays_of_every_width_pass(rt):
    args = _widths_args()
    rt.kernel("features.cu", "widths", np.float32)((1,), (1,), args)
    np.testing.assert_array_equal(args[1], 2 + 0.5 + 2.0 ** 40 + np.array([1, 0, -1]))


@pytest.mark.parametrize("change,message", [
    (dict(n=3), r"n is a C int and must be passed as numpy.int32; got int 3"),
    (dict(n=np.int64(3)), r"n is a C int .*got numpy int64 scalar"),
    (dict(a=np.float64(2)), r"a is a C float .*numpy.float32; got numpy float64"),
    (dict(a=2.0), r"a is a C float .*got float 2.0"),
    (dict(b=np.float32(0.5)), r"b is a C double .*numpy.float64"),
    (dict(big=i32(1)), r"big is a C long long .*numpy.int64"),
    (dict(x=np.ones(3, np.float64)), r"x must be an array of float32; got float64"),
    (dict(flags=np.ones(3, np.uint8)), r"flags must be an array of int8; got uint8"),
    (dict(x=np.ones(6, np.float32)[::2]), r"x must be C-contiguous"),
    (dict(y=_read_only(np.zeros(3))), r"y is written by the kernel but .*read-only"),
    (dict(x=[1.0, 1.0, 1.0]), r"x must be a numpy.ndarray of float32; got list"),
])
def test_wrong_widths_are_rejected(rt, change, message):
    k = rt.kernel("features.cu", "widths", np.float32)
    with pytest.raises(TypeError, match="kernel widths: " + message):
        k((1,), (1,), _widths_args(**change))


def test_wrong_argument_count_and_launch_shapes(rt):
    k = rt.kernel("features.cu", "widths", np.float32)
    with pytest.raises(TypeError, match=r"expected a tuple of 7 arguments \(x, y, a, b, n, "
                                        r"big, flags\); got 6"):
        k((1,), (1,), _widths_args()[:-1])
    with pytest.raises(RuntimeError, match=r"block \(2048, 1, 1\) is not a valid CUDA block"):
        k((1,), (2048,), _widths_args())
    with pytest.raises(ValueError, match="grid must be a positive int"):
        k((0,), (1,), _widths_args())


def test_unknown_kernel_and_bad_template(tmp_path):
    rt = _runtime(tmp_path, {"bad.cu": "template <typename T, int N>\n"
                                       "__global__ void k(T* x) { x[0] = N; }\n"})
    with pytest.raises(ValueError, match=r"templates must take one typename"):
        rt.kernel("bad.cu", "k", np.float32)
    rt2 = _runtime(tmp_path, {"ok.cu": SHIFT})
    with pytest.raises(ValueError, match=r"no __global__ kernel named 'nope'"):
        rt2.kernel("ok.cu", "nope", np.float32)
    with pytest.raises(TypeError, match="float32 and float64 only; got float16"):
        rt2.kernel("ok.cu", "shift_sync", np.float16)


def test_disk_cache_is_hit_on_second_load(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGNP_CACHE_DIR", str(tmp_path / "cache"))
    text = SHIFT + "\n// cache test\n"
    sigs = parse_kernels(text)
    path, _, compiled = build.build(text, sigs)
    assert compiled and os.path.exists(path)
    assert os.path.dirname(path) == str(tmp_path / "cache" / "emulator")
    mtime = os.stat(path).st_mtime_ns

    def no_compiler(*a, **k):
        raise AssertionError("g++ ran although the library was cached")
    monkeypatch.setattr(build.subprocess, "run", no_compiler)
    path2, _, compiled2 = build.build(text, sigs)
    assert (path2, compiled2) == (path, False)
    assert os.stat(path).st_mtime_ns == mtime
    # A changed source is a different key.
    monkeypatch.undo()
    monkeypatch.setenv("SEGNP_CACHE_DIR", str(tmp_path / "cache"))
    path3, _, compiled3 = build.build(text + "// edit\n", sigs)
    assert compiled3 and path3 != path
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")]


# y[0] gets what the previous launch of *this build* left in shared memory.
SWAP = """
template <typename T>
__global__ void swap_shared(const T* x, T* y)
{
    __shared__ T s[SIZE];
    y[0] = s[0];
    s[0] = x[0];
}
"""


def test_builds_with_other_defines_keep_their_own_shared_memory(tmp_path):
    """Two builds of one template kernel (as with masked_conv.cu's tile shapes) loaded in
    one process: g++'s default would bind both to one process-wide copy of the static
    array, so the second build would read the first one's value (or overflow its
    smaller array)."""
    rt = _runtime(tmp_path, {"swap.cu": SWAP})
    small = rt.kernel("swap.cu", "swap_shared", np.float64, defines={"SIZE": 4})
    large = rt.kernel("swap.cu", "swap_shared", np.float64, defines={"SIZE": 512})
    y = np.zeros(1)
    seen = []
    for k, v in ((small, 1.0), (large, 2.0), (small, 3.0), (large, 4.0)):
        k((1,), (1,), (np.array([v]), y))
        seen.append(y[0])
    assert seen == [0.0, 0.0, 1.0, 2.0]


@pytest.mark.parametrize("source", sorted(f for f in os.listdir(CUDA_DIR) if f.endswith(".cu")))
def test_every_cuda_source_builds_under_the_emulator(source):
    text = load_source(os.path.join(CUDA_DIR, source))
    sigs = parse_kernels(text)
    assert sigs, f"{source} defines no __global__ kernel"
    lib = build.load(text, sigs)
    for name, dtype in build.instantiations(sigs):
        assert lib.entry(name, None if dtype is None else dtype.str) is not None


OOB = """
__global__ void write_past_end(float* y, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 1.0f;   // one element too far
}
"""

ASAN_SCRIPT = """
import sys, numpy as np
from segnp.backends.emulator import EmulatorRuntime
rt = EmulatorRuntime(source_dir=sys.argv[1])
y = np.zeros(1000, np.float32)
rt.kernel("oob.cu", "write_past_end", np.float32)((4,), (256,), (y, np.int32(y.size)))
print("no error")
"""


def _libasan():
    cxx = os.environ.get("CXX") or "g++"
    out = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = out.stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def asan_env(**extra):
    """The environment of a Python child whose emulator builds and runs kernels under
    AddressSanitizer; skips when this compiler or Python cannot do it."""
    libasan = _libasan()
    if libasan is None:
        pytest.skip("no libasan.so for this compiler")
    env = dict(os.environ, SEGNP_EMULATOR_SANITIZE="address", LD_PRELOAD=libasan,
               ASAN_OPTIONS="detect_leaks=0", PYTHONPATH=ROOT, **extra)
    probe = subprocess.run([sys.executable, "-c", "print('ok')"], env=env,
                           capture_output=True, text=True)
    if probe.returncode != 0 or "ok" not in probe.stdout:
        pytest.skip(f"python does not start with libasan preloaded: {probe.stderr[-300:]}")
    return env


@pytest.mark.slow
def test_out_of_bounds_write_is_caught_by_address_sanitizer(tmp_path):
    (tmp_path / "oob.cu").write_text(OOB)
    env = asan_env(SEGNP_CACHE_DIR=str(tmp_path / "cache"))
    run = subprocess.run([sys.executable, "-c", ASAN_SCRIPT, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "no error" not in run.stdout
    assert "heap-buffer-overflow" in run.stderr
    assert "WRITE of size 4" in run.stderr


# Each thread reads the store of the thread below it, with or without a barrier first.
LOWER = """
__global__ void read_lower(const float* x, float* y, int sync)
{
    __shared__ float s[64];
    const int t = threadIdx.x;
    s[t] = x[t];
    if (sync) __syncthreads();
    y[t] = t > 0 ? s[t - 1] : 0.0f;
}

// Records the order blocks ran in.
__global__ void block_order(int* order, int* next)
{
    if (threadIdx.x == 0) order[(*next)++] = blockIdx.x;
}
"""


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_descending_order_exposes_a_missing_barrier(tmp_path, order):
    """Ascending order hides a missing barrier before a read of a lower thread's store
    (that thread has already run); descending order exposes it."""
    rt = _runtime(tmp_path, {"lower.cu": LOWER}, order=order)
    k = rt.kernel("lower.cu", "read_lower", np.float32)
    for sync in (1, 0):
        x = np.arange(1, 33, dtype=np.float32) + 100 * sync  # new values each launch
        want = np.concatenate([[0], x[:-1]])
        y = np.zeros(32, np.float32)
        k((1,), (32,), (x, y, i32(sync)))
        if sync or order == "ascending":
            np.testing.assert_array_equal(y, want)
        else:  # thread t ran before t - 1 stored: it read the previous launch's value
            assert np.count_nonzero(y != want) >= 30


def test_order_and_partial_launch_of_blocks(tmp_path, monkeypatch):
    rt = _runtime(tmp_path, {"lower.cu": LOWER})
    k = rt.kernel("lower.cu", "block_order", np.float32)

    def run():
        order, nxt = np.full(6, -1, np.int32), np.zeros(1, np.int32)
        k((6,), (4,), (order, nxt))
        return list(order[:nxt[0]])
    assert run() == [0, 1, 2, 3, 4, 5]
    monkeypatch.setenv("SEGNP_EMULATOR_ORDER", "descending")
    assert run() == [5, 4, 3, 2, 1, 0]
    rt.block_range = (2, 4)
    assert run() == [3, 2]
    rt.order = "ascending"  # the runtime's own setting wins over the environment
    assert run() == [2, 3]
    monkeypatch.setenv("SEGNP_EMULATOR_ORDER", "sideways")
    rt.order = None
    with pytest.raises(ValueError, match="SEGNP_EMULATOR_ORDER.*got 'sideways'"):
        run()


# An error on a known line of a file that includes another, and one inside the include.
HEADER = "// four lines\n// of a header\n#define TWICE(v) (2 * (v))\n__device__ inline int ok() { return 1; }\n"
BAD_AFTER = """// the error is on line 7
#include "four.cuh"

__global__ void k(float* y)
{
    y[0] = TWICE(ok());
    y[1] = not_declared_anywhere;
}
"""


def test_compile_errors_name_the_real_file_and_line(tmp_path):
    """load_source splices four.cuh in; #line directives keep g++ on bad.cu's own lines
    (line 7, not 7 + the header's 4 lines - 1) and on four.cuh's inside the header."""
    rt = _runtime(tmp_path, {"four.cuh": HEADER, "bad.cu": BAD_AFTER,
                             "bad_header.cu": '#include "broken.cuh"\n__global__ void k() {}\n',
                             "broken.cuh": "// one\n// two\nint broken = ;\n"})
    with pytest.raises(RuntimeError, match=r"bad\.cu:7:\d+: error: .not_declared_anywhere"):
        rt.kernel("bad.cu", "k", np.float32)
    with pytest.raises(RuntimeError, match=r"broken\.cuh:3:\d+: error"):
        rt.kernel("bad_header.cu", "k", np.float32)
    text = load_source(str(tmp_path / "bad.cu"))
    lines = text.splitlines()
    after = lines.index('#line 3 "bad.cu"')  # resumes at the line below the #include
    assert lines[after + 1] == "" and lines[after + 2] == "__global__ void k(float* y)"


# The kernel tests run under ASan: every kernel file and both masked-GEMM tiles, fibers
# (kernels with __syncthreads) included, the descending order, empty tensors.
ASAN_TESTS = ["tests/test_cuda_conv.py", "tests/test_cuda_segaware.py",
              "tests/test_cuda_pairs.py", "tests/test_cuda_limits.py"]
ASAN_SELECT = ("(im2col_matches and t32b3 and float32) or (col2im_matches and t7b2 and float64)"
               " or (masked_conv_matches and float32) or small_tile or bilateral_matches"
               " or (im2dist_matches and l2 and not l2sq) or (pair_loss_matches and l1)"
               " or empty_tensors")


def test_kernel_tests_pass_under_address_sanitizer():
    """A representative subset of the kernel parity tests, rerun in a child process
    whose emulator builds with -fsanitize=address: an out-of-bounds read or write in a
    kernel aborts it.  The builds are cached like any other (a separate key)."""
    env = asan_env()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *ASAN_TESTS, "-k", f"({ASAN_SELECT}) and not ascending"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    tail = (run.stdout[-3000:] + run.stderr[-3000:])
    assert run.returncode == 0, tail
    assert "AddressSanitizer" not in run.stderr, tail
    passed = re.search(r"(\d+) passed", run.stdout)
    assert passed and int(passed.group(1)) >= 40, tail
