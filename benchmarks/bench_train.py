"""Steps per second of one SegNet training step on the CPU, and where its time goes (issue 12).

Shape: N=8 images of 3x64x64, SegNet widths 16/32/48/64, fc 128, fc6 dilation 2,
6 classes, no dropout, softmax cross-entropy, Adam (the setup of
``segnp.experiments.runs.run_segmentation``, float32).  Two networks:

- ``plain``: every convolution is a ``Conv2d``;
- ``segaware``: every 3x3 convolution is a ``SegAwareConv2d`` (Eq. 7, ``segaware='all'``)
  fed with fixed D=16 embeddings that require grad, as when the embedder is fine-tuned.

A step is forward, backward and ``Adam.step()``.  Timings are the minimum over
``--repeat`` rounds of ``--steps`` steps (the minimum because other work on the machine
only ever adds time).  ``--parts`` adds a cProfile of 10 steps grouped by op.

Run:  python benchmarks/bench_train.py [--repeat 5] [--steps 10] [--parts]
"""
import argparse
import cProfile
import os
import pstats
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import segnp  # noqa: E402
from segnp import functions as F  # noqa: E402
from segnp.allocator import keep_freed_memory  # noqa: E402
from segnp.models import SegNet  # noqa: E402
from segnp.optim import Adam  # noqa: E402

N, H, W, CLASSES, D = 8, 64, 64, 6, 16
MODEL = {"widths": (16, 32, 48, 64), "fc_width": 128, "fc6_dilation": 2, "dropout": 0.0}


def make_step(segaware, seed=0):
    """A closure running one training step of a freshly seeded network."""
    segnp.random.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SegNet(CLASSES, segaware="all" if segaware else "none", **MODEL)
    opt = Adam(net.parameters(), lr=1e-3)
    x = rng.standard_normal((N, 3, H, W), dtype=np.float32)
    labels = rng.integers(0, CLASSES, (N, H, W))
    e = segnp.Tensor(rng.standard_normal((N, D, H, W), dtype=np.float32),
                     requires_grad=True) if segaware else None

    def step():
        opt.zero_grad()
        if e is not None:
            e.grad = None
        loss = F.softmax_cross_entropy(net(segnp.Tensor(x), e), labels)
        loss.backward()
        opt.step()
        return float(loss.item())

    return step


def steps_per_second(step, steps, repeat):
    step()  # warm-up: first-touch page faults, BLAS threads, optimizer state
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - start) / steps)
    return 1.0 / best


def parts(step, steps=10, top=14):
    """Print the functions that take the most time (cumulative), as shares of a step."""
    step()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        step()
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt
    rows = []
    for (path, _, name), (_, ncalls, tt, ct, _) in stats.stats.items():
        if "segnp" in path and ("backends" in path or "functions" in path or "optim" in path):
            rows.append((ct, tt, ncalls, f"{os.path.basename(path)}:{name}"))
    rows.sort(reverse=True)
    print(f"  cProfile, {steps} steps, {1000 * total / steps:.1f} ms per step under the "
          f"profiler; cumulative (incl. callees) and own time:")
    for ct, tt, ncalls, name in rows[:top]:
        print(f"    {name:42s} {100 * ct / total:5.1f} % cum  {100 * tt / total:5.1f} % own  "
              f"{ncalls // steps:4d} calls/step")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--parts", action="store_true", help="profile 10 steps of each")
    parser.add_argument("--malloc-default", action="store_true",
                        help="leave glibc's malloc thresholds alone (see segnp.allocator)")
    args = parser.parse_args()
    segnp.backends.set_backend("numpy")
    kept = not args.malloc_default and keep_freed_memory()
    print(f"SegNet training step, N={N} 3x{H}x{W}, widths {MODEL['widths']}, fc "
          f"{MODEL['fc_width']}, fc6 dilation {MODEL['fc6_dilation']}, Adam, float32; numpy "
          f"{np.__version__}, {os.cpu_count()} cpus; min over {args.repeat} x {args.steps} steps; "
          f"freed memory kept (segnp.allocator): {kept}")
    for name, segaware in (("plain", False), ("segaware (all 3x3)", True)):
        step = make_step(segaware)
        sps = steps_per_second(step, args.steps, args.repeat)
        print(f"{name:20s} {sps:6.1f} steps/s  ({1000 / sps:6.1f} ms per step)")
        if args.parts:
            parts(step)


if __name__ == "__main__":
    main()
