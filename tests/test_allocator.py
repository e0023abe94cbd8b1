"""segnp.allocator: glibc keeps freed memory, so a repeated large allocation stops
faulting in fresh pages."""
import platform
import resource

import numpy as np
import pytest

from segnp.allocator import keep_freed_memory

glibc = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not glibc, reason="the thresholds are glibc's")
def test_keep_freed_memory_reuses_pages_of_freed_arrays():
    assert keep_freed_memory() is True
    def faults_of_one_round():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            a = np.ones(16 << 20, dtype=np.float32)  # 64 MiB: glibc maps it by default
            del a
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    faults_of_one_round()  # the heap grows once
    # without the setting each array is mapped afresh and faulted in again: about
    # 2,700 faults per round here (huge pages make it fewer than 5 x 16384); kept, 0
    assert faults_of_one_round() < 256


@pytest.mark.skipif(glibc, reason="only allocators other than glibc's")
def test_keep_freed_memory_is_a_no_op_elsewhere():
    assert keep_freed_memory() is False
