"""Time of the NumPy kernels that dominate the segmentation-aware flow row, each against
the way it ran before: the embedding gradient of im2dist (Sec. 4.2) with NumPy's sign
written over its input or into a new array, and over all images at once or in blocks
of ``segaware._DIST_BLOCK_BYTES``; the mask gradient of the 16-pass bilateral filter
(Eq. 4) summed over whole canvas rows or in column blocks of
``segaware._GM_BLOCK_BYTES``.  Every pair of ways gives the same values bit for bit; this
checks that too.

Shapes: the flow row's filter, N=8 (the batch), D=16 embeddings, 2 flow channels, 64x64,
9x9, 16 passes, float32, as it trains.  Each figure is the minimum over ``--repeat``
calls, in ms, on however many threads NumPy's kernels get (``OMP_NUM_THREADS=1`` for
one core, as each worker of a two-worker run has).

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_flow_kernels.py [--repeat 10]
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from bench_filter_kernels import best_ms  # noqa: E402  (this folder: the script's)
from segnp.backends.numpy import segaware  # noqa: E402
from segnp.window import Window  # noqa: E402

N, C, D, H, KS, PASSES = 8, 2, 16, 64, 9, 16


def sign_times(repeat):
    """np.sign of 460k mixed-sign float32 values (one tap's differences), over its input
    and into a new array; the copy that refreshes the input is timed apart and taken off."""
    a = np.random.default_rng(0).standard_normal((N, D, H - 4, H - 4)).astype(np.float32)
    buf = np.empty_like(a)
    copy = best_ms(lambda: np.copyto(buf, a), repeat)
    inplace = best_ms(lambda: (np.copyto(buf, a), np.sign(buf, out=buf)), repeat) - copy
    new = best_ms(lambda: (np.copyto(buf, a), np.sign(buf)), repeat) - copy
    print(f"np.sign, {a.size} values: over its input {inplace:.2f} ms, "
          f"into a new array {new:.2f} ms ({inplace / new:.1f}x)")


_norm_grad = segaware._norm_grad


def in_place_sign(delta, dist, norm):
    """The l1 gradient as it was before: sign written over delta."""
    return np.sign(delta, out=delta) if norm == "l1" else _norm_grad(delta, dist, norm)


def with_settings(fn, **settings):
    """fn() with module attributes of segaware set, and restored after."""
    before = {k: getattr(segaware, k) for k in settings}
    try:
        for k, v in settings.items():
            setattr(segaware, k, v)
        return fn()
    finally:
        for k, v in before.items():
            setattr(segaware, k, v)


def im2dist_times(e, win, repeat):
    d = segaware.im2dist(e, win)
    gd = np.random.default_rng(1).standard_normal(d.shape).astype(np.float32)
    ways = {"sign over delta, one block": dict(_norm_grad=in_place_sign,
                                               _DIST_BLOCK_BYTES=1 << 40),
            "sign into a new array, one block": dict(_DIST_BLOCK_BYTES=1 << 40),
            "now (new array, blocks)": {}}
    print(f"\nim2dist, e {e.shape}, {KS}x{KS}, l1 (ms)")
    first = None
    for name, settings in ways.items():
        fwd = best_ms(lambda: with_settings(lambda: segaware.im2dist(e, win), **settings),
                      repeat)
        bwd = best_ms(lambda: with_settings(
            lambda: segaware.im2dist_backward(e, d, gd, win), **settings), repeat)
        ge = with_settings(lambda: segaware.im2dist_backward(e, d, gd, win), **settings)
        first = ge if first is None else first
        same = "same bits" if ge.tobytes() == first.tobytes() else "DIFFERENT VALUES"
        print(f"  {name:<34} forward {fwd:6.1f}  backward {bwd:6.1f}  {same}")


def gm_times(e, win, repeat):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    m = np.exp(-0.5 * segaware.im2dist(e, win)).astype(np.float32)
    ys = segaware.bilateral_repeat(x, m, win, PASSES)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    print(f"\nbilateral_repeat_backward, x {x.shape}, {PASSES} passes, gm only (ms)")
    first = None
    for name, block in (("whole rows", 1 << 40), ("now (column blocks)", None)):
        settings = {} if block is None else {"_GM_BLOCK_BYTES": block}

        def run():
            return with_settings(lambda: segaware.bilateral_repeat_backward(
                x, ys, m, gy, win, need_x=False), **settings)
        ms = best_ms(run, repeat)
        gm = run()[1]
        first = gm if first is None else first
        same = "same bits" if gm.tobytes() == first.tobytes() else "DIFFERENT VALUES"
        print(f"  {name:<20} {ms:6.1f}  {same}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    e = np.random.default_rng(3).standard_normal((N, D, H, H)).astype(np.float32)
    win = Window.segaware("bench", H, H, KS)
    sign_times(args.repeat)
    im2dist_times(e, win, args.repeat)
    gm_times(e, win, args.repeat)


if __name__ == "__main__":
    main()
