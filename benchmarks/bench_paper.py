"""Forward and backward of the paper's own networks at batch 1 and the paper's input
sizes, on the current backend (``SEGNP_BACKEND``, else CuPy when a GPU is usable, else
NumPy).

Networks (float32, training mode, so dropout is on):

- ``embedding``: embedding_vgg16 at 321x321 (Sec. 4.1);
- ``deeplab``: deeplab_largefov(21) at 321x321, Table 1's baseline;
- ``deeplab-segaware``: deeplab_largefov(21, segaware='all', crf=True) with its
  embedding network, Table 1's best row ("all layers and CRF SegAware");
- ``flownet``: flownet_simple() at 384x512 (FlyingChairs), Table 3's baseline;
- ``flownet-segaware``: flownet_simple(segaware=True) with its embedding network.

Each is timed as one forward (under no_grad) and one forward+backward (the loss is
the sum of the outputs times fixed random weights, so every output is
back-propagated), after one warm-up forward+backward; the minimum over ``--repeat``
runs is printed.  Peak memory is that of one forward+backward above what was held
before it: on NumPy what ``tracemalloc`` sees (NumPy reports its array buffers to
it), on CuPy the most bytes held from the memory pool at once.  The parameters are
held before, so they are not counted; their gradients (made anew by each backward)
and everything the backward pass keeps are.

Run:  python benchmarks/bench_paper.py [--repeat 1] [--nets deeplab flownet ...]
"""
import argparse
import os
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import segnp  # noqa: E402
from segnp.backends import get_backend  # noqa: E402
from segnp.models import deeplab_largefov, embedding_vgg16, flownet_simple  # noqa: E402

VOC, CHAIRS = (321, 321), (384, 512)
NETS = {
    "embedding": (lambda: embedding_vgg16(), 3, VOC),
    "deeplab": (lambda: deeplab_largefov(21), 3, VOC),
    "deeplab-segaware": (lambda: deeplab_largefov(21, segaware="all", crf=True), 3, VOC),
    "flownet": (lambda: flownet_simple(), 6, CHAIRS),
    "flownet-segaware": (lambda: flownet_simple(segaware=True), 6, CHAIRS),
}


class PeakMemory:
    """The most bytes held at once between __enter__ and __exit__ (``.peak``)."""

    def __init__(self, backend):
        self.cupy = backend.xp if backend.name == "cupy" else None

    def __enter__(self):
        if self.cupy is None:
            tracemalloc.start()
            self._base = tracemalloc.get_traced_memory()[0]
        else:
            self._hook = _pool_hook(self.cupy)
            self._hook.__enter__()
        return self

    def __exit__(self, *exc):
        if self.cupy is None:
            self.peak = tracemalloc.get_traced_memory()[1] - self._base
            tracemalloc.stop()
        else:
            self._hook.__exit__(*exc)
            self.peak = self._hook.peak


def _pool_hook(cupy):
    class PoolPeak(cupy.cuda.MemoryHook):
        name = "segnp_bench_peak"

        def __init__(self):
            self.used = self.peak = 0

        def malloc_postprocess(self, **kw):
            self.used += kw["mem_size"]
            self.peak = max(self.peak, self.used)

        def free_postprocess(self, **kw):
            self.used -= kw["mem_size"]
    return PoolPeak()


def _synchronize(backend):
    if backend.name == "cupy":
        backend.xp.cuda.Device().synchronize()


def _seconds(fn, backend, repeat):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        _synchronize(backend)
        best = min(best, time.perf_counter() - start)
    return best


def bench(name, repeat, backend):
    build, channels, (H, W) = NETS[name]
    segnp.manual_seed(0)
    net = build().train()
    n_params = sum(p.size for p in net.parameters())
    rng = np.random.default_rng(0)
    x = segnp.Tensor(backend.asarray(rng.standard_normal((1, channels, H, W),
                                                         dtype=np.float32)))
    weights = {}

    def outputs():
        out = net(x)
        if isinstance(out, segnp.Tensor):
            return [out]
        first, rest = out
        return [first] + list(rest)

    def forward():
        with segnp.no_grad():
            outputs()

    def forward_backward():
        net.zero_grad()
        loss = None
        for k, y in enumerate(outputs()):
            if k not in weights:
                weights[k] = segnp.Tensor(backend.asarray(
                    rng.standard_normal(y.shape, dtype=np.float32)))
            term = (y * weights[k]).sum()
            loss = term if loss is None else loss + term
        loss.backward()

    forward_backward()       # warm-up: kernels compiled, gradients allocated, BLAS started
    _synchronize(backend)
    with PeakMemory(backend) as mem:
        forward_backward()
        _synchronize(backend)
    t_fwd = _seconds(forward, backend, repeat)
    t_fb = _seconds(forward_backward, backend, repeat)
    print(f"{name:17s} {H}x{W}  {n_params / 1e6:5.1f} M params  forward {t_fwd:8.3f} s  "
          f"forward+backward {t_fb:8.3f} s  peak {mem.peak / 2 ** 30:6.2f} GiB", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1; got {args.repeat}")
    backend = get_backend()
    print(f"backend {backend.name}, numpy {np.__version__}, {os.cpu_count()} cpus, batch 1, "
          f"float32, min of {args.repeat} run(s) after one warm-up", flush=True)
    for name in args.nets:
        bench(name, args.repeat, backend)


if __name__ == "__main__":
    main()
