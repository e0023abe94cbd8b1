"""Time of the NumPy bilateral-filter (Eq. 4) and embedding-loss (Eqs. 1-2) kernels at
the shapes the reproduction trains with: the canvas path of the filter against the
per-tap rectangles it replaced for stride 1.

Shapes: the "+9x9 BF" rows filter the FC8 scores, N=4 (the fine-tuning batch), C=7
classes, 64x64, with a 9x9 window; the embedding loss runs on N=4, D=16, 64x64 embeddings
at dilations 1, 2 and 5 (3x3 windows).  float32, as the runs train.  Each figure is the
minimum over ``--repeat`` calls, in ms, on however many threads NumPy's kernels get
(``OMP_NUM_THREADS=1`` for one core, as each worker of a two-worker run has).

Then, for the same x, forward and gx of both paths over wider and dilated windows, next
to each canvas's area over the output's: what ``segaware._MOST_PADDING`` is set from.

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_filter_kernels.py [--repeat 30]
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from segnp.backends.numpy import pairs  # noqa: E402
from segnp.backends.numpy import segaware  # noqa: E402
from segnp.window import Window  # noqa: E402

N, C, D, H, KS = 4, 7, 16, 64, 9


def best_ms(fn, repeat):
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def filter_times(x, m, gy, win, repeat, with_gm=True):
    """(forward, gx only[, gx and gm]) in ms."""
    times = (best_ms(lambda: segaware.bilateral(x, m, win), repeat),
             best_ms(lambda: segaware.bilateral_backward(x, m, gy, win, need_m=False),
                     repeat))
    if with_gm:
        times += (best_ms(lambda: segaware.bilateral_backward(x, m, gy, win), repeat),)
    return times


def both_paths(x, m, gy, win, repeat, with_gm=True):
    """(canvas times, rectangle times) of :func:`filter_times`."""
    most = segaware._MOST_PADDING
    try:
        segaware._MOST_PADDING = float("inf")  # the canvas, whatever its size
        canvas = filter_times(x, m, gy, win, repeat, with_gm)
        segaware._MOST_PADDING = 0  # the canvas refused: the per-tap rectangles
        rects = filter_times(x, m, gy, win, repeat, with_gm)
    finally:
        segaware._MOST_PADDING = most
    return canvas, rects


def window_table(x, e, gy, repeat):
    """Canvas / rectangles for windows around the cut-off."""
    print(f"\nwindows on {H}x{H} (canvas / rectangles; the canvas serves up to area "
          f"{segaware._MOST_PADDING})")
    print(f"{'window':<14} {'area':>5} {'forward':>8} {'gx':>8}")
    for ks, dilation in ((9, 1), (7, 2), (9, 2), (5, 5), (11, 2), (9, 3), (13, 9)):
        win = Window.segaware("bench", H, H, ks, 1, None, dilation)
        m = np.exp(-0.5 * segaware.im2dist(e, win)).astype(np.float32)
        canvas, rects = both_paths(x, m, gy, win, repeat, with_gm=False)
        area = (H + 2 * win.PH) * (H + 2 * win.PW) / (win.OH * win.OW)
        name = f"{ks}x{ks} d{dilation}"
        print(f"{name:<14} {area:5.2f} {canvas[0] / rects[0]:7.2f}x "
              f"{canvas[1] / rects[1]:7.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    e = rng.standard_normal((N, D, H, H)).astype(np.float32)
    win = Window.segaware("bench", H, H, KS, 1, None, 1)
    m = np.exp(-0.5 * segaware.im2dist(e, win)).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)

    print(f"bilateral filter, N={N} C={C} {H}x{H} {KS}x{KS}, float32 (ms, min of "
          f"{args.repeat})")
    print(f"{'path':<12} {'forward':>8} {'gx':>8} {'gx+gm':>8}")
    canvas, rects = both_paths(x, m, gy, win, args.repeat)
    for name, t in (("canvas", canvas), ("rectangles", rects)):
        print(f"{name:<12} {t[0]:8.2f} {t[1]:8.2f} {t[2]:8.2f}")
    print("canvas / rectangles: " + ", ".join(f"{a / b:.2f}x" for a, b in zip(canvas, rects)))

    labels = rng.integers(0, 4, (N, H // 8, H // 8)).repeat(8, axis=1).repeat(8, axis=2)
    print(f"\nembedding loss, N={N} D={D} {H}x{H}, 3x3, float32 (ms, min of {args.repeat})")
    for dilation in (1, 2, 5):
        fwd = best_ms(lambda: pairs.embedding_pair_loss(e, labels, 3, dilation), args.repeat)
        bwd = best_ms(lambda: pairs.embedding_pair_loss_backward(e, labels, 1.0, 3, dilation),
                      args.repeat)
        print(f"dilation {dilation}: forward {fwd:.2f}, backward {bwd:.2f}")
    y = e.copy()
    out = np.empty_like(e)
    inplace = best_ms(lambda: np.sign(y, out=y), args.repeat)
    apart = best_ms(lambda: np.sign(e, out=out), args.repeat)
    print(f"np.sign of {e.shape}: in place {inplace:.2f}, into another array {apart:.2f} "
          f"(NumPy {np.__version__})")
    window_table(x, e, gy, args.repeat)


if __name__ == "__main__":
    main()
