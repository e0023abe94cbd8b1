"""Forward+backward time and peak memory of the segmentation-aware CRF (Sec. 3.3).

Shape (issue 3): N=1, 21 labels, 64-d embeddings, 128x128, a 13x13 bilateral window at
dilation 9, a 5x5 spatial window, 2 mean-field iterations, float32, the NumPy backend.
U, e and every CRF parameter require grad, so backward computes all of their gradients.
Prints min and median forward+backward time over ``--repeat`` runs, the forward alone,
and the peak NumPy memory of one forward+backward (``tracemalloc``, above what was
allocated before the call).

On a machine shared with other processes, multi-threaded OpenBLAS can stall for tenths
of a second on the small, long GEMM of the compat gradient ((L, N*H*W) x (N*H*W, L))
while its worker threads wait for a core; ``OPENBLAS_NUM_THREADS=1`` gives the figure
without that stall.  The header prints the setting.

Run:  python benchmarks/bench_crf.py [--repeat 5]
``run_crf_benchmark(repeat)`` returns the figures as a dict (bench_segaware.py uses it).
"""
import argparse
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import segnp  # noqa: E402
from segnp import nn  # noqa: E402

N, L, D, H, W = 1, 21, 64, 128, 128
BILATERAL_KSIZE, BILATERAL_DILATION, SPATIAL_KSIZE, ITERATIONS = 13, 9, 5, 2


def _times(fn, repeat):
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return min(out), statistics.median(out)


def run_crf_benchmark(repeat=5):
    """Time the CRF; returns a dict of seconds (fb_min, fb_median, f_min, f_median) and
    peak_mib."""
    segnp.backends.set_backend("numpy")
    rng = np.random.default_rng(0)
    U = segnp.Tensor(rng.standard_normal((N, L, H, W), dtype=np.float32), requires_grad=True)
    e = segnp.Tensor(rng.standard_normal((N, D, H, W), dtype=np.float32), requires_grad=True)
    crf = nn.SegAwareCRF(L, bilateral_ksize=BILATERAL_KSIZE,
                         bilateral_dilation=BILATERAL_DILATION, spatial_ksize=SPATIAL_KSIZE,
                         iterations=ITERATIONS, lam_init=0.1)
    gy = rng.standard_normal((N, L, H, W), dtype=np.float32)
    tensors = [U, e] + list(crf.parameters())

    def forward():
        with segnp.no_grad():
            crf(U, e)

    def forward_backward():
        for t in tensors:
            t.grad = None
        crf(U, e).backward(gy)

    forward_backward()  # warm-up: first-touch page faults, BLAS threads
    fb_min, fb_med = _times(forward_backward, repeat)
    f_min, f_med = _times(forward, repeat)
    for t in tensors:
        t.grad = None
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    forward_backward()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return dict(fb_min=fb_min, fb_median=fb_med, f_min=f_min, f_median=f_med,
                peak_mib=peak / 2 ** 20)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    r = run_crf_benchmark(args.repeat)
    mask_mib = N * BILATERAL_KSIZE ** 2 * H * W * 4 / 2 ** 20
    print(f"SegAwareCRF N={N} L={L} D={D} {H}x{W}, bilateral {BILATERAL_KSIZE}x"
          f"{BILATERAL_KSIZE} dilation {BILATERAL_DILATION}, spatial {SPATIAL_KSIZE}x"
          f"{SPATIAL_KSIZE}, {ITERATIONS} iterations, float32, numpy {np.__version__}, "
          f"{os.cpu_count()} cpus, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    print(f"forward          : min {r['f_min']:.3f} s  median {r['f_median']:.3f} s")
    print(f"forward+backward : min {r['fb_min']:.3f} s  median {r['fb_median']:.3f} s")
    print(f"peak memory (tracemalloc, one forward+backward): {r['peak_mib']:.0f} MiB "
          f"(one bilateral mask is {mask_mib:.0f} MiB)")


if __name__ == "__main__":
    main()
