"""Forward+backward time and peak memory of SegAwareConv2d next to conv2d (issue 3).

Shape: N=8, C=F=64, D=16 embedding channels, 128x128, 3x3, float32.  The
segmentation-aware layer computes its mask from the embeddings (im2dist, exp) and the
masked, normalised convolution of Eq. 7; x and e require grad, so backward computes gx,
ge, gW, gb and glam.  conv2d of the same shape (padding 1, x, W, b requiring grad) is
timed in the same run.  Targets: at most 3x conv2d's time and a peak below 1 GB.

Peak memory is measured with ``tracemalloc`` (NumPy reports its array buffers to it)
during one forward+backward, above what was allocated before the call.

At the end, if ``benchmarks/bench_crf.py`` exists, its ``main()`` runs too.

Run:  python benchmarks/bench_segaware.py [--repeat 5]
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import segnp  # noqa: E402
from segnp import functions as F  # noqa: E402
from segnp import nn  # noqa: E402

N, C, FILTERS, D, H, W, K = 8, 64, 64, 16, 128, 128, 3


def timings(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def peak_mib(fn):
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak / 2 ** 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-crf", action="store_true", help="skip bench_crf.py")
    args = parser.parse_args()
    segnp.backends.set_backend("numpy")
    rng = np.random.default_rng(0)
    x = segnp.Tensor(rng.standard_normal((N, C, H, W), dtype=np.float32), requires_grad=True)
    e = segnp.Tensor(rng.standard_normal((N, D, H, W), dtype=np.float32), requires_grad=True)
    gy = rng.standard_normal((N, FILTERS, H, W), dtype=np.float32)
    layer = nn.SegAwareConv2d(C, FILTERS, K, lam_init=0.5, rng=np.random.default_rng(1))
    Wc = segnp.Tensor(layer.weight.data.copy(), requires_grad=True)
    bc = segnp.Tensor(layer.bias.data.copy(), requires_grad=True)

    def segaware():
        x.grad = e.grad = None
        layer.zero_grad()
        layer(x, e).backward(gy)

    def conv():
        x.grad = Wc.grad = bc.grad = None
        F.conv2d(x, Wc, bc, padding=1).backward(gy)

    def mask_only():
        e.grad = None
        m = F.segaware_mask(e, layer.lam, K)
        m.backward(np.ones(m.shape, np.float32))

    results = {}
    for name, fn in (("conv2d", conv), ("SegAwareConv2d", segaware),
                     ("  of which the mask", mask_only)):
        fn()  # warm-up: first-touch page faults, BLAS threads
        results[name] = timings(fn, args.repeat) + (peak_mib(fn),)

    print(f"N={N} C={C} F={FILTERS} D={D} {H}x{W} {K}x{K} float32, norm 'l1', normalize, "
          f"numpy {np.__version__}, {os.cpu_count()} cpus, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, {args.repeat} runs")
    print(f"{'forward+backward':22s} {'min s':>8s} {'median s':>9s} {'peak MiB':>9s}")
    for name, (t_min, t_med, peak) in results.items():
        print(f"{name:22s} {t_min:8.3f} {t_med:9.3f} {peak:9.0f}")
    ratio = results["SegAwareConv2d"][0] / results["conv2d"][0]
    print(f"SegAwareConv2d / conv2d time (min): {ratio:.2f}x (target <= 3x); "
          f"peak {results['SegAwareConv2d'][2]:.0f} MiB (target < 1000 MB)")

    crf = os.path.join(HERE, "bench_crf.py")
    if not args.no_crf and os.path.exists(crf):
        print("\n--- benchmarks/bench_crf.py ---")
        spec = importlib.util.spec_from_file_location("bench_crf", crf)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.argv = [crf]
        module.main()


if __name__ == "__main__":
    main()
