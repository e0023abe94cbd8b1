"""Data-parallel step time and the share of it spent averaging gradients (issue 15).

A SegNet of segnp.models (the example scripts' widths) trains on a global batch of
``--batch`` random images of ``--size`` x ``--size``, split over the ranks.  Each step
is timed in four parts, after a barrier so the ranks start together: forward and
backward, the wait for the slower rank (a barrier), the gradient all-reduce
(``average_gradients``: the layout check and the bucketed sums), and the optimizer
update.  Prints the median over ``--steps`` steps
(after ``--warmup``), the parameter count and the gradient bytes.

Run:  mpiexec -n 2 python benchmarks/bench_distributed.py [--batch 8] [--size 64]
      python benchmarks/bench_distributed.py            (one process, for comparison)
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import segnp.distributed as dist  # noqa: E402
from segnp import Tensor  # noqa: E402
from segnp import functions as F  # noqa: E402
from segnp.models import SegNet  # noqa: E402
from segnp.optim import SGD  # noqa: E402
from segnp.random import manual_seed  # noqa: E402

WIDTHS = dict(widths=(8, 16, 24, 32), fc_width=64, fc6_dilation=2, dropout=0.0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8, help="global batch")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    dist.init()
    rank, size = dist.rank(), dist.size()
    manual_seed(0)
    model = SegNet(args.classes, **WIDTHS)
    dist.broadcast_parameters(model)
    # DistributedOptimizer's step is average_gradients then the update; called apart
    # here to time each
    opt = SGD(model.parameters(), lr=1e-3, momentum=0.9)
    params = list(model.parameters())
    n = args.batch // size
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((n, 3, args.size, args.size)).astype(np.float32)
    y = rng.integers(0, args.classes, (n, args.size, args.size))
    times = []
    for step in range(args.warmup + args.steps):
        dist.barrier()
        t0 = time.perf_counter()
        loss = F.softmax_cross_entropy(model(Tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        t1 = time.perf_counter()
        dist.barrier()       # the wait for the slower rank, apart from the transfer
        t2 = time.perf_counter()
        dist.average_gradients(params)
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if step >= args.warmup:
            times.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3))
    med = np.median(np.array(times), axis=0)
    total = np.median(np.array(times).sum(axis=1))
    count = sum(int(q.data.size) for q in params)
    if rank == 0:
        print(f"{size} process(es), global batch {args.batch} ({n} per rank), "
              f"{args.size}x{args.size}, SegNet {count:,} parameters = {4 * count:,} "
              f"gradient bytes")
        print(f"step {1000 * total:.1f} ms (medians of {args.steps} steps): forward+backward "
              f"{1000 * med[0]:.1f} ms, waiting for the slower rank {1000 * med[1]:.1f} ms, "
              f"all-reduce {1000 * med[2]:.2f} ms ({100 * med[2] / total:.2f} %), update "
              f"{1000 * med[3]:.2f} ms")


if __name__ == "__main__":
    main()
