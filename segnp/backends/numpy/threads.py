"""Spread a kernel's independent pieces (images, or row blocks of them) over the CPU cores.

Why: the convolutions of a small CPU network are many mid-sized GEMMs, such as
(16, 144) x (144, 4096), and the im2col copies that feed them.  OpenBLAS splits one such
product between its threads with poor speed-up, and the copies run on one core while
the other waits.  Giving each thread whole pieces instead, with BLAS single-threaded
inside, keeps every core busy on both (measured on 2 cores: ``conv2d`` forward of N=8,
C=F=64, 128x128, 3x3, 0.093 -> 0.066 s; see ``benchmarks/bench_conv.py``).

:func:`for_runs` runs ``fn(lo, hi)`` on contiguous runs of ``range(n)``, one run per
thread, on as many threads as NumPy's BLAS is set to use (``OPENBLAS_NUM_THREADS``, or
the cores), and sets that BLAS to one thread while they run.  Small work runs on the
calling thread, also with BLAS single-threaded: after a multi-threaded call OpenBLAS's
workers spin for about 0.1 s waiting for more, and would take a core from the next
kernel's threads.  The results do not depend on the number of threads (1 included,
``OPENBLAS_NUM_THREADS=1``): a piece makes the same calls on any thread, always with BLAS
single-threaded, each piece writes its own part of the output, and a kernel that sums
over pieces adds their partial results in piece order afterwards.  Inside
:func:`serial`, or where the BLAS cannot be controlled, BLAS threads as configured, and
a multi-threaded BLAS may round some products differently (measured: float32 gW of
``conv2d_backward``, float64 ``masked_conv``, N=4, C=F=32, 48x48).

The BLAS thread count is set through OpenBLAS's ``openblas_set_num_threads``, found in the
library NumPy has loaded.  Where that is not possible (another BLAS, a platform without
``/proc/self/maps``) or one thread is configured, the runs go one after another on the
calling thread and BLAS threads as it always does.  Only one call spreads at a time (the
BLAS setting is the process's): a call from a second thread waits for the first to end,
and a kernel called inside a piece runs serially on that piece's thread.
"""
import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

__all__ = ["for_runs", "for_pieces", "sum_in_order", "serial", "blas_threads"]

# How the OpenBLAS builds name the two calls: the scipy-openblas64 wheels NumPy ships
# (prefix and 64-bit-integer suffix), other ILP64 builds, and plain builds.
_NAMES = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
          ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
          ("openblas_get_num_threads", "openblas_set_num_threads"))


def _loaded_openblas():
    """Paths of the OpenBLAS libraries in this process, NumPy's own first."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split(None, 5)[5].strip() for line in f
                     if len(line.split(None, 5)) == 6 and "openblas" in line.lower()}
    except OSError:
        return []
    # Wheels keep NumPy's copy in site-packages/numpy.libs, SciPy's in scipy.libs.
    return sorted((p for p in paths if ".so" in os.path.basename(p)),
                  key=lambda p: ("numpy" not in os.path.dirname(p), p))


def _numpy_blas_name():
    """The BLAS NumPy was built against, as its build configuration names it ('' where
    NumPy is too old to say)."""
    try:
        return str(np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"])
    except (TypeError, KeyError, ValueError, AttributeError, ImportError):
        return ""


def _find_blas_control():
    """(get, set) of NumPy's OpenBLAS thread count, or None."""
    name = _numpy_blas_name().lower()
    if name and "openblas" not in name:
        return None  # an OpenBLAS found in the process is SciPy's, not NumPy's BLAS
    # SciPy loads an OpenBLAS of its own (32-bit integers, other names); NumPy's is the one
    # under numpy's site-packages or, in a single-library install, the only one.
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _NAMES:
            get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get is not None and set_ is not None:
                get.argtypes, get.restype = (), ctypes.c_int
                set_.argtypes, set_.restype = (ctypes.c_int,), None
                return get, set_
    return None


_control = _find_blas_control()
_lock = threading.Lock()      # held by the one call that has set BLAS to one thread
_restore_to = None            # the BLAS thread count that call restores
_serial_lock = threading.Lock()
_serial = 0  # how many serial() blocks are open
_pool = None
_pool_size = 0
_local = threading.local()    # .inside: this thread is running a piece of a call


def blas_threads():
    """The number of threads NumPy's BLAS uses now (1 where it cannot be read)."""
    return max(1, int(_control[0]())) if _control is not None else 1


def _executor(workers):
    global _pool, _pool_size
    if _pool is None or _pool_size < workers:
        if _pool is not None:
            _pool.shutdown(wait=True)
        _pool = ThreadPoolExecutor(workers, thread_name_prefix="segnp")
        _pool_size = workers
    return _pool


def _forget_pool_after_fork():
    # A forked child has the pool object but none of its threads, and, if another thread
    # was spreading a call, BLAS at one thread with no one left to restore it.
    global _pool, _pool_size, _lock, _serial_lock, _restore_to
    _pool, _pool_size, _lock, _serial_lock = None, 0, threading.Lock(), threading.Lock()
    if _restore_to is not None and _control is not None:
        _control[1](_restore_to)
    _restore_to = None


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def split(n, parts):
    """``parts`` contiguous (lo, hi) runs covering range(n), sizes differing by at most 1."""
    parts = max(1, min(parts, n))
    bounds = [n * t // parts for t in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


# Below this many multiply-adds a call runs serially: handing a run to another thread
# costs tens of microseconds, the work of about this much arithmetic on one core.
MIN_PARALLEL_FLOPS = 4_000_000


def for_runs(fn, n, flops=None):
    """Call ``fn(lo, hi)`` on contiguous runs of range(n), in parallel where possible.

    Returns the runs' results in run order.  ``fn`` must only write to parts of its
    outputs that belong to its pieces.  BLAS is single-threaded while ``fn`` runs, on
    several threads or, for small work (``flops``, the work of all n pieces, below
    ``MIN_PARALLEL_FLOPS``) or a single piece, on this one.  An exception in any run is
    raised after every run has ended.
    """
    if not n:
        return []
    if _serial or _control is None or getattr(_local, "inside", False):
        # serial() and an uncontrolled BLAS leave BLAS as it is.  Inside a piece BLAS is
        # single-threaded already and the lock is held: taking it would wait for ever.
        return [fn(0, n)]
    global _restore_to
    with _lock:
        before = blas_threads()
        if before <= 1:
            return [_piece(fn, 0, n)]
        threads = min(n, before)
        if flops is not None and flops < MIN_PARALLEL_FLOPS:
            threads = 1
        _restore_to = before
        _control[1](1)
        try:
            if threads <= 1:
                # Small work, on this thread.  BLAS stays single-threaded here too: a
                # multi-threaded call would leave OpenBLAS's workers spinning for ~0.1 s
                # afterwards, taking a core from the next call's threads (measured: the
                # segmentation-aware SegNet step 82 -> 100 ms).
                return [_piece(fn, 0, n)]
            runs = split(n, threads)
            pool = _executor(threads - 1)
            futures = []
            try:
                for lo, hi in runs[1:]:
                    futures.append(pool.submit(_piece, fn, lo, hi))
                first = _piece(fn, *runs[0])
            finally:
                wait(futures)
            return [first] + [f.result() for f in futures]
        finally:
            _control[1](before)
            _restore_to = None


def for_pieces(fn, n, flops=None):
    """:func:`for_runs` for an ``fn(lo, hi)`` that returns a list with one result per
    piece: the pieces' results, in piece order."""
    return [part for run in for_runs(fn, n, flops) for part in run]


def _piece(fn, lo, hi):
    """fn(lo, hi), marked as a piece on this thread (see the nested case above)."""
    _local.inside = True
    try:
        return fn(lo, hi)
    finally:
        _local.inside = False


@contextlib.contextmanager
def serial():
    """Within this block every kernel runs its pieces one after another on the calling
    thread, and BLAS threads as configured: the way before the pieces were spread (for
    benchmarks that compare the two, or to leave the other cores to other work).  It
    holds for the kernels of every thread while any thread is inside such a block."""
    global _serial
    with _serial_lock:  # += is no atomic step: two threads could lose a count
        _serial += 1
    try:
        yield
    finally:
        with _serial_lock:
            _serial -= 1


def sum_in_order(parts, empty):
    """parts[0] + parts[1] + ... added left to right into parts[0] (the pieces' partial
    sums, in piece order, so that the total does not depend on the threads); ``empty()``
    when there are no parts."""
    if not parts:
        return empty()
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total
