"""Datasets for the experiments: the user's HDF5 files, or FlyingShapes generated into a
cache folder on first use, held in memory, and batched by :class:`segnp.data.DataLoader`.

Images enter the networks as float32 ``(rgb - mean) * scale``, with the mean of the
training file; the mean and scale are recorded in each run's config so that evaluation
preprocesses exactly as training did.
"""
import os

import numpy as np

from ..data import (Compose, DataLoader, HDF5FlowDataset, HDF5SegmentationDataset,
                    RandomCrop, RandomHorizontalFlip, SubtractMean, ensure_synthetic)

__all__ = ["INPUT_SCALE", "default_cache", "synthetic_split", "InMemory", "load_split",
           "make_loader", "preprocess"]

INPUT_SCALE = 1.0 / 64.0  # colour deviations of a few tens -> unit-ish inputs
SPLIT_SEEDS = {"train": 1, "test": 2, "val": 3}


def default_cache():
    """``$SEGNP_CACHE``, else ``~/.cache/segnp``: where generated data goes."""
    return os.environ.get("SEGNP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                         "segnp")


def synthetic_split(split, count, size, cache_dir=None, classes=6, progress=False):
    """SyntheticPaths (segmentation, flow) of the FlyingShapes ``split`` ('train', 'val'
    or 'test', drawn from different generator seeds), generated on first use."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"synthetic_split: split must be one of {tuple(SPLIT_SEEDS)}; got "
                         f"{split!r}")
    return ensure_synthetic(cache_dir or default_cache(), count, (size, size),
                            seed=SPLIT_SEEDS[split], classes=classes, progress=progress)


class InMemory:
    """Every sample of a (lazy) dataset read once into memory: a list of dicts with the
    dataset's ``fields``/``keys``, ``classes`` and ``mean``, usable by DataLoader."""

    def __init__(self, dataset, limit=None):
        n = len(dataset) if limit is None else min(int(limit), len(dataset))
        self.samples = [dataset[i] for i in range(n)]
        self.path = getattr(dataset, "path", None)
        self.mean = np.asarray(getattr(dataset, "mean", np.zeros(3)), np.float64)
        self.classes = getattr(dataset, "classes", None)
        self.num_classes = getattr(dataset, "num_classes", None)
        self.keys, self.fields = dataset.keys, dataset.fields
        if hasattr(dataset, "close"):
            dataset.close()

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]

    def stack(self, key):
        """All samples' ``key`` arrays stacked (they must share a size)."""
        return np.stack([s[key] for s in self.samples])


def load_split(kind, path=None, split="train", count=None, size=64, cache_dir=None,
               progress=False, fields=None):
    """An :class:`InMemory` dataset of ``kind`` ('segmentation' or 'flow').

    ``path``: an HDF5 file (docs/datasets.md); without it, FlyingShapes ``split`` with
    ``count`` scenes of ``size`` x ``size`` from the cache (generated if missing).
    ``count`` also limits how many samples of a given file are read.
    """
    if kind not in ("segmentation", "flow"):
        raise ValueError(f"load_split: kind must be 'segmentation' or 'flow'; got {kind!r}")
    if path is None:
        if count is None:
            raise ValueError("load_split: give a file path or a count of generated scenes")
        paths = synthetic_split(split, count, size, cache_dir, progress=progress)
        path = paths.segmentation if kind == "segmentation" else paths.flow
    cls = HDF5SegmentationDataset if kind == "segmentation" else HDF5FlowDataset
    return InMemory(cls(path, fields=fields), limit=count)


def preprocess(images, mean, scale=INPUT_SCALE):
    """uint8 RGB (N, H, W, 3) -> float32 (N, 3, H, W) network input."""
    x = (np.asarray(images, np.float32) - np.asarray(mean, np.float32)) * np.float32(scale)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def make_loader(dataset, batch_size, seed, train, mean, scale=INPUT_SCALE, crop=None,
                flip=True):
    """A DataLoader: shuffled, flipped (and cropped to ``crop``) batches for training;
    in order and unaugmented for evaluation.  Images are mean-subtracted and scaled."""
    # Mean first, so that a crop pads images with the mean colour (0 after it).
    steps = [SubtractMean(np.asarray(mean, np.float32), scale)]
    if train and crop:
        steps.append(RandomCrop(crop))
    if train and flip:
        steps.append(RandomHorizontalFlip())
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, seed=seed,
                      drop_last=train and len(dataset) >= batch_size,
                      transform=Compose(steps))
