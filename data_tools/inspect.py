"""Summarise a segnp HDF5 file and render a PNG grid of samples.

    python -m data_tools.inspect data/fs/segmentation.h5 --png seg.png
    python -m data_tools.inspect data/fs/flow.h5 --png flow.png --count 6

Segmentation cells show the image and the image with its labels overlaid in the palette;
flow cells show both frames and the flow in the Middlebury colour coding (one scale for
the whole grid, printed in the summary).
"""
import sys

import h5py
import numpy as np

from segnp.atomic import check_writable
from segnp.command import Parser, check_new_output, positive_int, run_command
from segnp.data.datasets import HDF5FlowDataset, HDF5SegmentationDataset
from segnp.data.hdf5 import open_hdf5
from segnp.io.flow_color import flow_to_color
from segnp.io.png import overlay_labels, write_png

GAP = 4


def open_dataset(path):
    with open_hdf5(path, "inspect") as f:
        kind = f.attrs.get("kind", "")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if kind == "segmentation":
        return HDF5SegmentationDataset(path)
    if kind == "flow":
        return HDF5FlowDataset(path)
    raise ValueError(f"inspect: {path!r} is not a segnp dataset (attribute kind is "
                     f"{kind!r}; expected 'segmentation' or 'flow')")


def _spread(n, k, fn, name):
    """k sample indices spread evenly over n."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{fn}: {name} must be an int >= 1; got {k!r}")
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64))


def summarize(path, max_samples=200):
    """A dict of facts about the file; statistics use up to ``max_samples`` samples."""
    ds = open_dataset(path)
    sizes = ds.sizes
    info = {"path": path, "kind": ds.kind, "source": ds.source, "count": len(ds),
            "max_size": tuple(int(s) for s in ds.max_size),
            "min_size": tuple(int(s) for s in sizes.min(0)),
            "mean_rgb": [round(float(m), 2) for m in ds.mean]}
    with h5py.File(path, "r") as f:
        info["datasets"] = {k: f"{f[k].dtype} {f[k].shape}" + (
            f" chunks={f[k].chunks} {f[k].compression}" if f[k].chunks else "")
            for k in f}
    picks = _spread(len(ds), max_samples, "inspect", "--max-samples")
    if ds.kind == "segmentation":
        counts = np.zeros(256, np.int64)
        for i in picks:
            counts += np.bincount(ds[i]["label"].ravel(), minlength=256)
        total = max(counts.sum(), 1)
        info["classes"] = ds.classes
        info["class_fractions"] = {c: round(counts[k] / total, 4)
                                   for k, c in enumerate(ds.classes)}
        info["ignore_fraction"] = round(counts[255] / total, 4)
    else:
        mags = [np.hypot(*np.moveaxis(ds[i]["flow"], -1, 0)) for i in picks]
        info["flow_mean_magnitude"] = round(float(np.mean([m.mean() for m in mags])), 3)
        info["flow_max_magnitude"] = round(float(max(m.max() for m in mags)), 3)
    info["stats_from"] = len(picks)
    return info


def _tile(cells, columns, background=255):
    """Arrange equal-sized cells in a grid with gaps."""
    h, w = cells[0].shape[:2]
    rows = -(-len(cells) // columns)
    out = np.full((rows * (h + GAP) - GAP, columns * (w + GAP) - GAP, 3), background,
                  np.uint8)
    for k, cell in enumerate(cells):
        r, c = divmod(k, columns)
        out[r * (h + GAP):r * (h + GAP) + h, c * (w + GAP):c * (w + GAP) + w] = cell
    return out


def render_grid(path, count=8, columns=4):
    """uint8 (H, W, 3): ``count`` samples spread over the file; returns (grid, max_flow)."""
    ds = open_dataset(path)
    H, W = ds.max_size
    samples = [ds[i] for i in _spread(len(ds), count, "inspect", "--count")]
    max_flow = None
    if ds.kind == "flow":
        max_flow = max(float(np.hypot(*np.moveaxis(s["flow"], -1, 0)).max()) for s in samples)
    cells = []
    for s in samples:
        if ds.kind == "segmentation":
            parts = [s["image"], overlay_labels(s["image"], s["label"], ds.palette)]
        else:
            parts = [s["image1"], s["image2"], flow_to_color(s["flow"], max_flow or 1.0)]
        padded = []
        for p in parts:
            frame = np.full((H, W, 3), 255, np.uint8)
            frame[:p.shape[0], :p.shape[1]] = p
            padded.append(frame)
        cells.append(_tile(padded, len(padded)))
    return _tile(cells, max(1, min(columns, len(cells)))), max_flow


def _main(argv):
    parser = Parser(
        prog="python -m data_tools.inspect",
        description="Print a summary of a segnp HDF5 file; with --png, render a grid of "
                    "samples (labels overlaid in the palette, or flow colour-coded).")
    parser.add_argument("file", help="a segmentation or flow .h5 file")
    parser.add_argument("--png", default=None, help="write a grid of samples here")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the file --png if it exists")
    parser.add_argument("--count", type=positive_int, default=8, help="samples in the grid")
    parser.add_argument("--columns", type=positive_int, default=2, help="grid columns")
    parser.add_argument("--max-samples", type=positive_int, default=200,
                        help="samples read for the statistics")
    args = parser.parse_args(argv)
    if args.png:   # checked before the summary is printed
        check_new_output(args.png, "--png", args.overwrite)
        check_writable("inspect: --png", args.png)
    info = summarize(args.file, args.max_samples)
    for k, v in info.items():
        if isinstance(v, dict):
            print(f"{k}:")
            for kk, vv in v.items():
                print(f"  {kk}: {vv}")
        else:
            print(f"{k}: {v}")
    if args.png:
        grid, max_flow = render_grid(args.file, args.count, args.columns)
        write_png(args.png, grid)
        extra = f" (flow colour saturates at {max_flow:.2f} px)" if max_flow else ""
        print(f"wrote {args.png}{extra}")


def main(argv=None):
    return run_command(_main, argv, prog="inspect")


if __name__ == "__main__":
    sys.exit(main())
