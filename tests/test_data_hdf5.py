"""The HDF5 format: writers, lazy datasets, per-process reopening, and bad files."""
import multiprocessing
import os
import pickle

import h5py
import numpy as np
import pytest

from segnp.data import (FlowWriter, HDF5FlowDataset, HDF5SegmentationDataset,
                        SegmentationWriter)

CLASSES = ["background", "a", "b", "c"]


def _seg_samples(rng, sizes):
    out = []
    for h, w in sizes:
        image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        label = rng.integers(0, len(CLASSES), (h, w)).astype(np.uint8)
        label[0, 0] = 255
        out.append((image, label))
    return out


def _write_seg(path, samples, **kw):
    H = max(s[0].shape[0] for s in samples)
    W = max(s[0].shape[1] for s in samples)
    with SegmentationWriter(path, len(samples), (H, W), CLASSES, source="test", **kw) as w:
        for k, (image, label) in enumerate(samples):
            w.add(image, label, name=f"s{k}")


def test_segmentation_round_trip_with_variable_sizes(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [(5, 7), (9, 4), (9, 7), (1, 1)]
    samples = _seg_samples(rng, sizes)
    path = tmp_path / "seg.h5"
    _write_seg(path, samples)
    ds = HDF5SegmentationDataset(path)
    assert len(ds) == 4 and ds.max_size == (9, 7) and ds.classes == CLASSES
    assert ds.num_classes == 4 and ds.names == ["s0", "s1", "s2", "s3"]
    np.testing.assert_array_equal(ds.sizes, sizes)
    for k, (image, label) in enumerate(samples):
        got = ds[k]
        assert set(got) == {"image", "label"}
        np.testing.assert_array_equal(got["image"], image)
        np.testing.assert_array_equal(got["label"], label)
    np.testing.assert_array_equal(ds[-1]["image"], samples[-1][0])
    pixels = np.concatenate([im.reshape(-1, 3) for im, _ in samples])
    np.testing.assert_allclose(ds.mean, pixels.mean(0))
    with h5py.File(path) as f:
        # the documented padded layout: padding holds 0 in images and 255 in labels
        assert f["images"].shape == (4, 9, 7, 3) and f["labels"].dtype == np.uint8
        assert (f["labels"][0, 5:] == 255).all() and (f["images"][0, :, 7:] == 0).all()
        assert f["images"].chunks == (1, 9, 7, 3) and f["images"].compression == "gzip"
        assert f.attrs["kind"] == "segmentation" and f.attrs["format_version"] == 1
        assert f.attrs["source"] == "test" and f.attrs["palette"].shape == (256, 3)
    with pytest.raises(IndexError, match="index 4 out of range"):
        ds[4]


def test_flow_round_trip_and_optional_occlusion(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "flow.h5"
    data = []
    with FlowWriter(path, 3, (6, 8), occlusion=True) as w:
        for h, w_ in [(6, 8), (4, 8), (6, 3)]:
            a = rng.integers(0, 256, (h, w_, 3)).astype(np.uint8)
            b = rng.integers(0, 256, (h, w_, 3)).astype(np.uint8)
            f = rng.standard_normal((h, w_, 2)).astype(np.float32)
            occ = rng.random((h, w_)) < 0.3
            w.add(a, b, f, occluded=occ)
            data.append((a, b, f, occ))
    ds = HDF5FlowDataset(path)
    assert ds.fields == ("image1", "image2", "flow")
    full = HDF5FlowDataset(path, fields=("image1", "image2", "flow", "occluded"))
    for k, (a, b, f, occ) in enumerate(data):
        s = full[k]
        np.testing.assert_array_equal(s["image1"], a)
        np.testing.assert_array_equal(s["image2"], b)
        np.testing.assert_array_equal(s["flow"], f)
        np.testing.assert_array_equal(s["occluded"], occ)
        assert set(ds[k]) == {"image1", "image2", "flow"}
    with pytest.raises(ValueError, match=r"asked for \['depth'\]"):
        HDF5FlowDataset(path, fields=("image1", "depth"))


def test_large_samples_are_chunked_by_rows(tmp_path):
    path = tmp_path / "big.h5"
    with FlowWriter(path, 1, (384, 512)) as w:
        z = np.zeros((384, 512, 3), np.uint8)
        w.add(z, z, np.zeros((384, 512, 2), np.float32))
    with h5py.File(path) as f:
        chunk = f["flow"].chunks
        assert chunk[0] == 1 and chunk[2:] == (512, 2) and chunk[1] < 384
        assert np.prod(chunk) * 4 <= 1 << 20 and f["flow"].shuffle


def _leftovers(folder):
    return sorted(os.listdir(folder))


def test_failed_write_leaves_no_file(tmp_path):
    rng = np.random.default_rng(2)
    samples = _seg_samples(rng, [(4, 4), (4, 4)])
    path = tmp_path / "seg.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with SegmentationWriter(path, 2, (4, 4), CLASSES) as w:
            w.add(*samples[0])
            raise RuntimeError("boom")
    assert _leftovers(tmp_path) == []
    # too few samples is an error too, and also leaves nothing
    with pytest.raises(ValueError, match="made for 2 samples; only 1 were written"):
        with SegmentationWriter(path, 2, (4, 4), CLASSES) as w:
            w.add(*samples[0])
    assert _leftovers(tmp_path) == []
    # a failed rewrite keeps the old file intact
    _write_seg(path, samples)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with SegmentationWriter(path, 2, (4, 4), CLASSES) as w:
            raise RuntimeError("stop")
    assert path.read_bytes() == before and _leftovers(tmp_path) == ["seg.h5"]


def test_writer_checks_samples(tmp_path):
    path = tmp_path / "seg.h5"
    good = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"lab_017\.png: labels must be class indices "
                                         r"0\.\.3 or 255; got \[4, 9\]"):
        with SegmentationWriter(path, 1, (4, 4), CLASSES) as w:
            bad = np.zeros((4, 4), np.uint8)
            bad[0, :2] = (4, 9)
            w.add(good, bad, where="lab_017.png")
    with pytest.raises(ValueError, match=r"sizes differ: image \(4, 4\), label \(3, 4\)"):
        with SegmentationWriter(path, 1, (4, 4), CLASSES) as w:
            w.add(good, np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match="larger than the file's max_size"):
        with SegmentationWriter(path, 1, (4, 4), CLASSES) as w:
            w.add(np.zeros((5, 4, 3), np.uint8), np.zeros((5, 4), np.uint8))
    with pytest.raises(ValueError, match="flow must be finite"):
        with FlowWriter(path, 1, (4, 4)) as w:
            w.add(good, good, np.full((4, 4, 2), np.nan, np.float32))
    assert _leftovers(tmp_path) == []


def test_missing_and_non_hdf5_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        HDF5SegmentationDataset(tmp_path / "absent.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not HDF5" * 100)
    with pytest.raises(ValueError, match=r"junk\.h5.*not a readable HDF5 file"):
        HDF5FlowDataset(junk)


def test_truncated_hdf5_is_named(tmp_path):
    path = tmp_path / "cut.h5"
    _write_seg(path, _seg_samples(np.random.default_rng(3), [(16, 16)] * 4))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.h5"):
        ds = HDF5SegmentationDataset(path)
        for i in range(len(ds)):
            ds[i]


def test_corrupt_chunk_is_named(tmp_path):
    path = tmp_path / "rot.h5"
    rng = np.random.default_rng(4)
    _write_seg(path, _seg_samples(rng, [(32, 32)] * 2))
    with h5py.File(path) as f:
        offset = f["images"].id.get_chunk_info(1).byte_offset
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 64)
    ds = HDF5SegmentationDataset(path)
    ds[0]
    with pytest.raises(ValueError, match=r"cannot read sample 1 from .*rot\.h5"):
        ds[1]


def _raw_file(path, kind="segmentation", labels=None, images_shape=(2, 4, 4, 3)):
    """A file written with h5py directly, to hold what the writers refuse."""
    with h5py.File(path, "w") as f:
        f.attrs.update(kind=kind, format_version=1, source="raw")
        f.attrs["classes"] = ["bg", "fg"]
        f["images"] = np.zeros(images_shape, np.uint8)
        f["labels"] = np.zeros((2, 4, 4), np.uint8) if labels is None else labels
        f["sizes"] = np.array([[4, 4], [4, 4]], np.int32)


def test_bad_label_values_in_a_file_are_named(tmp_path):
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[1, 2, 2] = 7
    path = tmp_path / "badlab.h5"
    _raw_file(path, labels=labels)
    ds = HDF5SegmentationDataset(path)
    ds[0]
    with pytest.raises(ValueError, match=r"badlab\.h5.*sample 1.*0\.\.1 or 255; got \[7\]"):
        ds[1]


def test_image_label_size_mismatch_in_a_file_is_named(tmp_path):
    path = tmp_path / "mismatch.h5"
    _raw_file(path, images_shape=(2, 4, 5, 3))
    with pytest.raises(ValueError, match=r"mismatch\.h5.*labels must be uint8 \(2, 4, 5\)"):
        HDF5SegmentationDataset(path)


def test_wrong_kind_is_named(tmp_path):
    path = tmp_path / "seg.h5"
    _raw_file(path)
    with pytest.raises(ValueError, match=r"seg\.h5.*must be a segnp flow file"):
        HDF5FlowDataset(path)


def _read_in_child(ds, index, queue):
    queue.put((os.getpid(), ds[index]["label"].sum()))


def test_dataset_pickles_without_handle_and_reopens_per_process(tmp_path):
    rng = np.random.default_rng(5)
    samples = _seg_samples(rng, [(6, 6)] * 3)
    path = tmp_path / "seg.h5"
    _write_seg(path, samples)
    ds = HDF5SegmentationDataset(path)
    ds[0]                                   # the parent holds an open handle now
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None
    np.testing.assert_array_equal(clone[2]["image"], samples[2][0])
    for method in ("fork", "spawn"):
        ctx = multiprocessing.get_context(method)
        queue = ctx.Queue()
        p = ctx.Process(target=_read_in_child, args=(ds, 1, queue))
        p.start()
        pid, total = queue.get(timeout=60)
        p.join(60)
        assert pid != os.getpid() and total == samples[1][1].sum()
    np.testing.assert_array_equal(ds[1]["label"], samples[1][1])
    ds.close()
