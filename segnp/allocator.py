"""Keep freed memory in the process, so that a training step reuses last step's pages.

A NumPy training step allocates and frees the same large arrays every step: on SegNet
(N=8, 64x64) the unfolded inputs of im2col are up to 19 MB each, about 100 MB in all.
glibc's malloc serves blocks above its mmap threshold (128 KiB, raised dynamically up to
32 MiB) with fresh ``mmap`` pages and gives the top of its heap back to the system once
more than the trim threshold is free.  Either way the next step's arrays land on pages the
kernel must fault in and zero again: 5,000 to 20,000 page faults per SegNet step, which
cost 15-45 % of the step on 2 cores (measured: 65 ms per step with the thresholds below,
117 ms with glibc's static defaults, one BLAS thread).

:func:`keep_freed_memory` raises both thresholds, so freed blocks stay in the heap and
are handed out again.  The price is that the process keeps its peak heap until it exits,
which a training process reaches every step anyway.  It is a process-wide setting, so
the library never calls it on import: training entry points do (the Trainer, the
benchmarks).
"""
import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

# mallopt parameters from glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_THRESHOLD = 1 << 30  # 1 GiB: above any array of the networks here


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for reuse (see the module docstring).

    Returns True when the setting was applied, False where the C library is not glibc
    (macOS, musl, Windows): those allocators need nothing, or offer no such switch.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD)) and bool(
        mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))
