"""Generate FlyingShapes data: DIR/segmentation.h5 and DIR/flow.h5.

    python -m data_tools.make_synthetic --out data/fs --count 1000 --size 128 128 --seed 0
"""
import argparse
import sys
import time

from segnp.data.flyingshapes import MIN_CLASSES, generate
from segnp.data.shapes import SHAPES
from segnp.atomic import cleanup_on_sigterm


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m data_tools.make_synthetic",
        description="Generate FlyingShapes: textured objects of several classes on textured "
                    "backgrounds, with a second frame moved by per-object affine motions. "
                    "Writes OUT/segmentation.h5 (frame 1, labels, instance maps) and "
                    "OUT/flow.h5 (both frames, exact flow, occlusion masks).")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--count", type=int, required=True, help="number of scenes")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"),
                        help="image height and width (default 128 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--classes", type=int, default=MIN_CLASSES,
                        help=f"object classes, {MIN_CLASSES}..{len(SHAPES)} (default "
                             f"{MIN_CLASSES}); label 0 is the background")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        paths = generate(args.out, args.count, args.size, args.seed, args.classes,
                         progress=True)
    except (ValueError, OSError) as e:
        print(f"make_synthetic: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("make_synthetic: interrupted; no partial file is left", file=sys.stderr)
        return 130
    print(f"wrote {paths.segmentation} and {paths.flow} ({args.count} scenes, "
          f"{args.size[0]}x{args.size[1]}) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    cleanup_on_sigterm()
    sys.exit(main())
