"""GPU timings of the segmentation-aware CUDA kernels (issue 4).

1. The masked GEMM of Eq. 7, forward + backward (gx, gm, gW), at N=8, C=F=64,
   128x128, 3x3, float32, with a fixed mask:
   - fused: segnp/backends/cuda/masked_conv.cu (the mask applied while tiles load);
   - composed: masked columns materialised, then cuBLAS matmuls (Sec. 4.2 literally);
   - conv2d of the same shape, forward + backward through autograd (im2col + matmul).
   Target: fused faster than composed, and within 2x of conv2d.
2. The whole layer, forward + backward through autograd: ``F.segaware_conv2d`` (with
   D=16 embeddings: im2dist, mask, masked GEMM) next to ``F.conv2d``.
3. Achieved memory bandwidth of im2dist (D=16) and the bilateral filter (C=64; and
   C=21 with the CRF's 13x13 window at dilation 9): compulsory bytes (each input read
   once, each output written once) / time, next to the device's peak.

Times are medians of CUDA-event timings after warm-up.  Exits with a message, and
status 0, when CuPy or a GPU is missing.

Run:  python benchmarks/bench_gpu.py [--repeat 20]
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

N, C, FILTERS, D, H, W, KS = 8, 64, 64, 16, 128, 128, 3


def gpu_or_none():
    try:
        import cupy
        if cupy.is_available():
            return cupy
    except Exception as exc:  # no cupy, no driver, no device: all mean "no GPU here"
        print(f"bench_gpu: CuPy is not usable here ({type(exc).__name__}: {exc})")
        return None
    print("bench_gpu: no CUDA device found")
    return None


def time_ms(cupy, fn, repeat, warmup=3):
    """Median milliseconds of ``fn()`` measured with CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop))
    return float(np.median(times))


def peak_bandwidth_gbs(cupy):
    """The device's theoretical memory bandwidth, or None where the driver hides it."""
    rt, dev = cupy.cuda.runtime, cupy.cuda.Device().id
    try:
        # CUDA 13 dropped memoryClockRate from the device properties; the attribute stays.
        clock_khz = rt.deviceGetAttribute(rt.cudaDevAttrMemoryClockRate, dev)
        bus_bits = rt.deviceGetAttribute(rt.cudaDevAttrGlobalMemoryBusWidth, dev)
    except Exception:  # an attribute this driver does not report
        return None
    if not clock_khz or not bus_bits:
        return None
    # DDR moves two words per clock.
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9


def bench_masked_gemm(cupy, backend, repeat):
    from segnp import functions as F
    from segnp import Tensor
    from segnp.backends.cuda import masked_conv as mc
    from segnp.window import Window, tap_valid
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from cuda_composed import masked_conv_composed, masked_conv_composed_backward
    rt = backend.rt
    win = Window.segaware("bench_gpu", H, W, KS)
    rng = cupy.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W), dtype=cupy.float32)
    Wt = rng.standard_normal((FILTERS, C, KS, KS), dtype=cupy.float32) * 0.05
    valid = cupy.asarray(tap_valid(H, W, (KS, KS), (1, 1), (1, 1), (1, 1)))
    m = rng.uniform(0.1, 1.0, (N, KS * KS, H, W), dtype=cupy.float32) * valid
    gy = rng.standard_normal((N, FILTERS, H, W), dtype=cupy.float32)

    def fused():
        mc.masked_conv(rt, x, m, Wt, win)
        mc.masked_conv_backward(rt, x, m, Wt, gy, win)

    def composed():
        masked_conv_composed(rt, x, m, Wt, win)
        masked_conv_composed_backward(rt, x, m, Wt, gy, win)

    xt, Wtt = Tensor(x, requires_grad=True), Tensor(Wt, requires_grad=True)

    def conv():
        xt.grad = Wtt.grad = None
        (F.conv2d(xt, Wtt, None, 1, 1) * Tensor(gy)).sum().backward()

    t_fused = time_ms(cupy, fused, repeat)
    t_comp = time_ms(cupy, composed, repeat)
    t_conv = time_ms(cupy, conv, repeat)
    flops = 2 * N * FILTERS * C * KS * KS * H * W * 4  # forward + three backward GEMMs
    print(f"masked GEMM fwd+bwd, N={N} C=F={C} {H}x{W} {KS}x{KS} float32:")
    print(f"  fused    {t_fused:8.2f} ms  ({flops / t_fused / 1e9:6.1f} GFLOP/s)")
    print(f"  composed {t_comp:8.2f} ms  (fused is {t_comp / t_fused:.2f}x faster)")
    print(f"  conv2d   {t_conv:8.2f} ms  (fused / conv2d = {t_fused / t_conv:.2f}, target <= 2)")


def bench_layer(cupy, repeat):
    from segnp import functions as F
    from segnp import Tensor
    rng = cupy.random.default_rng(1)
    x = Tensor(rng.standard_normal((N, C, H, W), dtype=cupy.float32), requires_grad=True)
    e = Tensor(rng.standard_normal((N, D, H, W), dtype=cupy.float32), requires_grad=True)
    Wt = Tensor(rng.standard_normal((FILTERS, C, KS, KS), dtype=cupy.float32) * 0.05,
                requires_grad=True)
    lam = Tensor(cupy.asarray(0.5, dtype=cupy.float32), requires_grad=True)
    gy = Tensor(rng.standard_normal((N, FILTERS, H, W), dtype=cupy.float32))

    def segaware():
        for t in (x, e, Wt, lam):
            t.grad = None
        (F.segaware_conv2d(x, e, Wt, None, lam) * gy).sum().backward()

    def conv():
        x.grad = Wt.grad = None
        (F.conv2d(x, Wt, None, 1, 1) * gy).sum().backward()

    t_seg, t_conv = time_ms(cupy, segaware, repeat), time_ms(cupy, conv, repeat)
    print(f"layer fwd+bwd through autograd (D={D} embeddings):")
    print(f"  segaware_conv2d {t_seg:8.2f} ms   conv2d {t_conv:8.2f} ms   "
          f"ratio {t_seg / t_conv:.2f}")


def bench_bandwidth(cupy, backend, repeat):
    from segnp.window import Window
    rng = cupy.random.default_rng(2)
    peak = peak_bandwidth_gbs(cupy)
    known = "unknown" if peak is None else f"{peak:.0f} GB/s"
    print(f"achieved bandwidth (compulsory bytes / time; device peak {known}):")
    e = rng.standard_normal((N, D, H, W), dtype=cupy.float32)
    win = Window.segaware("bench_gpu", H, W, KS)
    d = backend.im2dist(e, win)
    gd = cupy.ones_like(d)
    rows = [("im2dist", f"D={D} {KS}x{KS}", lambda: backend.im2dist(e, win), e.nbytes + d.nbytes),
            ("im2dist_backward", f"D={D} {KS}x{KS}",
             lambda: backend.im2dist_backward(e, d, gd, win), 2 * e.nbytes + 2 * d.nbytes)]
    for chans, ks, dil in ((C, KS, 1), (21, 13, 9)):
        x = rng.standard_normal((N, chans, H, W), dtype=cupy.float32)
        m = rng.uniform(0.0, 1.0, (N, ks * ks, H, W), dtype=cupy.float32)
        rows.append(("bilateral", f"C={chans} {ks}x{ks} dil {dil}",
                     lambda x=x, m=m, w=Window.segaware("bench_gpu", H, W, ks, dilation=dil):
                     backend.bilateral(x, m, w),
                     2 * x.nbytes + m.nbytes))
    for name, shape, fn, nbytes in rows:
        t = time_ms(cupy, fn, repeat)
        gbs = nbytes / (t * 1e-3) / 1e9
        share = "" if peak is None else f"  ({gbs / peak:5.1%} of peak)"
        print(f"  {name:17s} {shape:20s} {t:8.3f} ms  {gbs:7.1f} GB/s{share}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    cupy = gpu_or_none()
    if cupy is None:
        print("bench_gpu: nothing to measure without a GPU; run it on a machine with one.")
        return 0
    import segnp
    backend = segnp.backends.set_backend("cupy")
    print(f"device: {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}")
    bench_masked_gemm(cupy, backend, args.repeat)
    bench_layer(cupy, args.repeat)
    bench_bandwidth(cupy, backend, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
