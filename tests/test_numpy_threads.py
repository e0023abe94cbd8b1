"""The NumPy kernels' pieces spread over threads (backends/numpy/threads.py).

- ``for_runs``: runs cover range(n) in order, results in run order, BLAS set to one
  thread while runs are spread and restored after, an exception raised after all runs
  end, small work and nested calls kept serial, a call from a second thread waiting its
  turn, a child forked meanwhile getting its BLAS threads back, no control of an OpenBLAS
  that is not NumPy's BLAS;
- ``conv2d`` / ``conv2d_backward`` against the naive loop and hand-written adjoint of
  ``test_fast_paths.py``, with blocks of a few rows (partial last blocks), spread over
  threads or serial: the same bits either way; with whole images in a block, the same
  bits as one im2col of the whole batch followed by one batched product (what the kernel
  replaced); non-contiguous x, W and gy give the bits of their contiguous copies;
- im2dist and its backward, images spread over threads: the same bits as serial (the
  masked convolution's chunks and max pooling's images are tested in their own files).
"""
import threading

import numpy as np
import pytest

from segnp.backends.numpy import conv as npconv
from segnp.backends.numpy import threads
from conftest import FakeBlas
from naive_ops import naive_im2col
from windows import win
from test_conv import naive_conv2d
from test_fast_paths import _naive_conv_grads


def test_split_covers_range_in_order():
    assert threads.split(7, 3) == [(0, 2), (2, 4), (4, 7)]
    assert threads.split(2, 4) == [(0, 1), (1, 2)]
    assert threads.split(5, 1) == [(0, 5)]


def test_for_runs_spreads_runs_and_restores_blas(spread):
    seen = []

    def fn(lo, hi):
        seen.append((lo, hi, threading.current_thread().name, spread.n))
        return list(range(lo, hi))

    out = threads.for_runs(fn, 9)
    assert out == [[0, 1, 2, 3], [4, 5, 6, 7, 8]]
    assert sorted(s[:2] for s in seen) == [(0, 4), (4, 9)]
    assert {s[3] for s in seen} == {1}             # BLAS single-threaded inside the runs
    assert len({s[2] for s in seen}) == 2          # on two threads
    assert spread.calls == [1, 2] and spread.n == 2  # and restored


def test_for_runs_raises_after_every_run_ended(spread):
    ended = []

    def fn(lo, hi):
        if lo == 0:
            raise ValueError("first run fails")
        threading.Event().wait(0.05)
        ended.append(lo)

    with pytest.raises(ValueError, match="first run fails"):
        threads.for_runs(fn, 4)
    assert ended == [2]
    assert spread.n == 2


def test_for_runs_serial_when_small_nested_or_single_threaded(spread, monkeypatch):
    names = []

    def fn(lo, hi):
        names.append((lo, hi, threading.current_thread().name))

    monkeypatch.setattr(threads, "MIN_PARALLEL_FLOPS", 100)
    levels = []
    threads.for_runs(lambda lo, hi: (fn(lo, hi), levels.append(spread.n)), 4, flops=99)
    assert names == [(0, 4, threading.current_thread().name)]
    # single-threaded BLAS here too (no OpenBLAS workers left spinning), then restored
    assert levels == [1] and spread.calls == [1, 2]

    names.clear()
    inner = []
    threads.for_runs(lambda lo, hi: inner.append(threads.for_runs(
        lambda a, b: (a, b), 6)), 2, flops=100)
    assert inner == [[(0, 6)], [(0, 6)]]           # nested calls do not spread again

    monkeypatch.setattr(threads, "_control", None)
    assert threads.for_runs(lambda lo, hi: (lo, hi), 5) == [(0, 5)]
    assert threads.blas_threads() == 1


def test_serial_block_runs_everything_on_the_caller_and_leaves_blas_alone(spread):
    names = []
    with threads.serial():
        with threads.serial():   # nests
            threads.for_runs(lambda lo, hi: names.append((lo, hi)), 6)
        threads.for_runs(lambda lo, hi: names.append((lo, hi)), 6)
    assert names == [(0, 6), (0, 6)] and spread.calls == []
    threads.for_runs(lambda lo, hi: names.append((lo, hi)), 6)
    assert sorted(names[2:]) == [(0, 3), (3, 6)]   # spread again after the block
    assert spread.calls == [1, 2]


def test_the_blas_control_found_here_reads_a_thread_count():
    if threads._control is None:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS found in /proc/self/maps")
    before = threads.blas_threads()
    threads._control[1](1)
    try:
        assert threads.blas_threads() == 1
    finally:
        threads._control[1](before)
    assert threads.blas_threads() == before >= 1


# (N, C, H, W), F, k, stride, padding, dilation
CASES = [
    ((3, 4, 9, 7), 5, 3, 1, 1, 1),          # gx as a transposed convolution
    ((2, 3, 8, 9), 8, 3, 1, 2, 2),          # F > 1.5 C: gx by col2im
    ((3, 2, 11, 6), 3, 3, 2, 1, 1),         # stride 2: gx by col2im
    ((2, 3, 7, 7), 2, 1, 1, 0, 1),          # 1x1
    ((2, 2, 9, 8), 3, (2, 3), (1, 2), (1, 0), (2, 1)),
]


def _inputs(shape, Fn, k, dtype=np.float64):
    rng = np.random.default_rng(1)
    KH, KW = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal(shape).astype(dtype)
    W = rng.standard_normal((Fn, shape[1], KH, KW)).astype(dtype)
    return x, W, rng


@pytest.mark.parametrize("mode", ["serial", "spread"])
@pytest.mark.parametrize("shape,Fn,k,s,p,d", CASES)
def test_kernels_in_row_blocks_match_the_loops(monkeypatch, request, mode, shape, Fn, k, s,
                                               p, d):
    if mode == "spread":
        request.getfixturevalue("spread")
    monkeypatch.setattr(npconv, "BLOCK_BYTES", 1)   # one output row per block
    x, W, rng = _inputs(shape, Fn, k)
    y = npconv.conv2d(x, W, s, p, d)
    np.testing.assert_allclose(y, naive_conv2d(x, W, None, s, p, d), rtol=1e-10, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    gx, gW = npconv.conv2d_backward(x, W, gy, s, p, d)
    if all(isinstance(v, int) for v in (k, s, p, d)):  # the adjoint loop takes ints
        rgx, rgW = _naive_conv_grads(x, W, gy, s, p, d)
        np.testing.assert_allclose(gx, rgx, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gW, rgW, rtol=1e-10, atol=1e-12)
    only_x = npconv.conv2d_backward(x, W, gy, s, p, d, need_W=False)
    only_W = npconv.conv2d_backward(x, W, gy, s, p, d, need_x=False)
    assert only_x[1] is None and only_W[0] is None
    assert np.array_equal(only_x[0], gx)
    # without gx, gW is one product per image instead of one per block of gx's columns
    np.testing.assert_allclose(only_W[1], gW, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,Fn,k,s,p,d", CASES)
def test_same_bits_spread_or_serial_and_as_one_batched_product(monkeypatch, shape, Fn, k, s,
                                                               p, d):
    x, W, rng = _inputs(shape, Fn, k, dtype=np.float32)
    gy = None
    results = {}
    for block_bytes in (npconv.BLOCK_BYTES, 1, 200):
        for spread in (False, True):
            monkeypatch.setattr(npconv, "BLOCK_BYTES", block_bytes)
            if spread:
                fake = FakeBlas(2)
                monkeypatch.setattr(threads, "_control", (fake.get, fake.set))
                monkeypatch.setattr(threads, "MIN_PARALLEL_FLOPS", 0)
            y = npconv.conv2d(x, W, s, p, d)
            if gy is None:
                gy = rng.standard_normal(y.shape).astype(np.float32)
            results[block_bytes, spread] = (y,) + npconv.conv2d_backward(x, W, gy, s, p, d)
            monkeypatch.undo()
    # Threads never change a bit; blocks of other sizes change only BLAS's rounding.
    for (block_bytes, spread), got in results.items():
        ref = results[block_bytes, False]
        close = results[npconv.BLOCK_BYTES, False]
        for a, b, c in zip(got, ref, close):
            assert np.array_equal(a, b)
            np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)
    # What the kernels replaced: one im2col of the batch, one batched product each way.
    # With whole images in one block (the default size here) BLAS runs the same products.
    N, C = x.shape[:2]
    F_, _, KH, KW = W.shape
    cols = naive_im2col(x, (KH, KW), s, p, d)
    OH, OW = cols.shape[4:]
    cols = cols.reshape(N, C * KH * KW, OH * OW)
    g = gy.reshape(N, F_, OH * OW)
    y = results[npconv.BLOCK_BYTES, False][0]
    assert np.array_equal(y, np.matmul(W.reshape(F_, -1), cols).reshape(y.shape))
    gW = npconv.conv2d_backward(x, W, gy, s, p, d, need_x=False)[1]   # one product per image
    assert np.array_equal(gW, np.matmul(cols, g.transpose(0, 2, 1)).sum(axis=0).T
                          .reshape(W.shape))


@pytest.mark.parametrize("p", [0, (1, 2)])
def test_kernels_read_non_contiguous_views_as_their_copies(spread, monkeypatch, p):
    # With no padding the windows are a strided view of x itself, so x's own strides
    # (every other column, rows reversed) must carry through; W and gy are transposes.
    monkeypatch.setattr(npconv, "BLOCK_BYTES", 1)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 7, 12))[:, :, ::-1, ::2]
    W = rng.standard_normal((2, 4, 3, 3)).transpose(1, 0, 3, 2)
    y = npconv.conv2d(x, W, 1, p)
    gy = rng.standard_normal(y.shape[:2] + y.shape[:1:-1]).transpose(0, 1, 3, 2)
    xc, Wc, gyc = (np.ascontiguousarray(a) for a in (x, W, gy))
    assert np.array_equal(y, npconv.conv2d(xc, Wc, 1, p))
    for got, want in zip(npconv.conv2d_backward(x, W, gy, 1, p),
                         npconv.conv2d_backward(xc, Wc, gyc, 1, p)):
        assert np.array_equal(got, want)
    np.testing.assert_allclose(y, naive_conv2d(xc, Wc, None, 1, p, 1), rtol=1e-10,
                               atol=1e-12)


def test_kernel_rejects_integer_arrays():
    x, W, _ = _inputs((2, 3, 6, 6), 4, 3)
    with pytest.raises(TypeError, match=r"conv2d: x must be a floating-point array"):
        npconv.conv2d(x.astype(np.int64), W)
    with pytest.raises(TypeError, match=r"conv2d_backward: gy must be a floating-point array"):
        npconv.conv2d_backward(x, W, np.zeros((2, 4, 4, 4), dtype=np.int32))


def test_kernel_rejects_bad_shapes():
    x, W, _ = _inputs((2, 3, 6, 6), 4, 3)
    with pytest.raises(ValueError, match=r"conv2d: x has 2 channels but W expects 3"):
        npconv.conv2d(x[:, :2], W)
    with pytest.raises(ValueError, match=r"conv2d_backward: gy must have shape "
                                         r"\(N, F, OH, OW\) = \(2, 4, 6, 6\); got \(2, 4, 5, 6\)"):
        npconv.conv2d_backward(x, W, np.zeros((2, 4, 5, 6)), padding=1)


@pytest.mark.parametrize("norm", ["l1", "l2", "l2sq"])
@pytest.mark.parametrize("ks,s,p,d", [(3, 1, None, 1), (5, 2, None, 2), (3, 1, 0, 1)])
def test_im2dist_spread_over_images_gives_the_same_bits(monkeypatch, norm, ks, s, p, d):
    from segnp.backends.numpy import segaware as ns
    rng = np.random.default_rng(3)
    e = rng.standard_normal((3, 4, 9, 8))
    w = win(e, ks, s, p, d)
    serial = ns.im2dist(e, w, norm)
    gd = rng.standard_normal(serial.shape)
    serial_ge = ns.im2dist_backward(e, serial, gd, w, norm)
    fake = FakeBlas(2)
    monkeypatch.setattr(threads, "_control", (fake.get, fake.set))
    monkeypatch.setattr(threads, "MIN_PARALLEL_FLOPS", 0)
    spread = ns.im2dist(e, w, norm)
    assert np.array_equal(spread, serial)
    assert np.array_equal(ns.im2dist_backward(e, spread, gd, w, norm), serial_ge)
    assert fake.calls == [1, 2, 1, 2]


def test_a_call_from_another_thread_waits_and_runs_blas_single_threaded(spread):
    # Thread B calls while thread A's call is spreading.  B's pieces must not see BLAS
    # go back to several threads halfway (A restoring it), or B's products would round
    # as a multi-threaded BLAS does: B waits its turn and spreads in its own.
    b_started, a_done = threading.Event(), threading.Event()
    seen = []

    def a_piece(lo, hi):
        if lo == 0:
            b_started.wait(0.2)

    def b_piece(lo, hi):
        b_started.set()
        seen.append(spread.n)
        a_done.wait(5)
        seen.append(spread.n)

    b = threading.Thread(target=lambda: threads.for_runs(b_piece, 2))
    a_entered = threading.Event()
    a = threading.Thread(target=lambda: (threads.for_runs(
        lambda lo, hi: (a_entered.set(), a_piece(lo, hi)), 2), a_done.set()))
    a.start()
    a_entered.wait(5)
    b.start()
    a.join(5)
    b.join(5)
    assert not a.is_alive() and not b.is_alive()
    assert seen and set(seen) == {1}       # B's pieces ran with BLAS single-threaded
    assert spread.n == 2                   # and it was restored after both calls


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # fork with threads (3.12+)
def test_a_child_forked_while_a_call_spreads_gets_its_blas_threads_back(spread):
    # Another thread forks while this one's pieces run with BLAS set to one thread: the
    # child has no one to restore it, and would run every later kernel serially.
    import os
    inside, forked = threading.Event(), threading.Event()
    status = []

    def fork():
        inside.wait(5)
        pid = os.fork()
        if pid == 0:
            names = set()
            threads.for_runs(lambda lo, hi: names.add(threading.current_thread().name), 2)
            os._exit(0 if spread.n == 2 and len(names) == 2 else 1)
        for _ in range(1000):   # at most 10 s: a hung child fails the test, not the run
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status.append(code)
                break
            threading.Event().wait(0.01)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        forked.set()

    forker = threading.Thread(target=fork)
    forker.start()
    threads.for_runs(lambda lo, hi: (inside.set(), forked.wait(10)), 2)
    forker.join(10)
    assert status == [0]
    assert spread.n == 2


def test_no_blas_control_when_numpy_is_built_on_another_blas(monkeypatch):
    # NumPy on MKL (say) with SciPy's OpenBLAS loaded: setting SciPy's threads would
    # leave NumPy's products multi-threaded inside every piece.
    if not threads._loaded_openblas():
        pytest.skip("no OpenBLAS found in /proc/self/maps here")
    monkeypatch.setattr(np, "show_config", lambda mode=None: {
        "Build Dependencies": {"blas": {"name": "mkl-sdl"}}})
    assert threads._find_blas_control() is None


@pytest.mark.parametrize("blas", [1, 2])
def test_nested_calls_never_wait_for_the_lock_their_caller_holds(monkeypatch, blas):
    # one BLAS thread configured (the runs stay on the caller) or two (spread)
    fake = FakeBlas(blas)
    monkeypatch.setattr(threads, "_control", (fake.get, fake.set))
    monkeypatch.setattr(threads, "MIN_PARALLEL_FLOPS", 0)
    out = []
    caller = threading.Thread(target=lambda: out.append(threads.for_runs(
        lambda lo, hi: threads.for_runs(lambda a, b: (a, b), 3), 2)), daemon=True)
    caller.start()
    caller.join(5)
    assert not caller.is_alive(), "a nested for_runs waited for ever"
    assert out == [[[(0, 3)]] if blas == 1 else [[(0, 3)], [(0, 3)]]]
