"""Figures of a trained checkpoint as PNG (NumPy + imageio only).

    python examples/visualize.py runs/embeddings/checkpoint.npz          # Fig. 3
    python examples/visualize.py runs/bf/checkpoint.npz                  # Fig. 4
    python examples/visualize.py runs/flow/checkpoint.npz runs/flow-segaware/checkpoint.npz

An embedding checkpoint gives Fig. 3 (patches, embedding PCA as RGB, embedding mask
next to the colour-distance mask); a segmentation checkpoint with a bilateral filter
gives Fig. 4 (FC8 scores before and after it), one without gives its predictions; flow
checkpoints give Fig. 8 (the flows in colour coding, side by side).
"""
import os
import sys

import numpy as np

try:
    import segnp  # noqa: F401
except ImportError:  # a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segnp.experiments import embed, load_run, load_split, predict_flow, segment, test_arrays
from segnp.experiments.cli import base_parser, setup
from segnp.experiments.figures import (figure_bilateral, figure_embeddings, figure_flow,
                                       labels_rgb, to_rgb)
from segnp.experiments.raster import grid, upscale
from segnp.io import write_png


def main(argv=None):
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoint.npz file(s) of one task")
    p.add_argument("--test-data", help="test HDF5 file (default: generated FlyingShapes)")
    p.add_argument("--count", type=int, default=4, help="images shown")
    p.add_argument("--size", type=int, default=64, help="generated scene size (pixels)")
    p.add_argument("--cache", default=None, help="cache folder for generated data "
                   "(default: $SEGNP_CACHE or ~/.cache/segnp)")
    p.add_argument("--out", default="figures", help="folder for the PNG files")
    args = p.parse_args(argv)
    if args.count < 1:
        p.error(f"--count must be >= 1; got {args.count}")
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
    written = []
    if task == "embedding":
        images, labels = test_arrays(test, ("image", "label"), inp)
        img = figure_embeddings(images, labels, embed(model, images), inp["mean"],
                                inp["scale"], count=args.count)
        written.append(("fig3_embeddings.png", img))
    elif task == "segmentation":
        images, labels = test_arrays(test, ("image", "label"), inp)
        if model.bf is not None:
            img = figure_bilateral(model, images, labels, inp["mean"], inp["scale"],
                                   count=args.count)
            written.append(("fig4_bilateral.png", img))
        rows = [[to_rgb(images[n:n + 1], inp["mean"], inp["scale"])[0], labels_rgb(labels[n])]
                + [labels_rgb(segment(m, images[n:n + 1]).argmax(1)[0]) for m, _, _ in runs]
                for n in range(min(args.count, len(images)))]
        written.append(("predictions.png", grid([[upscale(c, 3) for c in r] for r in rows],
                                                col_titles=["image", "labels"] + [
                                                    f"run {k + 1}" for k in range(len(runs))])))
    else:
        i1, i2, fl = test_arrays(test, ("image1", "image2", "flow"), inp)
        flows = {f"run {k + 1}": predict_flow(m, i1, i2) for k, (m, _, _) in enumerate(runs)}
        written.append(("fig8_flow.png", figure_flow(i1, fl, flows, inp["mean"], inp["scale"],
                                                     count=args.count)))
    for name, img in written:
        path = os.path.join(args.out, name)
        write_png(path, np.ascontiguousarray(img))
        print(f"wrote {path}")
    return [os.path.join(args.out, n) for n, _ in written]


if __name__ == "__main__":
    from segnp.experiments.cli import run_script
    sys.exit(run_script(main))
