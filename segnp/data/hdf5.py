"""The HDF5 layout of segnp's datasets (see docs/datasets.md), its writers and checks.

Variable-size images are stored padded: every array field holds (N, H, W, ...) with H, W
the largest height and width in the file, and ``sizes`` (N, 2) int32 gives each sample's
own (h, w); sample i is ``field[i, :h, :w]``.  Padding costs almost nothing once
compressed, and one array per field keeps the files readable by any HDF5 tool.

Segmentation files: ``images`` uint8 (N, H, W, 3), ``labels`` uint8 (N, H, W) (255:
ignore; also the padding).  Flow files: ``image1``, ``image2`` uint8 (N, H, W, 3),
``flow`` float32 (N, H, W, 2) of (u, v) with image1(y, x) ~ image2(y + v, x + u), and
optionally ``occluded`` uint8 (N, H, W) (1 where the pixel of image1 is hidden or out of
view in image2); segmentation files optionally ``instances`` uint8 (N, H, W) (0: background,
1.. objects; 255: padding).  Both may hold ``names`` (N,) strings.  Attributes: ``kind``,
``format_version``, ``source``, ``mean`` (the mean RGB of the first image over all valid
pixels); segmentation files also ``classes`` (names) and ``palette`` (256, 3) uint8.
"""
import contextlib
import os

import h5py
import numpy as np

from ..atomic import atomic_path
from ..io.png import label_palette

__all__ = ["FORMAT_VERSION", "IGNORE_LABEL", "SegmentationWriter", "FlowWriter",
           "open_hdf5", "read_header"]

FORMAT_VERSION = 1
IGNORE_LABEL = 255
# Per-sample chunks keep a random read to one decompression; rows are split only when
# a sample would pass this size (large flow fields), to keep chunks cache-friendly.
CHUNK_BYTES = 1 << 20
GZIP_LEVEL = 4

# field: (channels or None, dtype, fill value)
SEGMENTATION_FIELDS = {"images": (3, np.uint8, 0), "labels": (None, np.uint8, IGNORE_LABEL)}
FLOW_FIELDS = {"image1": (3, np.uint8, 0), "image2": (3, np.uint8, 0),
               "flow": (2, np.float32, 0.0)}
OPTIONAL_FIELDS = {"flow": {"occluded": (None, np.uint8, 0)},
                   "segmentation": {"instances": (None, np.uint8, IGNORE_LABEL)}}
FIELDS = {"segmentation": SEGMENTATION_FIELDS, "flow": FLOW_FIELDS}


def open_hdf5(path, fn):
    """Open ``path`` read-only; FileNotFoundError or ValueError naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{fn}: no such file {path!r}")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{fn}: {path!r} is not a readable HDF5 file (corrupt or "
                         f"truncated?): {e}") from e


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def read_header(path, kind, fn):
    """Check the layout of a segnp HDF5 file and return its metadata as a dict:
    ``count``, ``max_size`` (H, W), ``sizes`` (N, 2), ``fields``, ``attrs``, and for
    segmentation files ``classes`` and ``palette``.  Errors name the file."""
    path = os.fspath(path)
    expected = FIELDS[kind]
    with open_hdf5(path, fn) as f:
        try:
            got_kind = _text(f.attrs.get("kind", ""))
            if got_kind != kind:
                raise ValueError(f"{fn}: {path!r} must be a segnp {kind} file (attribute "
                                 f"kind={kind!r}); got kind={got_kind!r}")
            version = int(f.attrs.get("format_version", -1))
            if version != FORMAT_VERSION:
                raise ValueError(f"{fn}: {path!r} has format_version {version}; this "
                                 f"version of segnp reads {FORMAT_VERSION}")
            fields = list(expected) + [k for k in OPTIONAL_FIELDS[kind] if k in f]
            missing = [k for k in list(expected) + ["sizes"] if k not in f]
            if missing:
                raise ValueError(f"{fn}: {path!r} lacks the dataset(s) {missing}")
            spec = dict(expected, **OPTIONAL_FIELDS[kind])
            shape0 = f[fields[0]].shape
            if len(shape0) < 3:
                raise ValueError(f"{fn}: {path!r}: {fields[0]} must be (N, H, W, ...); "
                                 f"got shape {shape0}")
            N, H, W = shape0[:3]
            for k in fields:
                ch, dtype, _ = spec[k]
                want = (N, H, W) + ((ch,) if ch else ())
                ds = f[k]
                if ds.shape != want or ds.dtype != dtype:
                    raise ValueError(f"{fn}: {path!r}: {k} must be {np.dtype(dtype)} "
                                     f"{want}; got {ds.dtype} {ds.shape}")
            sizes = f["sizes"][()]
            if sizes.shape != (N, 2) or sizes.dtype.kind not in "iu":
                raise ValueError(f"{fn}: {path!r}: sizes must be integer (N={N}, 2); got "
                                 f"{sizes.dtype} {sizes.shape}")
            bad = (sizes < 1).any(1) | (sizes[:, 0] > H) | (sizes[:, 1] > W)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{fn}: {path!r}: sizes[{i}] = {tuple(sizes[i])} must lie "
                                 f"within the stored (H, W) = ({H}, {W})")
            attrs = {k: f.attrs[k] for k in f.attrs}
            header = {"count": N, "max_size": (H, W), "sizes": sizes.astype(np.int64),
                      "fields": fields, "attrs": attrs,
                      "source": _text(attrs.get("source", "")),
                      "mean": np.asarray(attrs.get("mean", np.zeros(3)), np.float64)}
            if "names" in f:
                header["names"] = [_text(s) for s in f["names"][()]]
            if kind == "segmentation":
                if "classes" not in attrs:
                    raise ValueError(f"{fn}: {path!r} lacks the attribute 'classes'")
                header["classes"] = [_text(c) for c in attrs["classes"]]
                header["palette"] = np.asarray(attrs.get("palette", label_palette()),
                                               np.uint8)
            return header
        except (OSError, KeyError, RuntimeError) as e:
            raise ValueError(f"{fn}: cannot read the layout of {path!r} (corrupt?): "
                             f"{e}") from e


def check_labels(fn, label, num_classes, where):
    """ValueError naming ``where`` unless every label is a class index or 255."""
    if label.size and label.max() >= num_classes:
        bad = (label >= num_classes) & (label != IGNORE_LABEL)
        if bad.any():
            vals = np.unique(label[bad])[:8].tolist()
            raise ValueError(f"{fn}: {where}: labels must be class indices 0..{num_classes - 1}"
                             f" or {IGNORE_LABEL}; got {vals}")


class _Writer:
    """Writes samples one after another into a temporary file, renamed on success."""

    kind = None

    def __init__(self, path, count, max_size, source="", attrs=None, optional=()):
        self.path = os.fspath(path)
        self.count = int(count)
        self.H, self.W = (int(s) for s in max_size)
        if self.count < 1 or self.H < 1 or self.W < 1:
            raise ValueError(f"{type(self).__name__}: count and max_size must be positive; "
                             f"got count={count}, max_size={tuple(max_size)}")
        self.source = source
        self.attrs = dict(attrs or {})
        self.optional = tuple(optional)
        self.written = 0
        self._sum = np.zeros(3, np.float64)
        self._pixels = 0

    def __enter__(self):
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        try:
            self._file = self._stack.enter_context(h5py.File(tmp, "w"))
            self._create_fields()
        except BaseException as e:
            self._stack.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def _create_fields(self):
        spec = dict(FIELDS[self.kind])
        spec.update({k: OPTIONAL_FIELDS[self.kind][k] for k in self.optional})
        for name, (ch, dtype, fill) in spec.items():
            tail = (ch,) if ch else ()
            row = self.W * int(np.prod(tail)) * np.dtype(dtype).itemsize
            rows = max(1, min(self.H, CHUNK_BYTES // row))
            self._file.create_dataset(
                name, (self.count, self.H, self.W) + tail, dtype=dtype,
                chunks=(1, rows, self.W) + tail, compression="gzip",
                compression_opts=GZIP_LEVEL, shuffle=np.dtype(dtype).itemsize > 1,
                fillvalue=fill)
        self._sizes = np.zeros((self.count, 2), np.int32)
        self._names = [""] * self.count

    def _put(self, arrays, name):
        i = self.written
        if i >= self.count:
            raise ValueError(f"{type(self).__name__}: {self.path!r} was made for {self.count}"
                             f" samples; got one more")
        h, w = next(iter(arrays.values())).shape[:2]
        for k, a in arrays.items():
            if a.shape[:2] == (self.H, self.W):
                self._file[k][i] = a
            else:
                self._file[k][i, :h, :w] = a
        self._sizes[i] = (h, w)
        self._names[i] = name or ""
        self.written += 1

    def _accumulate_mean(self, image):
        self._sum += image.reshape(-1, 3).sum(0, dtype=np.float64)
        self._pixels += image.shape[0] * image.shape[1]

    def _check_image(self, name, a, where, channels=3, dtype=np.uint8):
        a = np.asarray(a)
        want = f"{np.dtype(dtype)} (h, w, {channels})"
        if a.dtype != dtype or a.ndim != 3 or a.shape[2] != channels:
            raise ValueError(f"{type(self).__name__}: {where}: {name} must be {want}; got "
                             f"{a.dtype} {a.shape}")
        if a.shape[0] > self.H or a.shape[1] > self.W:
            raise ValueError(f"{type(self).__name__}: {where}: {name} is {a.shape[:2]}, "
                             f"larger than the file's max_size ({self.H}, {self.W})")
        return a

    def _check_size(self, where, names, arrays):
        shapes = [a.shape[:2] for a in arrays]
        if any(s != shapes[0] for s in shapes):
            got = ", ".join(f"{n} {s}" for n, s in zip(names, shapes))
            raise ValueError(f"{type(self).__name__}: {where}: sizes differ: {got}")

    def _add_optional(self, arrays, where, name, value, what, ref, ref_name):
        """``arrays[name]``: the optional uint8 field ``name`` (``what`` it stores), which
        every add() gives when the file has it, the size of ``ref``."""
        if not self.optional:
            return
        if value is None:
            raise ValueError(f"{type(self).__name__}: {where}: this file stores {what}; "
                             f"add() needs {name}")
        arrays[name] = np.asarray(value).astype(np.uint8)
        self._check_size(where, (ref_name, name), (ref, arrays[name]))

    def _finish(self):
        if self.written != self.count:
            raise ValueError(f"{type(self).__name__}: {self.path!r} was made for "
                             f"{self.count} samples; only {self.written} were written")
        f = self._file
        f.create_dataset("sizes", data=self._sizes)
        if any(self._names):
            f.create_dataset("names", data=self._names, dtype=h5py.string_dtype())
        f.attrs["kind"] = self.kind
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["source"] = self.source
        f.attrs["mean"] = self._sum / max(self._pixels, 1)
        for k, v in self.attrs.items():
            f.attrs[k] = v

    def __exit__(self, et, ev, tb):
        if et is None:
            try:
                self._finish()
            except BaseException as e:
                self._stack.__exit__(type(e), e, e.__traceback__)
                raise
        return self._stack.__exit__(et, ev, tb)


class SegmentationWriter(_Writer):
    """``with SegmentationWriter(path, count, max_size, classes) as w: w.add(image,
    label)`` writes a segmentation file atomically; a failure leaves no file.

    ``add`` checks each sample: image uint8 (h, w, 3), label uint8 (h, w), labels class
    indices or 255; ``where`` (e.g. the source file names) is quoted in its errors.
    ``instances=True`` adds the ``instances`` field, which every ``add`` must then give.
    """

    kind = "segmentation"

    def __init__(self, path, count, max_size, classes, palette=None, source="", attrs=None,
                 instances=False):
        super().__init__(path, count, max_size, source, attrs,
                         optional=("instances",) if instances else ())
        self.classes = [str(c) for c in classes]
        if not 1 <= len(self.classes) <= IGNORE_LABEL:
            raise ValueError(f"SegmentationWriter: need 1..{IGNORE_LABEL} class names; got "
                             f"{len(self.classes)}")
        pal = label_palette() if palette is None else np.asarray(palette, np.uint8)
        self.attrs.update(classes=np.array(self.classes, dtype=h5py.string_dtype()),
                          palette=pal)

    def add(self, image, label, instances=None, name=None, where=None):
        where = where or f"sample {self.written}"
        image = self._check_image("image", image, where)
        label = np.asarray(label)
        if label.dtype != np.uint8 or label.ndim != 2:
            raise ValueError(f"SegmentationWriter: {where}: label must be uint8 (h, w); got "
                             f"{label.dtype} {label.shape}")
        self._check_size(where, ("image", "label"), (image, label))
        check_labels("SegmentationWriter", label, len(self.classes), where)
        arrays = {"images": image, "labels": label}
        self._add_optional(arrays, where, "instances", instances, "instance maps", image,
                           "image")
        self._accumulate_mean(image)
        self._put(arrays, name)


class FlowWriter(_Writer):
    """``with FlowWriter(path, count, max_size) as w: w.add(image1, image2, flow)`` writes
    a flow file atomically.  ``occlusion=True`` adds the ``occluded`` field, which every
    ``add`` must then give."""

    kind = "flow"

    def __init__(self, path, count, max_size, source="", attrs=None, occlusion=False):
        super().__init__(path, count, max_size, source, attrs,
                         optional=("occluded",) if occlusion else ())

    def add(self, image1, image2, flow, occluded=None, name=None, where=None):
        where = where or f"sample {self.written}"
        image1 = self._check_image("image1", image1, where)
        image2 = self._check_image("image2", image2, where)
        flow = self._check_image("flow", np.asarray(flow, np.float32) if
                                 np.asarray(flow).dtype.kind == "f" else flow, where,
                                 channels=2, dtype=np.float32)
        self._check_size(where, ("image1", "image2", "flow"), (image1, image2, flow))
        if not np.isfinite(flow).all():
            raise ValueError(f"FlowWriter: {where}: flow must be finite; got NaN or inf")
        arrays = {"image1": image1, "image2": image2, "flow": flow}
        self._add_optional(arrays, where, "occluded", occluded, "occlusion masks", image1,
                           "image1")
        self._accumulate_mean(image1)
        self._put(arrays, name)
