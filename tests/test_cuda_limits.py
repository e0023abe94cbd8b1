"""The CUDA launchers and kernels at the edges of their index ranges, on the emulator:

- 64-bit offsets where one image passes 2^31 elements (masked_conv.cu's weight
  gradient, conv.cu's column planes), on arrays that are mostly untouched virtual
  memory, so no test needs the RAM the shapes suggest;
- the refusals, naming the limit, where a 32-bit limit remains;
- a batch larger than CUDA's 65535 blocks on gridDim.y and z;
- empty tensors (N = 0, zero channels, F = 0), which return what NumPy returns.
"""
import mmap
import os
import traceback

import numpy as np
import pytest

from segnp.backends import KERNEL_NAMES, get_backend
from segnp.backends.emulator import EmulatorRuntime
from segnp.backends.emulator import EmulatorBackend
from segnp.backends.cuda import conv as lc
from segnp.backends.cuda import masked_conv as mc
from segnp.window import Window
from windows import win

NUMPY = get_backend("numpy")
EMU = get_backend("cuda-emulator")
MAP_NORESERVE = 0x4000  # Linux; not exported by Python's mmap module


def sparse_zeros(shape, dtype=np.float32):
    """A zero array in an anonymous mapping: pages cost RAM only once written."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    try:
        mm = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE)
    except (OSError, OverflowError, ValueError) as e:
        pytest.skip(f"cannot map {nbytes / 2 ** 30:.1f} GiB of virtual memory: {e}")
    return np.frombuffer(mm, dtype=dtype).reshape(shape)


def big_empty(shape, dtype=np.float32):
    try:
        return np.empty(shape, dtype)
    except MemoryError:
        pytest.skip(f"cannot reserve {np.prod(shape) * 4 / 2 ** 30:.1f} GiB of virtual memory")


def isolated(check):
    """Run ``check`` in a forked child: a wrapped 32-bit offset usually reads outside
    the array, and the segmentation fault must fail this test, not end the run."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running pytest's teardown
        os.close(r)
        try:
            check()
            msg = b""
        except pytest.skip.Exception as e:
            msg = b"SKIP " + str(e).encode()
        except BaseException:
            msg = traceback.format_exc().encode()
        os.write(w, msg or b"OK")
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        pytest.fail(f"{check.__name__} was killed by signal {os.WTERMSIG(status)} "
                    f"(an offset wrapped and pointed outside the array)")
    if msg.startswith("SKIP "):
        pytest.skip(msg[5:])
    assert msg == "OK", msg


# ---- 64-bit offsets --------------------------------------------------------------------
def test_masked_gemm_weight_gradient_past_2_31_elements_per_image():
    isolated(masked_gemm_past_2_31)


def masked_gemm_past_2_31():
    """C*H*W = 17 * 2^28: channel 16 starts at element 2^32, which a 32-bit offset wraps
    to channel 0.  A 1x1 window with stride 16384 reads pixel (0, 0) of each channel
    only, so the kernels touch a few pages of the 18 GiB (virtual) input."""
    C, H = 17, 2 ** 14
    x = sparse_zeros((1, C, H, H))
    x[0, 0, 0, 0], x[0, 16, 0, 0], x[0, 9, 0, 0] = 2.0, 1.0, -3.0
    m = np.ones((1, 1, 1, 1), np.float32)
    W = np.ones((1, C, 1, 1), np.float32)
    gy = np.ones((1, 1, 1, 1), np.float32)
    kw = dict(win=win(x, 1, H, 0), normalize=False)
    y = EMU.masked_conv(x, m, W, **kw)
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == 0.0  # 2 + 1 - 3
    _, gm, gW = EMU.masked_conv_backward(x, m, W, gy, need_x=False, **kw)
    want = np.zeros(C, np.float32)
    want[[0, 16, 9]] = 2.0, 1.0, -3.0
    np.testing.assert_array_equal(gW[0, :, 0, 0], want)  # the bug gave gW[0, 16] = 2
    assert gm[0, 0, 0, 0] == 0.0


# One image plane of im2col: 64x64 taps of a 793x793 image, 730x730 outputs, so
# KH*KW*OH*OW = 2 182 758 400 > 2^31 - 1 (and ki = 63's taps all start past 2^31).
KS, OUT = 64, 730
SIDE = OUT + KS - 1


def _last_blocks(rt, total, count=2):
    """Run only the last ``count`` blocks of a grid-stride launch over ``total`` items
    (the grid is large enough that each block covers one run of rt.threads items);
    returns the first item they cover."""
    blocks = -(-total // rt.threads)
    rt.block_range = (blocks - count, blocks)
    return (blocks - count) * rt.threads


def _expected_cols(x, flat_index):
    """cols.ravel()[flat_index] for one (n, c) plane, from the definition."""
    r = flat_index
    ow, oh = r % OUT, r // OUT % OUT
    kj, ki = r // OUT ** 2 % KS, r // (OUT ** 2 * KS)
    return x[0, 0, oh + ki, ow + kj]


def test_im2col_plane_past_2_31_elements():
    isolated(im2col_past_2_31)


def im2col_past_2_31():
    """The launcher allocates the 8 GiB (virtual) columns with empty(); only the last
    two blocks run, writing the final entries, all past 2^31."""
    rt = EmulatorRuntime(threads=1024, max_blocks=2 ** 31 - 1)
    x = np.random.default_rng(0).standard_normal((1, 1, SIDE, SIDE)).astype(np.float32)
    total = KS * KS * OUT * OUT
    first = _last_blocks(rt, total)
    assert first > 2 ** 31
    try:
        cols = lc.im2col(rt, x, KS)
    except MemoryError:
        pytest.skip("cannot reserve 8 GiB of virtual memory")
    assert cols.shape == (1, 1, KS, KS, OUT, OUT)
    idx = np.arange(first, total)
    np.testing.assert_array_equal(cols.reshape(-1)[first:], _expected_cols(x, idx))


def test_col2im_plane_past_2_31_elements():
    isolated(col2im_past_2_31)


def col2im_past_2_31():
    """The adjoint: the last image rows gather column entries stored past 2^31 in an
    8 GiB zero mapping, of which only the rows read here are written."""
    rt = EmulatorRuntime(threads=1024, max_blocks=2 ** 31 - 1)
    cols = sparse_zeros((1, 1, KS, KS, OUT, OUT))
    patch = np.random.default_rng(1).standard_normal((KS, OUT)).astype(np.float32)
    cols[0, 0, KS - 1, :, OUT - 1, :] = patch  # tap row ki = 63, output row oh = 729
    first = _last_blocks(rt, SIDE * SIDE)
    gx = lc.col2im(rt, cols, (SIDE, SIDE))
    got = gx.reshape(-1)[first:]
    h, w = np.divmod(np.arange(first, SIDE * SIDE), SIDE)
    want = np.zeros(got.shape, np.float64)
    last = h == SIDE - 1  # only row 792 reads output row 729 through tap row 63
    for kj in range(KS):
        ow = w - kj
        ok = last & (ow >= 0) & (ow < OUT)
        want[ok] += patch[kj, ow[ok]]
    assert np.count_nonzero(want) == SIDE
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---- limits that remain: refused, named ----------------------------------------------
def _huge(shape, dtype=np.float32):
    """A read-only zero view of any shape, without memory: the checks run before a copy."""
    return np.broadcast_to(np.zeros((), dtype), shape)


def _huge_win(H, ksize):
    return win(_huge((1, 1, H, H)), ksize)


@pytest.mark.parametrize("call,message", [
    (lambda: EMU.im2dist(_huge((1, 1, 46341, 46341)), _huge_win(46341, 3)),
     r"im2dist: H\*W = 2147488281"),
    (lambda: EMU.bilateral(_huge((1, 1, 46341, 46341)), _huge((1, 9, 46341, 46341)),
                           _huge_win(46341, 3)),
     r"bilateral: H\*W = 2147488281"),
    (lambda: EMU.same_label_pairs(_huge((1, 46341, 46341), np.int32), 3),
     r"same_label_pairs: H\*W = 2147488281"),
    (lambda: EMU.masked_conv(_huge((1, 2 ** 28, 1, 1)), _huge((1, 9, 1, 1)),
                             _huge((1, 2 ** 28, 3, 3)), _huge_win(1, 3)),
     r"masked_conv: C\*K = 2415919104"),
    (lambda: EMU.masked_conv_backward(_huge((1, 1, 1, 1)), _huge((1, 9, 1, 1)),
                                      _huge((2 ** 28, 1, 3, 3)), _huge((1, 2 ** 28, 1, 1)),
                                      _huge_win(1, 3)),
     r"masked_conv_backward: F\*K = 2415919104"),
])
def test_launchers_refuse_shapes_past_32_bit_limits(call, message):
    with pytest.raises(ValueError, match=message + r" exceeds the CUDA kernels' 32-bit "
                                                  r"per-image index limit of 2147483647"):
        call()


def test_masked_gemm_grid_limits():
    assert mc.gemm_grid("f", 0, 10, 5, 64, 128, ("P", "F")) is None
    assert mc.gemm_grid("f", 3, 10, 0, 64, 128, ("P", "F")) is None
    # The batch goes on gridDim.x, whose limit is 2^31 - 1, not 65535.
    assert mc.gemm_grid("f", 10 ** 6, 300, 65, 64, 128, ("P", "F")) == (3 * 10 ** 6, 2)
    with pytest.raises(ValueError, match=r"f: N \* ceil\(P / 128\) = 2147483648 blocks "
                                         r"exceed CUDA's gridDim.x limit of 2147483647"):
        mc.gemm_grid("f", 2 ** 24, 2 ** 14, 1, 64, 128, ("P", "F"))
    with pytest.raises(ValueError, match=r"f: ceil\(F / 64\) = 65536 blocks exceed CUDA's "
                                         r"gridDim.y limit of 65535"):
        mc.gemm_grid("f", 1, 1, 64 * 65536, 64, 128, ("P", "F"))


def test_masked_conv_batch_beyond_65535_blocks():
    """N = 65537 one-pixel images, one output tile each: with N on gridDim.z this was an
    invalid launch.  Only the last two blocks of each launch run: the last two images of
    the gemms and, with one thread per block, the last two outputs of the 1-D kernels."""
    emu = EmulatorBackend(threads=1, max_blocks=2 ** 31 - 1)
    rng = np.random.default_rng(3)
    N = 65537
    x = rng.standard_normal((N, 2, 1, 1))
    m = rng.uniform(0.1, 1, (N, 1, 1, 1))
    W = rng.standard_normal((3, 2, 1, 1))
    gy = rng.standard_normal((N, 3, 1, 1))
    emu.rt.block_range = (N - 2, N)
    w = win(x, 1)
    y = emu.masked_conv(x, m, W, w)
    gx, gm, _ = emu.masked_conv_backward(x, m, W, gy, w, need_W=False)
    tail = slice(N - 2, N)
    want = NUMPY.masked_conv_backward(x[tail], m[tail], W, gy[tail], w, need_W=False)
    np.testing.assert_allclose(y[tail], NUMPY.masked_conv(x[tail], m[tail], W, w), rtol=1e-12)
    np.testing.assert_allclose(gx[tail], want[0], rtol=1e-12)
    np.testing.assert_allclose(gm[tail], want[1], rtol=1e-10, atol=1e-12)


# ---- empty tensors ---------------------------------------------------------------------
def _empty_calls(N, C, F, D):
    """One call per kernel name on x (N, C, 5, 6), W (F, C, 3, 3), e (N, D, 5, 6)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((N, C, 5, 6))
    e = rng.standard_normal((N, D, 5, 6))
    m = rng.uniform(0.1, 1.0, (N, 9, 5, 6))
    W = rng.standard_normal((F, C, 3, 3))
    w = win(x, 3)
    d = NUMPY.im2dist(e, w)
    labels = rng.integers(0, 2, (N, 5, 6))
    # the transposed product: x's 5x6 samples to a 10x12 output, W as (C, F, 3, 3)
    wt, Wt = Window.transposed("test", 5, 6, 3, 2, 1, 1, 1), W.transpose(1, 0, 2, 3).copy()
    return [
        ("im2col", (x, 3), dict(padding=1)),
        ("col2im", (NUMPY.im2col(x, 3, padding=1), (5, 6)), dict(padding=1)),
        ("conv2d", (x, W), dict(padding=1)),
        ("conv2d_backward", (x, W, rng.standard_normal((N, F, 5, 6))), dict(padding=1)),
        ("conv2d_backward", (x, W, rng.standard_normal((N, F, 5, 6))),
         dict(padding=1, stride=1, dilation=1, need_x=True, need_W=False)),
        ("im2dist", (e, w), {}),
        ("im2dist_backward", (e, d, np.ones_like(d), w), {}),
        ("masked_conv", (x, m, W, w), {}),
        ("masked_conv", (x, m, W, w), dict(normalize=False)),
        ("masked_conv_backward", (x, m, W, rng.standard_normal((N, F, 5, 6)), w), {}),
        ("bilateral", (x, m, w), {}),
        ("bilateral_backward", (x, m, np.ones_like(x), w), {}),
        ("bilateral_repeat", (x, m, w, 2), {}),
        ("bilateral_repeat_backward", (x, (x, x), m, np.ones_like(x), w), {}),
        ("same_label_pairs", (labels, 3), {}),
        ("embedding_pair_loss", (e, labels), {}),
        ("embedding_pair_loss_backward", (e, labels, 1.0), {}),
        ("masked_conv_transpose", (x, m, Wt, wt), {}),
        ("masked_conv_transpose", (x, m, Wt, wt), dict(normalize=False)),
        ("masked_conv_transpose_backward", (x, m, Wt, rng.standard_normal((N, F, 10, 12)), wt),
         {}),
    ]


@pytest.mark.parametrize("N,C,F,D", [(0, 2, 3, 2), (2, 0, 3, 0), (2, 2, 0, 2), (0, 0, 0, 0)],
                         ids=["N=0", "C=D=0", "F=0", "all=0"])
def test_empty_tensors_give_what_numpy_gives(N, C, F, D):
    calls = _empty_calls(N, C, F, D)
    assert {c[0] for c in calls} == set(KERNEL_NAMES)
    for name, args, kwargs in calls:
        want = getattr(NUMPY, name)(*args, **kwargs)
        got = getattr(EMU, name)(*args, **kwargs)
        want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
        assert len(got) == len(want), name
        for u, v in zip(got, want):
            if v is None:  # a gradient not asked for
                assert u is None, name
                continue
            u, v = np.asarray(u), np.asarray(v)
            assert u.shape == v.shape, (name, u.shape, v.shape)
            assert u.dtype.kind == v.dtype.kind, name
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12, err_msg=name)
