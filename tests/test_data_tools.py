"""The data_tools converters and CLIs on tiny VOC-, SBD- and FlyingChairs-style folders
built here: exact round trips, bad inputs named, no partial output on failure."""
import os
import struct
import subprocess
import sys
import zlib

import imageio.v3 as iio
import numpy as np
import pytest
import scipy.io

from data_tools import chairs_to_hdf5, inspect as inspect_tool, make_synthetic, voc_to_hdf5
from segnp.data import HDF5FlowDataset, HDF5SegmentationDataset, render_scene
from segnp.io import flow_to_color, overlay_labels, write_flo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _palette_png(path, label, palette):
    """A palette PNG (colour type 3) encoded straight from the PNG spec: each pixel
    stores its label as the palette index.  (imageio's PNG writer re-quantises palette
    images, so it cannot keep given indices; the files are checked with imageio below.)"""
    H, W = label.shape

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data +
                struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + label[y].tobytes() for y in range(H))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 3, 0, 0, 0)))
        f.write(chunk(b"PLTE", palette.astype(np.uint8).tobytes()))
        f.write(chunk(b"IDAT", zlib.compress(rows)))
        f.write(chunk(b"IEND", b""))


def _voc_label(rng, h, w):
    label = rng.integers(0, 21, (h, w)).astype(np.uint8)
    label[0, :] = 255                              # a boundary band, as VOC draws them
    return label


def _make_voc(root, rng):
    """VOC2012 layout under root/VOCdevkit/VOC2012 with 3 train and 1 val images of
    different sizes; returns {id: (image, label)} with the image as imageio decodes it."""
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    palette = rng.integers(0, 256, (256, 3)).astype(np.uint8)
    sizes = {"2007_000001": (20, 30), "2007_000002": (25, 17), "2007_000003": (12, 12),
             "2008_000004": (16, 22)}
    truth = {}
    for i, (h, w) in sizes.items():
        iio.imwrite(voc / "JPEGImages" / f"{i}.jpg",
                    rng.integers(0, 256, (h, w, 3)).astype(np.uint8))
        label = _voc_label(rng, h, w)
        png = voc / "SegmentationClass" / f"{i}.png"
        _palette_png(png, label, palette)
        np.testing.assert_array_equal(iio.imread(png), palette[label])   # a valid PNG
        truth[i] = (iio.imread(voc / "JPEGImages" / f"{i}.jpg"), label)
    ids = list(sizes)
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:3]) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text(ids[3] + "\n")
    return voc, truth


def _make_sbd(root, rng, voc_ids):
    """SBD layout (img/, cls/*.mat with a GTcls struct, train.txt) listing a VOC train
    ID, the VOC val ID and two new IDs; returns {new id: (image, label)}."""
    (root / "img").mkdir(parents=True)
    (root / "cls").mkdir()
    truth = {}
    for i, (h, w) in {"2009_000010": (14, 19), "2009_000011": (21, 9)}.items():
        iio.imwrite(root / "img" / f"{i}.jpg", rng.integers(0, 256, (h, w, 3)).astype(
            np.uint8))
        label = rng.integers(0, 21, (h, w)).astype(np.uint8)
        scipy.io.savemat(root / "cls" / f"{i}.mat",
                         {"GTcls": {"Segmentation": label, "CategoriesPresent":
                                    np.unique(label).astype(np.uint8)}})
        truth[i] = (iio.imread(root / "img" / f"{i}.jpg"), label)
    (root / "train.txt").write_text("\n".join([voc_ids[0], voc_ids[3]] + list(truth)) + "\n")
    return truth


def test_voc_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    voc, truth = _make_voc(tmp_path / "in", rng)
    out = tmp_path / "voc_train.h5"
    assert voc_to_hdf5.main(["--voc-root", str(tmp_path / "in"), "--split", "train",
                             "--out", str(out)]) == 0
    ds = HDF5SegmentationDataset(out)
    ids = list(truth)[:3]
    assert ds.names == ids and ds.classes == list(voc_to_hdf5.VOC_CLASSES)
    assert ds.source == "PASCAL VOC 2012 train" and ds.max_size == (25, 30)
    for k, i in enumerate(ids):
        image, label = truth[i]
        np.testing.assert_array_equal(ds[k]["image"], image)
        np.testing.assert_array_equal(ds[k]["label"], label)
    assert ds[0]["label"][0].tolist() == [255] * 30
    val = tmp_path / "val.h5"
    voc_to_hdf5.convert(voc, "val", val)
    np.testing.assert_array_equal(HDF5SegmentationDataset(val)[0]["label"],
                                  truth["2008_000004"][1])


def test_voc_with_sbd_adds_new_ids_and_keeps_val_out(tmp_path):
    rng = np.random.default_rng(1)
    voc, truth = _make_voc(tmp_path / "voc", rng)
    sbd = _make_sbd(tmp_path / "sbd", rng, list(truth))
    out = tmp_path / "aug.h5"
    assert voc_to_hdf5.main(["--voc-root", str(voc), "--split", "train", "--out", str(out),
                             "--sbd-root", str(tmp_path / "sbd")]) == 0
    ds = HDF5SegmentationDataset(out)
    # VOC's train IDs first; the SBD copy of a VOC train ID and the VOC val ID are skipped
    assert ds.names == list(truth)[:3] + list(sbd)
    assert ds.source == "PASCAL VOC 2012 train + SBD train"
    for k, i in enumerate(ds.names):
        image, label = {**truth, **sbd}[i]
        np.testing.assert_array_equal(ds[k]["image"], image)
        np.testing.assert_array_equal(ds[k]["label"], label)


def _no_output(folder):
    return not any(name.endswith(".h5") for name in os.listdir(folder))


def test_voc_bad_inputs_name_the_file_and_leave_no_output(tmp_path, capsys):
    rng = np.random.default_rng(2)
    voc, truth = _make_voc(tmp_path / "in", rng)
    out = tmp_path / "out" / "voc.h5"
    os.makedirs(out.parent)
    ids = list(truth)

    label_png = voc / "SegmentationClass" / f"{ids[1]}.png"
    bad = truth[ids[1]][1].copy()
    bad[3, 4] = 40
    _palette_png(label_png, bad, np.zeros((256, 3), np.uint8))
    with pytest.raises(ValueError, match=rf"{ids[1]}\.png.*0\.\.20 or 255; got \[40\]"):
        voc_to_hdf5.convert(voc, "train", out)
    assert _no_output(out.parent)

    _palette_png(label_png, bad[:-1], np.zeros((256, 3), np.uint8))
    with pytest.raises(ValueError, match=rf"{ids[1]}\.jpg.*\(25, 17\).*{ids[1]}\.png.*"
                                         r"\(24, 17\)"):
        voc_to_hdf5.convert(voc, "train", out)
    assert _no_output(out.parent)

    os.remove(label_png)
    assert voc_to_hdf5.main(["--voc-root", str(voc), "--split", "train",
                             "--out", str(out)]) == 2
    assert f"no such file '{label_png}'" in capsys.readouterr().err
    assert _no_output(out.parent)

    with pytest.raises(FileNotFoundError, match=r"Segmentation/test\.txt"):
        voc_to_hdf5.convert(voc, "test", out)
    with pytest.raises(FileNotFoundError, match="no VOC layout under"):
        voc_to_hdf5.convert(tmp_path / "nowhere", "train", out)
    corrupt = tmp_path / "broken.mat"
    corrupt.write_bytes(b"MATLAB 5.0 but not really" * 3)
    with pytest.raises(ValueError, match=r"broken\.mat"):
        voc_to_hdf5.read_sbd_label(str(corrupt))


def _make_chairs(root, rng, n=5, size=(12, 16)):
    """FlyingChairs layout under root/data: NNNNN_img1.ppm, _img2.ppm, _flow.flo."""
    data = root / "data"
    data.mkdir(parents=True)
    truth = []
    for k in range(1, n + 1):
        a = rng.integers(0, 256, size + (3,)).astype(np.uint8)
        b = rng.integers(0, 256, size + (3,)).astype(np.uint8)
        f = (rng.standard_normal(size + (2,)) * 5).astype(np.float32)
        iio.imwrite(data / f"{k:05d}_img1.ppm", a)
        iio.imwrite(data / f"{k:05d}_img2.ppm", b)
        write_flo(data / f"{k:05d}_flow.flo", f)
        truth.append((f"{k:05d}", a, b, f))
    return data, truth


def test_chairs_round_trip_is_exact_and_follows_the_split_file(tmp_path):
    rng = np.random.default_rng(3)
    data, truth = _make_chairs(tmp_path / "chairs", rng)
    split = tmp_path / "chairs" / "FlyingChairs_train_val.txt"
    codes = ["1", "2", "1", "1", "2"]
    split.write_text("\n".join(codes) + "\n")
    for name, code in (("train", "1"), ("val", "2")):
        out = tmp_path / f"{name}.h5"
        argv = ["--root", str(tmp_path / "chairs"), "--split", name, "--out", str(out)]
        if name == "train":
            argv += ["--split-file", str(split)]     # val finds it in the root
        assert chairs_to_hdf5.main(argv) == 0
        want = [t for t, c in zip(truth, codes) if c == code]
        ds = HDF5FlowDataset(out)
        assert ds.names == [t[0] for t in want] and ds.source == f"FlyingChairs {name}"
        for k, (_, a, b, f) in enumerate(want):
            s = ds[k]
            np.testing.assert_array_equal(s["image1"], a)
            np.testing.assert_array_equal(s["image2"], b)
            np.testing.assert_array_equal(s["flow"], f)


def test_chairs_bad_inputs_name_the_file_and_leave_no_output(tmp_path, capsys):
    rng = np.random.default_rng(4)
    data, truth = _make_chairs(tmp_path / "chairs", rng, n=3)
    out = tmp_path / "out" / "chairs.h5"
    os.makedirs(out.parent)
    root = str(tmp_path / "chairs")
    flo = data / "00002_flow.flo"
    good = flo.read_bytes()

    flo.write_bytes(struct.pack("<f", 123.0) + good[4:])
    with pytest.raises(ValueError, match=r"00002_flow\.flo.*magic number must be 202021\.25"):
        chairs_to_hdf5.convert(root, "all", out)
    assert _no_output(out.parent)

    flo.write_bytes(good[:-10])
    assert chairs_to_hdf5.main(["--root", root, "--split", "all", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "00002_flow.flo" in err and "truncated" in err
    assert _no_output(out.parent)

    write_flo(flo, np.zeros((12, 15, 2), np.float32))
    with pytest.raises(ValueError, match=r"sizes differ:.*00002_img1\.ppm.*\(12, 16\).*"
                                         r"00002_flow\.flo.*\(12, 15\)"):
        chairs_to_hdf5.convert(root, "all", out)
    flo.write_bytes(good)

    img2 = data / "00003_img2.ppm"
    os.remove(img2)
    with pytest.raises(FileNotFoundError, match=r"00003_img2\.ppm"):
        chairs_to_hdf5.convert(root, "all", out)
    assert _no_output(out.parent)
    iio.imwrite(img2, truth[2][2])

    split = tmp_path / "split.txt"
    split.write_text("1\n3\n1\n")
    with pytest.raises(ValueError, match=r"split\.txt.*line 2.*got '3'"):
        chairs_to_hdf5.convert(root, "train", out, split_file=str(split))
    split.write_text("1\n2\n")
    with pytest.raises(ValueError, match=r"split\.txt.*2 lines but the root holds 3"):
        chairs_to_hdf5.convert(root, "train", out, split_file=str(split))
    with pytest.raises(FileNotFoundError, match="needs a split file"):
        chairs_to_hdf5.convert(root, "val", out)
    with pytest.raises(FileNotFoundError, match="no NNNNN_img1.ppm files"):
        chairs_to_hdf5.convert(str(tmp_path / "out"), "all", out)
    assert _no_output(out.parent)


def test_make_synthetic_cli_writes_both_files_with_a_progress_bar(tmp_path, capsys):
    out = tmp_path / "fs"
    assert make_synthetic.main(["--out", str(out), "--count", "3", "--size", "24", "32",
                                "--seed", "5", "--classes", "7"]) == 0
    captured = capsys.readouterr()
    assert "FlyingShapes" in captured.err and "3/3" in captured.err     # tqdm's bar
    assert "segmentation.h5" in captured.out
    seg = HDF5SegmentationDataset(out / "segmentation.h5")
    flo = HDF5FlowDataset(out / "flow.h5")
    assert seg.num_classes == 8 and len(seg) == len(flo) == 3
    for i in range(3):
        s = render_scene(5, i, (24, 32), classes=7)
        np.testing.assert_array_equal(seg[i]["label"], s["label"])
        np.testing.assert_array_equal(flo[i]["flow"], s["flow"])
        np.testing.assert_array_equal(flo[i]["image2"], s["image2"])
    assert make_synthetic.main(["--out", str(tmp_path / "bad"), "--count", "2",
                                "--classes", "3"]) == 2
    assert "classes must be in [6, 8]; got 3" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "bad" / "segmentation.h5")


def _grid_cell(grid, row, col, part, parts, H, W, gap=inspect_tool.GAP):
    """The ``part``-th panel of grid cell (row, col) (cells of ``parts`` panels)."""
    cell_w = parts * (W + gap) - gap
    y = row * (H + gap)
    x = col * (cell_w + gap) + part * (W + gap)
    return grid[y:y + H, x:x + W]


def test_inspect_summarises_and_renders_overlays_and_flow(tmp_path, capsys):
    rng = np.random.default_rng(6)
    voc, truth = _make_voc(tmp_path / "voc", rng)
    seg_path = tmp_path / "voc.h5"
    voc_to_hdf5.convert(voc, "train", seg_path)
    png = tmp_path / "seg.png"
    assert inspect_tool.main([str(seg_path), "--png", str(png), "--count", "3",
                              "--columns", "1"]) == 0
    out = capsys.readouterr().out
    assert "kind: segmentation" in out and "count: 3" in out and "gzip" in out
    assert "aeroplane:" in out and "ignore_fraction" in out
    grid = iio.imread(png)
    ds = HDF5SegmentationDataset(seg_path)
    H, W = ds.max_size
    for k in range(3):
        s = ds[k]
        h, w = s["label"].shape
        np.testing.assert_array_equal(_grid_cell(grid, k, 0, 0, 2, H, W)[:h, :w], s["image"])
        np.testing.assert_array_equal(_grid_cell(grid, k, 0, 1, 2, H, W)[:h, :w],
                                      overlay_labels(s["image"], s["label"], ds.palette))

    data, _ = _make_chairs(tmp_path / "chairs", rng, n=2)
    flow_path = tmp_path / "chairs.h5"
    chairs_to_hdf5.convert(str(tmp_path / "chairs"), "all", flow_path)
    png = tmp_path / "flow.png"
    assert inspect_tool.main([str(flow_path), "--png", str(png), "--columns", "2"]) == 0
    out = capsys.readouterr().out
    assert "kind: flow" in out and "flow_max_magnitude" in out
    flo = HDF5FlowDataset(flow_path)
    max_flow = max(np.hypot(*np.moveaxis(flo[k]["flow"], -1, 0)).max() for k in range(2))
    grid = iio.imread(png)
    for k in range(2):
        np.testing.assert_array_equal(_grid_cell(grid, 0, k, 0, 3, 12, 16), flo[k]["image1"])
        np.testing.assert_array_equal(_grid_cell(grid, 0, k, 2, 3, 12, 16),
                                      flow_to_color(flo[k]["flow"], max_flow))

    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 300)
    assert inspect_tool.main([str(junk)]) == 2
    assert "junk.h5" in capsys.readouterr().err
    assert inspect_tool.main([str(tmp_path / "absent.h5")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("name,options", [
    ("make_synthetic", ["--out", "--count", "--size", "--seed", "--classes"]),
    ("voc_to_hdf5", ["--voc-root", "--split", "--out", "--sbd-root"]),
    ("chairs_to_hdf5", ["--root", "--split-file", "--split", "--out"]),
    ("inspect", ["--png"])])
def test_each_tool_runs_as_a_module_with_help(name, options):
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, "-m", f"data_tools.{name}", "--help"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"usage: python -m data_tools.{name}" in done.stdout
    for opt in options:
        assert opt in done.stdout
