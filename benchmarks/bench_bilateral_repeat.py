"""Time of the repeated bilateral filter (Eq. 4, ``repeat`` passes with one mask) on
NumPy: the fused kernels (``bilateral_repeat`` and its backward, which lay the mask out
on the canvas once and sum the passes' mask gradients tap by tap) against the same
passes made one by one with ``bilateral`` and ``bilateral_backward`` (what
``segaware_bilateral`` did before).

Shapes: the flow row's filter, N=8 (its batch), C=2 (u, v), 64x64, 9x9 window; and the
"+9x9 BF x4" row's, N=4, C=7 classes.  float32, as the runs train.  Each figure is the
minimum over ``--repeat`` calls of forward + backward, in ms, on however many threads
NumPy gets (``OMP_NUM_THREADS=1`` for one core, as each worker of a two-worker run has).

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_bilateral_repeat.py [--repeat 10]
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from segnp.backends.numpy import segaware  # noqa: E402
from segnp.window import Window, tap_valid  # noqa: E402
from bench_filter_kernels import best_ms  # noqa: E402  (this folder: the script's)

H, KS = 64, 9
CASES = [("flow row", 8, 2, (1, 4, 16)), ("+9x9 BF x4", 4, 7, (4,))]


def fused(x, m, gy, win, passes):
    ys = segaware.bilateral_repeat(x, m, win, passes)
    segaware.bilateral_repeat_backward(x, ys, m, gy, win)


def one_by_one(x, m, gy, win, passes):
    ys = [x]
    for _ in range(passes):
        ys.append(segaware.bilateral(ys[-1], m, win))
    g, gm = gy, 0
    for r in reversed(range(passes)):
        g, gm_r = segaware.bilateral_backward(ys[r], m, g, win)
        gm = gm + gm_r


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    win = Window.segaware("bench", H, H, KS)
    valid = tap_valid(H, H, (KS, KS), (1, 1), (KS // 2, KS // 2), (1, 1), dtype=np.float64)
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print("| filter | N x C | passes | one by one (ms) | fused (ms) | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, N, C, passes_list in CASES:
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        gy = rng.standard_normal(x.shape).astype(np.float32)
        m = (rng.random((N, win.K, H, H)) * valid).astype(np.float32)
        for passes in passes_list:
            a = best_ms(lambda: one_by_one(x, m, gy, win, passes), args.repeat)
            b = best_ms(lambda: fused(x, m, gy, win, passes), args.repeat)
            print(f"| {name} | {N} x {C} | {passes} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
