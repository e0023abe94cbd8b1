"""Forward+backward time and peak memory of conv2d (issue 2's performance target).

Shape: N=8, C=F=64, 128x128, 3x3, padding 1, float32; x, W and b all require grad, so
backward computes gx, gW and gb.  Prints, in the same run:

- the raw float32 matmul speed of this machine's BLAS (a 2048^3 product, and the
  forward product of this convolution alone), for context;
- min and median forward+backward time over ``--repeat`` runs, and the forward alone;
- peak NumPy memory of one forward+backward, measured with ``tracemalloc`` (NumPy
  reports its array buffers to it), above what was allocated before the call.

Run:  python benchmarks/bench_conv.py [--repeat 7]
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
from segnp import functions as F  # noqa: E402

N, C, FILTERS, H, W, K = 8, 64, 64, 128, 128, 3


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def matmul_gflops(repeat):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, 2048), dtype=np.float32)
    b = rng.standard_normal((2048, 2048), dtype=np.float32)
    square = 2 * 2048 ** 3 / best_of(lambda: a @ b, repeat)[0] / 1e9
    w = rng.standard_normal((FILTERS, C * K * K), dtype=np.float32)
    cols = rng.standard_normal((N, C * K * K, H * W), dtype=np.float32)
    conv = 2 * N * FILTERS * C * K * K * H * W / best_of(lambda: np.matmul(w, cols), repeat)[0]
    return square, conv / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    segnp.backends.set_backend("numpy")
    rng = np.random.default_rng(0)
    x = segnp.Tensor(rng.standard_normal((N, C, H, W), dtype=np.float32), requires_grad=True)
    Wt = segnp.Tensor(rng.standard_normal((FILTERS, C, K, K), dtype=np.float32) * 0.05,
                      requires_grad=True)
    b = segnp.Tensor(rng.standard_normal(FILTERS, dtype=np.float32), requires_grad=True)
    gy = rng.standard_normal((N, FILTERS, H, W), dtype=np.float32)

    def forward():
        with segnp.no_grad():
            F.conv2d(x, Wt, b, padding=1)

    def forward_backward():
        x.grad = Wt.grad = b.grad = None
        F.conv2d(x, Wt, b, padding=1).backward(gy)

    square, conv_mm = matmul_gflops(args.repeat)
    forward_backward()  # warm-up: first-touch page faults, BLAS thread start
    fb_min, fb_med = best_of(forward_backward, args.repeat)
    f_min, f_med = best_of(forward, args.repeat)

    x.grad = Wt.grad = b.grad = None
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    forward_backward()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()

    flops = 3 * 2 * N * FILTERS * C * K * K * H * W  # forward, gW and gx products
    cols_mb = N * C * K * K * H * W * 4 / 2 ** 20
    print(f"conv2d N={N} C={C} F={FILTERS} {H}x{W} {K}x{K} padding 1 float32, "
          f"numpy {np.__version__}, {os.cpu_count()} cpus")
    print(f"matmul float32: {square:.0f} GFLOP/s (2048^3), {conv_mm:.0f} GFLOP/s "
          f"(forward product (64x576)@(576x16384) x 8)")
    print(f"forward          : min {f_min:.3f} s  median {f_med:.3f} s")
    print(f"forward+backward : min {fb_min:.3f} s  median {fb_med:.3f} s  "
          f"({flops / fb_min / 1e9:.0f} GFLOP/s over the three products)")
    print(f"peak memory (tracemalloc, one forward+backward): {peak / 2 ** 20:.0f} MiB "
          f"(one im2col buffer is {cols_mb:.0f} MiB)")


if __name__ == "__main__":
    main()
