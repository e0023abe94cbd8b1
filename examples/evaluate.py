"""Evaluate a checkpoint of any of the training scripts on test data.

    python examples/evaluate.py runs/all/checkpoint.npz
    python examples/evaluate.py runs/flow/checkpoint.npz --test-data chairs_val.h5

Segmentation: mIoU, pixel accuracy, trimap mIoU at --widths and the whole trimap curve
(Fig. 7).  Flow: EPE and AAE (Table 3).  Embeddings: the embedding loss and the mask
ROC AUC of embedding vs colour distance (Fig. 3).  The test data are the run's own
(--test-data, --test-count and --size default to those in the options.json beside the
checkpoint), so that the figures are those of the training log.  Prints the metrics and
writes them as JSON to --metrics (default: metrics.json next to the checkpoint); a file
there that is not a metrics file of this script is never replaced.
"""
import json
import os
import sys

try:
    import segnp  # noqa: F401
except ImportError:  # a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segnp.command import positive_int
from segnp.experiments.cli import (RunError, base_parser, check_test_data, check_writable,
                                   run_options, run_script, setup, write_json)

# What evaluate.py writes (and alone may replace): a JSON object with these keys.
METRICS_KEYS = ("checkpoint", "task", "epoch", "samples")


def evaluate_checkpoint(path, test_data=None, count=64, size=64, cache=None, widths=(3, 10),
                        curve=tuple(range(1, 41)), progress=False):
    """The metrics dict of the checkpoint at ``path`` on ``test_data`` (an HDF5 file) or
    ``count`` generated FlyingShapes test scenes of ``size``.

    A run trained on a file of the user's (its options.json says so) must be given
    ``test_data``; the test classes must be those the model was trained on."""
    from segnp.experiments import (embed, evaluate_embedding, evaluate_flow,
                                   evaluate_segmentation, load_run, load_split,
                                   mask_quality, test_arrays)
    model, config, extra = load_run(path)
    task, inp = config["task"], config["input"]
    kind = "flow" if task == "flow" else "segmentation"
    check_test_data(path, test_data, "evaluate")
    test = load_split(kind, test_data, "test", count, size, cache, progress=progress)
    if task == "segmentation" and test.num_classes not in (None, model.num_classes):
        raise RunError(f"evaluate: the test data has {test.num_classes} classes, but "
                       f"{path!r} predicts {model.num_classes}")
    out = {"checkpoint": os.fspath(path), "task": task, "epoch": extra.get("epoch"),
           "samples": len(test)}
    if task == "segmentation":
        images, labels = test_arrays(test, ("image", "label"), inp)
        metrics, _ = evaluate_segmentation(model, images, labels, model.num_classes,
                                           widths=widths, curve=curve)
    elif task == "flow":
        metrics, _ = evaluate_flow(model, *test_arrays(test, ("image1", "image2", "flow"), inp))
    else:
        images, labels = test_arrays(test, ("image", "label"), inp)
        metrics = evaluate_embedding(model, images, labels)
        metrics.update(mask_quality(embed(model, images), images, labels))
    out.update(metrics)
    return out


def _check_metrics_path(path, checkpoint):
    """Refuse to write the metrics over a file that is not a metrics file (the
    checkpoint itself, a log, data); checks too that ``path`` can be written."""
    check_writable(path, "--metrics")
    if not os.path.exists(path):
        return
    if os.path.exists(checkpoint) and os.path.samefile(path, checkpoint):
        raise RunError(f"--metrics: {path!r} is the checkpoint being evaluated; choose "
                       f"another file for the metrics")
    try:
        with open(path) as f:
            old = json.load(f)
        ours = isinstance(old, dict) and all(k in old for k in METRICS_KEYS)
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise RunError(f"--metrics: {path!r} exists and is not a metrics file of "
                       f"evaluate.py; choose another file (it is never replaced)")


def main(argv=None):
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="checkpoint.npz of a training script")
    p.add_argument("--test-data", help="test HDF5 file (default: the run's --test-data, "
                   "else generated FlyingShapes)")
    p.add_argument("--test-count", type=positive_int, help="generated test scenes (or "
                   "the most samples read from --test-data; default: the run's, else 64)")
    p.add_argument("--size", type=positive_int, help="generated scene size in pixels "
                   "(default: the run's, else 64)")
    p.add_argument("--cache", default=None, help="cache folder for generated data "
                   "(default: $SEGNP_CACHE or ~/.cache/segnp)")
    p.add_argument("--widths", type=positive_int, nargs="+", default=[3, 10],
                   help="trimap half-widths reported in the summary")
    p.add_argument("--metrics", help="JSON file for the metrics (default: metrics.json "
                   "next to the checkpoint)")
    args = p.parse_args(argv)
    setup(args)
    path = args.metrics or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)),
                                        "metrics.json")
    _check_metrics_path(path, args.checkpoint)
    run = run_options(args.checkpoint)
    test_data = args.test_data or run.get("test_data")
    count = args.test_count or run.get("test_count") or 64
    size = args.size or run.get("size") or 64
    out = evaluate_checkpoint(args.checkpoint, test_data, count, size, args.cache,
                              tuple(args.widths), progress=not args.no_progress)
    write_json(path, out)
    for k, v in out.items():
        if not isinstance(v, list):
            print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    print(f"metrics written to {path}")
    return out


if __name__ == "__main__":
    sys.exit(run_script(main))
