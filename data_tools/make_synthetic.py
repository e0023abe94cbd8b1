"""Generate FlyingShapes data: DIR/segmentation.h5 and DIR/flow.h5.

    python -m data_tools.make_synthetic --out data/fs --count 1000 --size 128 128 --seed 0
"""
import os
import sys
import time

from segnp.atomic import cleanup_on_sigterm
from segnp.command import (Parser, check_new_output, nonnegative_int, positive_int,
                           run_command)
from segnp.data.flyingshapes import MIN_CLASSES, generate
from segnp.data.shapes import SHAPES

OUTPUTS = ("segmentation.h5", "flow.h5")


def _main(argv):
    parser = Parser(
        prog="python -m data_tools.make_synthetic",
        description="Generate FlyingShapes: textured objects of several classes on textured "
                    "backgrounds, with a second frame moved by per-object affine motions. "
                    "Writes OUT/segmentation.h5 (frame 1, labels, instance maps) and "
                    "OUT/flow.h5 (both frames, exact flow, occlusion masks).")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--count", type=positive_int, required=True,
                        help="number of scenes")
    parser.add_argument("--size", type=positive_int, nargs=2, default=(128, 128),
                        metavar=("H", "W"), help="image height and width (default 128 128)")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="random seed (default 0)")
    parser.add_argument("--classes", type=int, default=MIN_CLASSES,
                        help=f"object classes, {MIN_CLASSES}..{len(SHAPES)} (default "
                             f"{MIN_CLASSES}); label 0 is the background")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files of a dataset already in --out")
    args = parser.parse_args(argv)
    for name in OUTPUTS:
        check_new_output(os.path.join(args.out, name), "--out", args.overwrite)
    start = time.perf_counter()
    paths = generate(args.out, args.count, args.size, args.seed, args.classes,
                     progress=True)
    print(f"wrote {paths.segmentation} and {paths.flow} ({args.count} scenes, "
          f"{args.size[0]}x{args.size[1]}) in {time.perf_counter() - start:.1f} s")


def main(argv=None):
    return run_command(_main, argv, prog="make_synthetic",
                       hint="; no partial file is left")


if __name__ == "__main__":
    cleanup_on_sigterm()
    sys.exit(main())
