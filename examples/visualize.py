"""Figures of a trained checkpoint as PNG (drawn with matplotlib).

    python examples/visualize.py runs/embeddings/checkpoint.npz          # Fig. 3
    python examples/visualize.py runs/bf/checkpoint.npz                  # Fig. 4
    python examples/visualize.py runs/flow/checkpoint.npz runs/flow-segaware/checkpoint.npz

An embedding checkpoint gives Fig. 3 (patches, embedding PCA as RGB, embedding mask
next to the colour-distance mask); a segmentation checkpoint with a bilateral filter
gives Fig. 4 (FC8 scores before and after it), and every segmentation checkpoint its
predictions side by side; flow checkpoints give Fig. 8 (the flows in colour coding, side
by side, with each one's EPE on the images shown).
"""
import os
import sys

try:
    import segnp  # noqa: F401
except ImportError:  # a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segnp.command import positive_int
from segnp.experiments import embed, load_run, load_split, predict_flow, segment, test_arrays
from segnp.experiments.cli import base_parser, setup
from segnp.experiments.figures import (figure_bilateral, figure_embeddings, figure_flow,
                                       figure_predictions)
from segnp.metrics import end_point_error


def main(argv=None):
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoint.npz file(s) of one task")
    p.add_argument("--test-data", help="test HDF5 file (default: generated FlyingShapes)")
    p.add_argument("--count", type=positive_int, default=4, help="images shown")
    p.add_argument("--size", type=positive_int, default=64,
                   help="generated scene size (pixels)")
    p.add_argument("--cache", default=None, help="cache folder for generated data "
                   "(default: $SEGNP_CACHE or ~/.cache/segnp)")
    p.add_argument("--out", default="figures", help="folder for the PNG files")
    args = p.parse_args(argv)
    from segnp.experiments.cli import check_test_data, check_writable
    check_writable(os.path.join(args.out, "figure.png"), "--out")
    for c in args.checkpoints:
        check_test_data(c, args.test_data, "visualize")
    setup(args)
    runs = [load_run(c) for c in args.checkpoints]
    tasks = {cfg["task"] for _, cfg, _ in runs}
    if len(tasks) != 1:
        p.error(f"the checkpoints must be of one task; got {sorted(tasks)}")
    task = tasks.pop()
    model, cfg, _ = runs[0]
    inp = cfg["input"]
    os.makedirs(args.out, exist_ok=True)
    kind = "flow" if task == "flow" else "segmentation"
    test = load_split(kind, args.test_data, "test", max(args.count, 1), args.size, args.cache)
    names = test.classes
    out = lambda name: os.path.join(args.out, name)  # noqa: E731
    written = []
    if task == "embedding":
        images, labels = test_arrays(test, ("image", "label"), inp)
        written.append(figure_embeddings(out("fig3_embeddings.png"), images, labels,
                                         embed(model, images), inp["mean"], inp["scale"],
                                         count=args.count, class_names=names))
    elif task == "segmentation":
        images, labels = test_arrays(test, ("image", "label"), inp)
        if model.bf is not None:
            written.append(figure_bilateral(out("fig4_bilateral.png"), model, images, labels,
                                            inp["mean"], inp["scale"], count=args.count,
                                            class_names=names))
        preds = {f"run {k + 1}": segment(m, images[:args.count]).argmax(1)
                 for k, (m, _, _) in enumerate(runs)}
        written.append(figure_predictions(out("predictions.png"), images[:args.count],
                                          labels[:args.count], preds, inp["mean"],
                                          inp["scale"], count=args.count, class_names=names))
    else:
        i1, i2, fl = test_arrays(test, ("image1", "image2", "flow"), inp)
        flows = {f"run {k + 1}": predict_flow(m, i1, i2) for k, (m, _, _) in enumerate(runs)}
        written.append(figure_flow(out("fig8_flow.png"), i1, fl, flows, inp["mean"],
                                   inp["scale"], count=args.count,
                                   epes={k: end_point_error(f, fl) for k, f in flows.items()}))
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    from segnp.experiments.cli import run_script
    sys.exit(run_script(main))
