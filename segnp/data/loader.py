"""Mini-batches from a dataset: seeded shuffling, per-sample augmentation, collation to
(N, C, H, W) arrays, and optional background loading (a prefetch thread or worker
processes).

Reproducibility does not depend on how batches are loaded: the order of epoch e is a
permutation drawn from ``default_rng([seed, e])``, and sample i of epoch e is augmented
with its own ``default_rng([seed, e, i])``.  So a run resumed at epoch e (``set_epoch``)
sees exactly the batches of an uninterrupted run, with or without workers.

Data-parallel training gives each of P processes the shard ``(rank, P)``: the epoch's
permutation cut to a multiple of P (the few samples past it differ from epoch to epoch)
and dealt out in turn, so shard r holds positions r, r + P, r + 2P, ...  The shards are
disjoint, equally long (every rank takes the same number of steps) and the same for a
given seed and epoch; and with ``batch_size = B / P`` the k-th batches of the P shards
together are the k-th batch of an unsharded loader with batch size B.
"""
import collections
import concurrent.futures
import multiprocessing
import os

import numpy as np

from ..parent_watch import watch_parent
from .transforms import PAD_FILL

__all__ = ["DataLoader", "collate"]

_IMAGE_KEYS = ("image", "image1", "image2")


def collate(samples, keys=None):
    """Stack samples into a tuple of batch arrays, in the order of ``keys`` (by default
    the first sample's keys):

    - 'image', 'image1', 'image2': float32 (N, 3, H, W);
    - 'label', 'instances': int64 (N, H, W);
    - 'flow': float32 (N, 2, H, W);
    - 'occluded': bool (N, H, W).

    Samples of different sizes are padded at the bottom and right to the largest: images
    with 0, labels and instances with 255 (ignored), occlusion with 1; flow cannot be
    padded (it has no ignore value), so flow samples must share one size (use RandomCrop).
    """
    keys = list(samples[0]) if keys is None else list(keys)
    sizes = {s[keys[0]].shape[:2] for s in samples}
    H = max(h for h, _ in sizes)
    W = max(w for _, w in sizes)
    if len(sizes) > 1 and "flow" in keys:
        raise ValueError(f"collate: flow samples in one batch must share one size; got "
                         f"{sorted(sizes)} (add a RandomCrop)")
    batch = []
    for k in keys:
        first = samples[0][k]
        if k in _IMAGE_KEYS or k == "flow":
            dtype, tail = np.float32, first.shape[2:]
        elif k in ("label", "instances"):
            dtype, tail = np.int64, ()
        elif k == "occluded":
            dtype, tail = np.bool_, ()
        else:
            dtype, tail = first.dtype, first.shape[2:]
        # channels go first as each sample is copied in: one strided pass, where
        # stacking (N, H, W, C) and transposing afterwards would copy everything twice
        shape = (len(samples),) + tail + (H, W)
        out = (np.empty(shape, dtype) if len(sizes) == 1 else
               np.full(shape, PAD_FILL.get(k, 0), dtype))
        for n, s in enumerate(samples):
            a = s[k]
            out[n, ..., :a.shape[0], :a.shape[1]] = np.moveaxis(a, (0, 1), (-2, -1))
        batch.append(out)
    return tuple(batch)


# The loader a worker process serves, set once per process by the pool's initializer.
_WORKER_LOADER = None
# How often a worker checks that its parent is alive (seconds).
PARENT_POLL = 0.5


def _init_worker(loader):
    global _WORKER_LOADER
    _WORKER_LOADER = loader
    # A worker whose parent was killed would wait for work for ever: the pool's queues
    # do not tell it.  It holds no file open for writing, so it may end at once.
    watch_parent(lambda: os._exit(1), PARENT_POLL)


def _worker_batch(indices, epoch):
    return _WORKER_LOADER.load_batch(indices, epoch)


class DataLoader:
    """Iterate over mini-batches of ``dataset`` (anything with ``len`` and ``[i]``
    returning a dict of arrays, e.g. HDF5SegmentationDataset).

    Args:
        batch_size: samples per batch.
        shuffle: a new permutation each epoch, drawn from ``seed`` and the epoch.
        seed: the seed of the order and of the augmentations.
        drop_last: drop the last batch if it is smaller than ``batch_size``.
        transform: ``transform(sample, rng)``, e.g. ``Compose([RandomScale(), ...])``.
        prefetch: batches loaded ahead in a background thread (0: load when asked).
        workers: worker processes loading batches (0: none); each reopens the HDF5 file,
            and exits by itself when the parent process dies.
        start_epoch: the epoch of the first iteration; each ``iter`` uses the next one.
        shard: ``(rank, size)``: iterate over shard ``rank`` of ``size`` disjoint shards
            (see the module docstring); None for the whole dataset.

    Each batch is a tuple from :func:`collate`, in the order of ``keys``: for
    segmentation ``(images, labels)``, for flow ``(image1, image2, flow)``.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, seed=0, drop_last=False,
                 transform=None, prefetch=0, workers=0, start_epoch=0, shard=None):
        if int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1; got {batch_size}")
        if int(prefetch) < 0 or int(workers) < 0:
            raise ValueError(f"DataLoader: prefetch and workers must be >= 0; got "
                             f"{prefetch}, {workers}")
        if len(dataset) == 0:
            raise ValueError("DataLoader: the dataset is empty")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.prefetch = int(prefetch)
        self.workers = int(workers)
        self.epoch = int(start_epoch)
        self.set_shard(shard)
        keys = getattr(dataset, "keys", None)
        fields = getattr(dataset, "fields", None)
        self.keys = (tuple(keys.get(f, f) for f in fields) if isinstance(keys, dict)
                     and fields is not None else None)

    def __len__(self):
        n, b = len(self.dataset), self.batch_size
        if self.shard is not None:
            n //= self.shard[1]
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch):
        """Make the next iteration epoch ``epoch`` (to resume a run)."""
        self.epoch = int(epoch)

    def set_shard(self, shard):
        """Iterate over shard ``(rank, size)`` from now on (None: the whole dataset)."""
        if shard is not None:
            ok = (isinstance(shard, (tuple, list)) and len(shard) == 2 and
                  all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                      for v in shard))
            if not ok or not 0 <= shard[0] < shard[1]:
                raise ValueError(f"DataLoader: shard must be (rank, size) with integers "
                                 f"0 <= rank < size; got {shard!r}")
            if shard[1] > len(self.dataset):
                raise ValueError(f"DataLoader: {shard[1]} shards of a dataset of "
                                 f"{len(self.dataset)} samples would leave some empty")
            shard = (int(shard[0]), int(shard[1]))
        self.shard = shard

    def batch_indices(self, epoch):
        """The sample indices of each batch of ``epoch`` (of this loader's shard)."""
        n = len(self.dataset)
        order = (np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle
                 else np.arange(n))
        if self.shard is not None:
            rank, size = self.shard
            order = order[:n - n % size][rank::size]
        stop = len(self) * self.batch_size
        return [order[s:s + self.batch_size] for s in range(0, min(stop, len(order)),
                                                             self.batch_size)]

    def load_batch(self, indices, epoch):
        """Read, augment and collate the samples ``indices`` of ``epoch``."""
        samples = []
        for i in indices:
            sample = self.dataset[int(i)]
            if self.transform is not None:
                rng = np.random.default_rng([self.seed, epoch, int(i)])
                sample = self.transform(sample, rng)
            samples.append(sample)
        return collate(samples, self.keys)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        batches = self.batch_indices(epoch)
        if self.workers == 0 and self.prefetch == 0:
            return (self.load_batch(b, epoch) for b in batches)
        return self._background(batches, epoch)

    def _background(self, batches, epoch):
        if self.workers:
            pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context(),
                initializer=_init_worker, initargs=(self,))
            submit = lambda b: pool.submit(_worker_batch, b, epoch)  # noqa: E731
            depth = max(self.prefetch, 2 * self.workers)
        else:
            pool = concurrent.futures.ThreadPoolExecutor(1)
            submit = lambda b: pool.submit(self.load_batch, b, epoch)  # noqa: E731
            depth = self.prefetch
        pending = collections.deque()
        todo = iter(batches)
        try:
            for b in todo:
                pending.append(submit(b))
                if len(pending) >= depth:
                    break
            while pending:
                batch = pending.popleft().result()
                for b in todo:
                    pending.append(submit(b))
                    break
                yield batch
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
