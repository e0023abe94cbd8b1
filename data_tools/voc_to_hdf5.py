"""Convert PASCAL VOC 2012 segmentation data (optionally with SBD) to a segnp HDF5 file.

    python -m data_tools.voc_to_hdf5 --voc-root VOCdevkit/VOC2012 --split train \\
        --out data/voc_train.h5 [--sbd-root benchmark_RELEASE/dataset --sbd-split train]

VOC layout: JPEGImages/ID.jpg, SegmentationClass/ID.png (palette PNGs: the palette index
is the class, 255 the boundary / ignore), ImageSets/Segmentation/SPLIT.txt (one ID a line).
SBD layout: img/ID.jpg, cls/ID.mat (a GTcls struct whose Segmentation field holds the
class indices), SPLIT.txt.  With SBD, its IDs are added to the VOC split's, except IDs in
the VOC splits named by --exclude (by default val, so that val stays unseen); a VOC PNG is
preferred over the SBD label where both exist.
"""
import os
import sys

import numpy as np
import scipy.io

from segnp.data.hdf5 import SegmentationWriter
from segnp.atomic import check_writable, cleanup_on_sigterm
from segnp.command import Parser, check_new_output, run_command
from segnp.io.png import image_size, label_palette, read_image, read_label

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def find_voc_root(root):
    """The folder holding JPEGImages: ``root`` itself, root/VOC2012 or
    root/VOCdevkit/VOC2012."""
    for cand in (root, os.path.join(root, "VOC2012"),
                 os.path.join(root, "VOCdevkit", "VOC2012")):
        if os.path.isdir(os.path.join(cand, "JPEGImages")):
            return cand
    raise FileNotFoundError(f"voc_to_hdf5: no VOC layout under {root!r}: expected "
                            f"{os.path.join(root, 'JPEGImages')} (or VOC2012/JPEGImages)")


def read_ids(path):
    """The IDs listed in a split file, one a line (blank lines skipped)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"voc_to_hdf5: no such split file {path!r}")
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def read_sbd_label(path):
    """Class indices uint8 (H, W) from an SBD ``cls/ID.mat`` file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"voc_to_hdf5: no such file {path!r}")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
        seg = np.asarray(mat["GTcls"].Segmentation)
    except Exception as e:  # loadmat raises several types for bad files
        raise ValueError(f"voc_to_hdf5: cannot read the GTcls.Segmentation of {path!r}: "
                         f"{e}") from e
    if seg.ndim != 2 or seg.dtype.kind not in "iu" or seg.min() < 0 or seg.max() > 255:
        raise ValueError(f"voc_to_hdf5: {path!r}: GTcls.Segmentation must be a 2-D array of "
                         f"integers in [0, 255]; got {seg.dtype} {seg.shape}")
    return seg.astype(np.uint8)


def list_samples(voc_root, split, sbd_root=None, sbd_split="train", exclude=("val",)):
    """(id, image path, label path) for each sample, VOC's split first."""
    voc = find_voc_root(voc_root)
    sets = os.path.join(voc, "ImageSets", "Segmentation")
    ids = read_ids(os.path.join(sets, f"{split}.txt"))

    def locate(i, with_sbd):
        image = os.path.join(voc, "JPEGImages", f"{i}.jpg")
        label = os.path.join(voc, "SegmentationClass", f"{i}.png")
        if with_sbd:
            if not os.path.isfile(image):
                image = os.path.join(sbd_root, "img", f"{i}.jpg")
            if not os.path.isfile(label):
                label = os.path.join(sbd_root, "cls", f"{i}.mat")
        return i, image, label

    samples = [locate(i, False) for i in ids]
    if sbd_root is not None:
        seen = set(ids)
        for name in exclude:
            if name != split:
                seen.update(read_ids(os.path.join(sets, f"{name}.txt")))
        for i in read_ids(os.path.join(sbd_root, f"{sbd_split}.txt")):
            if i not in seen:
                seen.add(i)
                samples.append(locate(i, True))
    return samples


def load_sample(image_path, label_path):
    image = read_image(image_path)
    label = read_sbd_label(label_path) if label_path.endswith(".mat") else \
        read_label(label_path)
    if image.shape[:2] != label.shape:
        raise ValueError(f"voc_to_hdf5: image {image_path!r} is {image.shape[:2]} but its "
                         f"label {label_path!r} is {label.shape}")
    return image, label


def convert(voc_root, split, out, sbd_root=None, sbd_split="train", exclude=("val",),
            progress=False):
    """Write the samples of ``split`` to ``out`` atomically; returns the sample count."""
    check_writable("voc_to_hdf5: --out", out)
    samples = list_samples(voc_root, split, sbd_root, sbd_split, exclude)
    if not samples:
        raise ValueError(f"voc_to_hdf5: split {split!r} under {voc_root!r} lists no images")
    for _, image, label in samples:
        for path in (image, label):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"voc_to_hdf5: no such file {path!r}")
    items = samples
    if progress:
        from tqdm import tqdm
        items = tqdm(samples, desc="sizes", unit="img", leave=False)
    sizes = np.array([image_size(image) for _, image, _ in items])
    items = samples
    if progress:
        items = tqdm(samples, desc=f"VOC {split}", unit="img")
    source = f"PASCAL VOC 2012 {split}" + (f" + SBD {sbd_split}" if sbd_root else "")
    with SegmentationWriter(out, len(samples), sizes.max(0), VOC_CLASSES,
                            palette=label_palette(), source=source) as writer:
        for i, image_path, label_path in items:
            image, label = load_sample(image_path, label_path)
            writer.add(image, label, name=i, where=f"{label_path!r} (image {image_path!r})")
    return len(samples)


def _main(argv):
    parser = Parser(
        prog="python -m data_tools.voc_to_hdf5",
        description="Convert PASCAL VOC 2012 segmentation data (JPEGImages, "
                    "SegmentationClass palette PNGs, ImageSets/Segmentation) and optionally "
                    "the SBD augmentation (cls/*.mat) to a segnp HDF5 segmentation file.")
    parser.add_argument("--voc-root", required=True,
                        help="VOC2012 folder (or VOCdevkit, or its parent)")
    parser.add_argument("--split", required=True,
                        help="split name: ImageSets/Segmentation/SPLIT.txt (train, val, "
                             "trainval, ...)")
    parser.add_argument("--out", required=True, help="output .h5 file")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the file --out if it exists")
    parser.add_argument("--sbd-root", default=None,
                        help="SBD dataset folder (with img/, cls/, train.txt, val.txt)")
    parser.add_argument("--sbd-split", default="train", help="SBD split to add (train, val)")
    parser.add_argument("--exclude", nargs="*", default=["val"],
                        help="VOC splits whose IDs are never added from SBD (default: val)")
    args = parser.parse_args(argv)
    check_new_output(args.out, "--out", args.overwrite)
    n = convert(args.voc_root, args.split, args.out, args.sbd_root, args.sbd_split,
            tuple(args.exclude), progress=True)
    print(f"wrote {args.out}: {n} samples")


def main(argv=None):
    return run_command(_main, argv, prog="voc_to_hdf5",
                       hint="; no partial file is left")


if __name__ == "__main__":
    cleanup_on_sigterm()
    sys.exit(main())
