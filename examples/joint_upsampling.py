"""Joint upsampling of optical flow with segmentation-aware transposed convolutions.

    python examples/joint_upsampling.py --out runs/joint_upsampling

The analogue of the flow-upsampling experiment of pixel-adaptive convolution (Su et al.,
CVPR 2019), on FlyingShapes (issue 22, part 3).  The true flow of each scene is
average-pooled by 4 and by 8 and brought back to full resolution, either by bilinear
interpolation (half-pixel centres, exact on the pooled grid) or by a learned
segmentation-aware upsampler guided by frame 1:

1. a motion embedder (``EmbeddingNet``) learns frame 1's regions from the generator's
   instance labels with the embedding loss of Eqs. 1-2 (as the reproduction's flow row
   does);
2. ``nn.SegAwareUpsample`` (bilinear weights times the mask of Eq. 3, renormalised, one
   ``segaware_conv_transpose2d``) upsamples the pooled flow, guided by the embeddings
   and frame 1's colours, and back-projection steps add the upsampled residual
   ``pooled - avgpool(y)``, so that the result pools back to its input; before each
   step, a segmentation-aware average at stride 1 (``nn.SegAwareAvgPool2d``, the
   bilateral filter with the same guide) spreads each region's flow a few pixels
   further, to the pixels whose nearest samples lie across a boundary;
3. the upsampler's lams are learned with the end-point error, for each factor, over the
   frozen embedder;
4. the embedder and both factors' lams are fine-tuned end to end with the sum of the
   two factors' end-point errors, so that the guide is learned for the task.

With ``--flow-input`` the embedder also sees the pooled flow, upsampled bilinearly, next
to frame 1 (each factor's own, or the x8 one for both), from step 1 or, with
``--flow-stage end_to_end``, from step 4 on; this did not help on validation, so the
default is frame 1 alone (docs/results/joint_upsampling/README.md).

The weight of frame 1's colours in the guide, the embedder (frozen after step 1 or
fine-tuned in step 4) and the number of back-projection steps are chosen on the
validation split (scenes of another generator seed); the test split is measured once.  Writes
``DIR/results.json`` ({"x4": {"bilinear": epe, "segaware": epe}, "x8": {...}}, test
EPE in pixels), ``DIR/details.json`` (validation figures, choices, timings) and
``DIR/joint_upsampling.png`` (test scenes: frame 1, the true flow, both upsamplings).
"""
import os
import sys
import time

try:
    import segnp  # noqa: F401
except ImportError:  # a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segnp.command import check_new_output, nonnegative_int, positive_float, positive_int
from segnp.experiments.cli import (RunError, base_parser, check_writable, run_script, setup,
                                   write_json)

RESULTS, DETAILS, FIGURE = "results.json", "details.json", "joint_upsampling.png"


def parse(argv):
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for results.json, details.json "
                   "and the figure")
    p.add_argument("--overwrite", action="store_true", help="replace the results in --out")
    p.add_argument("--size", type=positive_int, default=64, help="scene size (pixels, a "
                   "multiple of 8)")
    p.add_argument("--count", type=positive_int, default=512, help="training scenes")
    p.add_argument("--val-count", type=positive_int, default=64, help="validation scenes")
    p.add_argument("--test-count", type=positive_int, default=128, help="test scenes")
    p.add_argument("--emb-steps", type=nonnegative_int, default=1500, help="steps of "
                   "the embedder's training with the embedding loss")
    p.add_argument("--flow-input", choices=("none", "own", "x8"), default="none",
                   help="the embedder's input next to frame 1: the pooled flow upsampled "
                   "bilinearly, each factor's own, the x8 one for both, or none")
    p.add_argument("--flow-stage", choices=("pretrain", "end_to_end"), default="pretrain",
                   help="from when the embedder sees --flow-input: from the start, or only "
                   "end to end (its weights zero at first)")
    p.add_argument("--widths", type=positive_int, nargs=3, default=(8, 16, 32),
                   metavar="W", help="channels of the embedder's three blocks")
    p.add_argument("--steps", type=nonnegative_int, default=40, help="steps of the lams' "
                   "training, per factor and image weight")
    p.add_argument("--ft-steps", type=nonnegative_int, default=400, help="steps of the "
                   "end-to-end fine-tuning of the embedder and the lams")
    p.add_argument("--ft-lr", type=positive_float, default=1e-2, help="peak learning rate "
                   "of the end-to-end fine-tuning (Adam, poly schedule)")
    p.add_argument("--iterations", type=nonnegative_int, default=3, help="back-projection "
                   "steps while training (at test: 0 .. 4x this, chosen on validation)")
    p.add_argument("--no-smooth", dest="smooth", action="store_false", help="no "
                   "segmentation-aware smoothing before each back-projection step (the "
                   "upsampler of the earlier runs)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="scenes per step")
    args = p.parse_args(argv)
    if args.size < 16 or args.size % 8:
        p.error(f"--size must be a multiple of 8 and >= 16; got {args.size}")
    return args


def check_out(args):
    """Refuse, before any work, to replace results without --overwrite, or to write where
    files cannot be written."""
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise RunError(f"--out {args.out!r} is a file, not a folder")
    for name in (RESULTS, DETAILS, FIGURE):
        path = os.path.join(args.out, name)
        check_new_output(path, "--out", args.overwrite)
        check_writable(path, "--out")


def main(argv=None):
    args = parse(argv)
    check_out(args)
    setup(args)
    from segnp.experiments.joint import figure, run
    t0 = time.time()
    results, details, figure_data = run(args)
    details["seconds"] = round(time.time() - t0, 1)
    write_json(os.path.join(args.out, RESULTS), results)
    write_json(os.path.join(args.out, DETAILS), details)
    figure(os.path.join(args.out, FIGURE), *figure_data)
    for key in results:
        r = results[key]
        print(f"{key}: test EPE bilinear {r['bilinear']:.3f}, segaware {r['segaware']:.3f} "
              f"({r['segaware'] / r['bilinear']:.2f}x)")
    return results


if __name__ == "__main__":
    sys.exit(run_script(main))
