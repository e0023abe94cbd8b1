"""Convert FlyingChairs to a segnp HDF5 flow file.

    python -m data_tools.chairs_to_hdf5 --root FlyingChairs_release/data \\
        --split-file FlyingChairs_train_val.txt --split train --out data/chairs_train.h5

Layout: NNNNN_img1.ppm, NNNNN_img2.ppm, NNNNN_flow.flo (Middlebury .flo).  The split file
has one line per sample, in the order of the sample numbers: 1 for train, 2 for val (the
official FlyingChairs_train_val.txt).  Without --split-file, FlyingChairs_train_val.txt is
looked for in the root and its parent; ``--split all`` needs no split file.
"""
import glob
import os
import sys

import numpy as np

from segnp.data.hdf5 import FlowWriter
from segnp.atomic import check_writable, cleanup_on_sigterm
from segnp.command import Parser, check_new_output, run_command
from segnp.io.flo import read_flo
from segnp.io.png import image_size, read_image

SPLIT_CODES = {"train": "1", "val": "2"}
SPLIT_FILE = "FlyingChairs_train_val.txt"


def list_samples(root):
    """(id, img1, img2, flo) paths, sorted by id, from ``root`` or ``root/data``."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"chairs_to_hdf5: no such folder {root!r}")
    for folder in (root, os.path.join(root, "data")):
        firsts = sorted(glob.glob(os.path.join(glob.escape(folder), "*_img1.ppm")))
        if firsts:
            ids = [os.path.basename(p)[:-len("_img1.ppm")] for p in firsts]
            return [(i, os.path.join(folder, f"{i}_img1.ppm"),
                     os.path.join(folder, f"{i}_img2.ppm"),
                     os.path.join(folder, f"{i}_flow.flo")) for i in ids]
    raise FileNotFoundError(f"chairs_to_hdf5: no NNNNN_img1.ppm files in {root!r} or "
                            f"{os.path.join(root, 'data')!r}")


def read_split(path, count):
    """The split codes ('1' or '2'), one per sample; their number must be ``count``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"chairs_to_hdf5: no such split file {path!r}")
    with open(path) as f:
        codes = [line.strip() for line in f if line.strip()]
    for n, c in enumerate(codes, 1):
        if c not in ("1", "2"):
            raise ValueError(f"chairs_to_hdf5: {path!r} line {n}: each line must be 1 "
                             f"(train) or 2 (val); got {c!r}")
    if len(codes) != count:
        raise ValueError(f"chairs_to_hdf5: {path!r} has {len(codes)} lines but the root "
                         f"holds {count} samples")
    return codes


def find_split_file(root):
    for folder in (root, os.path.dirname(os.path.abspath(root))):
        path = os.path.join(folder, SPLIT_FILE)
        if os.path.isfile(path):
            return path
    return None


def select(samples, split, split_file):
    if split == "all":
        return samples
    if split not in SPLIT_CODES:
        raise ValueError(f"chairs_to_hdf5: split must be train, val or all; got {split!r}")
    if split_file is None:
        raise FileNotFoundError(f"chairs_to_hdf5: split {split!r} needs a split file: pass "
                                f"--split-file (the official {SPLIT_FILE})")
    codes = read_split(split_file, len(samples))
    return [s for s, c in zip(samples, codes) if c == SPLIT_CODES[split]]


def load_sample(img1, img2, flo):
    a, b, f = read_image(img1), read_image(img2), read_flo(flo)
    if a.shape != b.shape or a.shape[:2] != f.shape[:2]:
        raise ValueError(f"chairs_to_hdf5: sizes differ: {img1!r} {a.shape[:2]}, {img2!r} "
                         f"{b.shape[:2]}, {flo!r} {f.shape[:2]}")
    unknown = int(np.isnan(f[..., 0]).sum())
    if unknown:
        # the HDF5 flow layout has no unknown value, and training needs every target
        raise ValueError(f"chairs_to_hdf5: {flo!r} has {unknown} pixels of unknown flow "
                         f"(1e10); expected a dense flow field")
    return a, b, f


def convert(root, split, out, split_file=None, progress=False):
    """Write the samples of ``split`` to ``out`` atomically; returns the sample count."""
    check_writable("chairs_to_hdf5: --out", out)
    samples = list_samples(root)
    split_file = split_file or find_split_file(root)
    chosen = select(samples, split, split_file)
    if not chosen:
        raise ValueError(f"chairs_to_hdf5: split {split!r} selects no samples in {root!r}")
    for _, *paths in chosen:
        for path in paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"chairs_to_hdf5: no such file {path!r}")
    sizes = np.array([image_size(img1) for _, img1, _, _ in chosen])
    items = chosen
    if progress:
        from tqdm import tqdm
        items = tqdm(chosen, desc=f"FlyingChairs {split}", unit="pair")
    with FlowWriter(out, len(chosen), sizes.max(0), source=f"FlyingChairs {split}") as w:
        for i, img1, img2, flo in items:
            w.add(*load_sample(img1, img2, flo), name=i, where=f"{flo!r}")
    return len(chosen)


def _main(argv):
    parser = Parser(
        prog="python -m data_tools.chairs_to_hdf5",
        description="Convert FlyingChairs (NNNNN_img1.ppm, NNNNN_img2.ppm, "
                    "NNNNN_flow.flo) to a segnp HDF5 flow file.")
    parser.add_argument("--root", required=True,
                        help="folder with the .ppm and .flo files (or its parent)")
    parser.add_argument("--split-file", default=None,
                        help=f"one 1 (train) or 2 (val) per sample ({SPLIT_FILE}); "
                             f"looked for in ROOT and its parent by default")
    parser.add_argument("--split", required=True, choices=("train", "val", "all"))
    parser.add_argument("--out", required=True, help="output .h5 file")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the file --out if it exists")
    args = parser.parse_args(argv)
    check_new_output(args.out, "--out", args.overwrite)
    n = convert(args.root, args.split, args.out, args.split_file, progress=True)
    print(f"wrote {args.out}: {n} samples")


def main(argv=None):
    return run_command(_main, argv, prog="chairs_to_hdf5",
                       hint="; no partial file is left")


if __name__ == "__main__":
    cleanup_on_sigterm()
    sys.exit(main())
