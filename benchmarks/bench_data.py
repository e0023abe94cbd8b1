"""Data pipeline speed (issue 5's performance targets).

1. FlyingShapes generation: ``--count`` scenes (default 1,000) at ``--size`` (default
   128x128) written to segmentation.h5 and flow.h5, as ``make_synthetic`` does; target
   under 60 s on 2 cores.
2. DataLoader throughput over the generated files, in samples/s, for segmentation and
   flow, with training augmentation (scale jitter 1.0-1.3, random crop back to the full size,
   flip, mean subtraction) and without, loading in the foreground, with a prefetch thread,
   and with ``--workers`` processes; target at least 500 samples/s at 128x128.

Each loader figure is the best of ``--repeat`` full shuffled epochs (batch 16).

Run:  python benchmarks/bench_data.py [--count 1000] [--size 128 128] [--workers 2]
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from segnp.data import (Compose, DataLoader, HDF5FlowDataset,  # noqa: E402
                        HDF5SegmentationDataset, RandomCrop, RandomHorizontalFlip,
                        RandomScale, SubtractMean, generate)

BATCH = 16


def epoch_rate(loader, repeat):
    """Best samples/s over ``repeat`` epochs."""
    best = 0.0
    for _ in range(repeat):
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += len(batch[0])
        best = max(best, n / (time.perf_counter() - start))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where to write the files (default: a "
                                                    "temporary folder)")
    args = parser.parse_args()
    H, W = args.size
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or tmp
        start = time.perf_counter()
        paths = generate(folder, args.count, (H, W), seed=0)
        took = time.perf_counter() - start
        mib = sum(os.path.getsize(p) for p in paths) / 2 ** 20
        print(f"generate {args.count} scenes at {H}x{W}: {took:.1f} s "
              f"({args.count / took:.0f} scenes/s; files {mib:.1f} MiB; target < 60 s)")
        for cls, path in ((HDF5SegmentationDataset, paths.segmentation),
                          (HDF5FlowDataset, paths.flow)):
            ds = cls(path)
            augment = Compose([RandomScale(1.0, 1.3), RandomCrop((H, W)),
                               RandomHorizontalFlip(), SubtractMean(ds.mean)])
            for name, transform in (("no augmentation", None), ("augmented", augment)):
                for mode, kw in (("foreground", {}), ("prefetch thread", {"prefetch": 4}),
                                 (f"{args.workers} workers", {"workers": args.workers})):
                    if mode.endswith("workers") and args.workers == 0:
                        continue
                    loader = DataLoader(ds, batch_size=BATCH, shuffle=True, seed=0,
                                        drop_last=True, transform=transform, **kw)
                    rate = epoch_rate(loader, args.repeat)
                    print(f"{cls.__name__:24s} {name:16s} {mode:16s} {rate:8.0f} samples/s")
            ds.close()


if __name__ == "__main__":
    main()
