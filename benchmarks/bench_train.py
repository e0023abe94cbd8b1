"""Steps per second of one SegNet training step on the CPU, and where its time goes (issue 12).

Shape: N=8 images of 3x64x64, SegNet widths 16/32/48/64, fc 128, fc6 dilation 2,
6 classes, no dropout, softmax cross-entropy, Adam (the setup of
``segnp.experiments.runs.run_segmentation``, float32).  Two networks:

- ``plain``: every convolution is a ``Conv2d``;
- ``segaware``: every 3x3 convolution is a ``SegAwareConv2d`` (Eq. 7, ``segaware='all'``)
  fed with fixed D=16 embeddings that require grad, as when the embedder is fine-tuned.

A step is forward, backward and ``Adam.step()``.  Timings are the minimum over
``--repeat`` rounds of ``--steps`` steps (the minimum because other work on the machine
only ever adds time).  ``--parts`` adds the wall time of each op's forward and backward
over 10 steps; ``--serial`` also times the steps with every kernel's pieces run one after
another on one thread (BLAS threading as configured), alternating with the default.

Run:  python benchmarks/bench_train.py [--repeat 5] [--steps 10] [--parts] [--serial]
"""
import argparse
import collections
import contextlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import segnp  # noqa: E402
from segnp import functions as F  # noqa: E402
from segnp.allocator import keep_freed_memory  # noqa: E402
from segnp.autograd import Function  # noqa: E402
from segnp.backends.numpy import threads  # noqa: E402
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


def steps_per_second(step, steps, repeat, modes=(("", contextlib.nullcontext),)):
    """{label: steps/s} for each (label, context) of ``modes``, the modes alternating
    round by round so that all see the same machine."""
    step()  # warm-up: first-touch page faults, BLAS threads, optimizer state
    best = {label: float("inf") for label, _ in modes}
    for _ in range(repeat):
        for label, context in modes:
            with context():
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                best[label] = min(best[label], (time.perf_counter() - start) / steps)
    return {label: 1.0 / t for label, t in best.items()}


def _functions(cls=Function):
    for sub in cls.__subclasses__():
        yield sub
        yield from _functions(sub)


def parts(step, steps=10, top=12):
    """Print the wall time of each Function's forward and backward, per step.  Wall time
    on the calling thread, which waits while a kernel's pieces run on the other cores
    (cProfile would see only this thread's share)."""
    step()
    spent = collections.defaultdict(float)
    depth = [0]  # a Function's forward may call its base class's (Mean's calls Sum's)
    saved = []
    for cls in set(_functions()):
        for meth in ("forward", "backward"):
            fn = cls.__dict__.get(meth)
            if fn is None:
                continue

            def timed(self, *args, _fn=fn, _key=f"{cls.__name__}.{meth}", **kwargs):
                start = time.perf_counter()
                depth[0] += 1
                try:
                    return _fn(self, *args, **kwargs)
                finally:
                    depth[0] -= 1
                    if not depth[0]:  # count the outermost call only
                        spent[_key] += time.perf_counter() - start

            saved.append((cls, meth, fn))
            setattr(cls, meth, timed)
    try:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        total = (time.perf_counter() - start) / steps
    finally:
        for cls, meth, fn in saved:
            setattr(cls, meth, fn)
    print(f"  {1000 * total:.1f} ms per step while timed; the Functions taking most:")
    for key, t in sorted(spent.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {key:34s} {1000 * t / steps:6.2f} ms  {100 * t / steps / total:5.1f} %")
    rest = total - sum(spent.values()) / steps
    print(f"    {'(optimizer, autograd, the rest)':34s} {1000 * rest:6.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--parts", action="store_true",
                        help="time each op's forward and backward over 10 steps")
    parser.add_argument("--serial", action="store_true",
                        help="also time the steps with each kernel's pieces run one after "
                             "another (threads.serial()), alternating with the default")
    parser.add_argument("--malloc-default", action="store_true",
                        help="leave glibc's malloc thresholds alone (see segnp.allocator)")
    args = parser.parse_args()
    segnp.backends.set_backend("numpy")
    kept = not args.malloc_default and keep_freed_memory()
    print(f"SegNet training step, N={N} 3x{H}x{W}, widths {MODEL['widths']}, fc "
          f"{MODEL['fc_width']}, fc6 dilation {MODEL['fc6_dilation']}, Adam, float32; numpy "
          f"{np.__version__}, {os.cpu_count()} cpus; min over {args.repeat} x {args.steps} steps; "
          f"freed memory kept (segnp.allocator): {kept}")
    print(f"kernels' pieces spread over {threads.blas_threads()} threads (NumPy's BLAS "
          f"thread count; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})")
    modes = (("", contextlib.nullcontext),)
    if args.serial:
        modes += ((" serial", threads.serial),)
    for name, segaware in (("plain", False), ("segaware (all 3x3)", True)):
        step = make_step(segaware)
        for label, sps in steps_per_second(step, args.steps, args.repeat, modes).items():
            print(f"{name + label:27s} {sps:6.1f} steps/s  ({1000 / sps:6.1f} ms per step)")
        if args.parts:
            parts(step)


if __name__ == "__main__":
    main()
