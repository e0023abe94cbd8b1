"""Lazy datasets over segnp's HDF5 files (layout: docs/datasets.md, segnp/data/hdf5.py).

Only the small metadata (sizes, classes, mean) is read when a dataset is made; samples
are read one at a time on access.  The HDF5 handle is opened on first access in each
process and never pickled, so a dataset can be handed to worker processes (which then
open their own handle) or used again after ``fork``.
"""
import os

from .hdf5 import check_labels, open_hdf5, read_header

__all__ = ["HDF5SegmentationDataset", "HDF5FlowDataset"]


class _HDF5Dataset:
    kind = None
    # file field -> key of the sample dict
    keys = {}

    def __init__(self, path, fields=None):
        self.path = os.fspath(path)
        name = type(self).__name__
        header = read_header(self.path, self.kind, name)
        self.count = header["count"]
        self.max_size = header["max_size"]
        self.sizes = header["sizes"]
        self.mean = header["mean"]
        self.source = header["source"]
        self.attrs = header["attrs"]
        self.names = header.get("names")
        self._header = header
        available = header["fields"]
        wanted = list(self.keys) if fields is None else list(fields)
        unknown = [k for k in wanted if k not in available]
        if unknown:
            raise ValueError(f"{name}: {self.path!r} has fields {available}; asked for "
                             f"{unknown}")
        self.fields = tuple(wanted)
        self._file = None
        self._datasets = None
        self._pid = None

    def _open(self):
        if self._file is None or self._pid != os.getpid():
            # after fork the parent's handle must not be used; open a fresh one
            self._file = open_hdf5(self.path, type(self).__name__)
            self._datasets = {k: self._file[k] for k in self.fields}
            self._pid = os.getpid()
        return self._datasets

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        """A dict of arrays cropped to the sample's own size (see ``keys``)."""
        name = type(self).__name__
        try:
            i = int(index)
        except TypeError:
            raise TypeError(f"{name}: index must be an integer; got "
                            f"{type(index).__name__}") from None
        if not -self.count <= i < self.count:
            raise IndexError(f"{name}: index {i} out of range for {self.count} samples in "
                             f"{self.path!r}")
        i %= self.count
        h, w = (int(s) for s in self.sizes[i])
        full = (h, w) == tuple(self.max_size)
        datasets = self._open()
        sample = {}
        try:
            for field in self.fields:
                ds = datasets[field]
                sample[self.keys.get(field, field)] = ds[i] if full else ds[i, :h, :w]
        except (OSError, RuntimeError, KeyError) as e:
            raise ValueError(f"{name}: cannot read sample {i} from {self.path!r} (corrupt "
                             f"or truncated?): {e}") from e
        self._check(sample, i)
        return sample

    def _check(self, sample, i):
        """Per-kind checks of sample ``i`` as read from the file (none by default)."""

    def close(self):
        """Close this process's handle (it reopens on the next access)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = self._datasets = self._pid = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_file=None, _datasets=None, _pid=None)
        return state

    def __repr__(self):
        H, W = self.max_size
        return (f"{type(self).__name__}({self.path!r}: {self.count} samples, up to "
                f"{H}x{W}, source {self.source!r})")


class HDF5SegmentationDataset(_HDF5Dataset):
    """Samples ``{'image': uint8 (h, w, 3), 'label': uint8 (h, w)}`` from a segmentation
    file; labels are class indices or 255 (ignore), checked on every read.

    ``fields``: the file fields to read, by default images, labels; add ``'instances'``
    (uint8 (h, w): 0 background, 1.. objects) where the file has it.

    Attributes: ``classes`` (names), ``num_classes``, ``palette`` (256, 3), ``mean``
    (RGB), ``sizes`` (N, 2), ``max_size``.
    """

    kind = "segmentation"
    keys = {"images": "image", "labels": "label"}

    def __init__(self, path, fields=None):
        super().__init__(path, fields)
        self.classes = self._header["classes"]
        self.num_classes = len(self.classes)
        self.palette = self._header["palette"]

    def _check(self, sample, i):
        if "label" in sample:
            check_labels(type(self).__name__, sample["label"], self.num_classes,
                         f"{self.path!r} sample {i}")


class HDF5FlowDataset(_HDF5Dataset):
    """Samples ``{'image1', 'image2': uint8 (h, w, 3), 'flow': float32 (h, w, 2)}`` from
    a flow file, with image1(y, x) ~ image2(y + v, x + u).

    ``fields``: the file fields to read, by default image1, image2, flow; add
    ``'occluded'`` (uint8 (h, w), 1 = not visible in image2) where the file has it.
    """

    kind = "flow"
    keys = {"image1": "image1", "image2": "image2", "flow": "flow"}

    def __init__(self, path, fields=None):
        super().__init__(path, fields)
