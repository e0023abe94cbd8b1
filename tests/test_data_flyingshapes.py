"""FlyingShapes: determinism, exact flow, occlusion, labels, colour overlap, files."""
import os

import numpy as np
import pytest
from scipy import ndimage

from segnp.data import (FLYINGSHAPES_CLASSES, HDF5FlowDataset, HDF5SegmentationDataset,
                        ensure_synthetic, generate, render_scene)
from segnp.data import flyingshapes as fs
from segnp.data.shapes import inside, texture

KEYS = ("image1", "image2", "label", "instances", "flow", "occluded")


def test_same_seed_same_scene_and_independent_of_count():
    a = render_scene(3, 5, (40, 56))
    b = render_scene(3, 5, (40, 56))
    for k in KEYS:
        np.testing.assert_array_equal(a[k], b[k])
    c = render_scene(4, 5, (40, 56))
    assert not np.array_equal(a["image1"], c["image1"])
    d = render_scene(3, 6, (40, 56))
    assert not np.array_equal(a["image1"], d["image1"])


def test_shapes_and_dtypes():
    s = render_scene(0, 0, (33, 47), classes=8)
    assert s["image1"].shape == s["image2"].shape == (33, 47, 3)
    assert s["image1"].dtype == np.uint8 and s["label"].dtype == np.uint8
    assert s["flow"].shape == (33, 47, 2) and s["flow"].dtype == np.float32
    assert s["occluded"].dtype == bool and s["label"].max() <= 8
    with pytest.raises(ValueError, match=r"classes must be in \[6, 8\]"):
        render_scene(0, 0, (32, 32), classes=5)
    with pytest.raises(ValueError, match="at least 8x8"):
        render_scene(0, 0, (4, 32))


def _backward_warp(image2, flow):
    """image2 sampled at (y + v, x + u): bilinear, per channel."""
    H, W = flow.shape[:2]
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    coords = [y + flow[..., 1], x + flow[..., 0]]
    return np.stack([ndimage.map_coordinates(image2[..., c].astype(np.float64), coords,
                                             order=1, mode="nearest") for c in range(3)], -1)


@pytest.mark.parametrize("index", range(6))
def test_backward_warp_by_flow_reproduces_frame1(index):
    s = render_scene(11, index, (96, 96))
    warped = _backward_warp(s["image2"], s["flow"])
    err = np.abs(warped - s["image1"]).mean(-1)
    still = np.abs(s["image2"].astype(float) - s["image1"]).mean(-1)
    # where the 2x2 bilinear footprint stays on one layer, only texture resampling and
    # rounding remain; object edges are hard, so pixels next to an occlusion edge blend
    visible = ~ndimage.binary_dilation(s["occluded"], iterations=1)
    visible &= ~ndimage.binary_dilation(_edges(s["instances"]), iterations=2)
    assert visible.mean() > 0.5
    assert err[visible].mean() < 1.6, err[visible].mean()
    assert np.percentile(err[visible], 99) < 10
    assert err[visible].mean() < 0.2 * still[visible].mean()
    # half a pixel off is clearly worse: the flow is exact, not merely close
    off = np.abs(_backward_warp(s["image2"], s["flow"] + 0.5) - s["image1"]).mean(-1)
    assert err[visible].mean() < 0.5 * off[visible].mean()
    # occluded pixels really are badly reproduced on average
    if s["occluded"].sum() > 50:
        assert err[s["occluded"]].mean() > 2 * err[visible].mean()


def _edges(inst):
    e = np.zeros(inst.shape, bool)
    e[:, 1:] |= inst[:, 1:] != inst[:, :-1]
    e[1:] |= inst[1:] != inst[:-1]
    return e


def test_flow_of_background_and_objects_is_their_affine_motion():
    rng = np.random.default_rng([5, 2])
    layers = fs._scene(rng, 40, 48, 6)
    s = render_scene(5, 2, (40, 48))
    for y, x in [(0, 0), (13, 17), (39, 47), (20, 5)]:
        M = layers[s["instances"][y, x]].motion
        want = M[:, :2] @ [x, y] + M[:, 2] - [x, y]
        np.testing.assert_allclose(s["flow"][y, x], want, rtol=1e-5, atol=1e-4)


def test_labels_match_a_naive_painter():
    """Per pixel, walk the layers back to front (the painter's algorithm) with scalar
    arithmetic; the front layer gives instance, class, colour, flow and occlusion."""
    H, W, seed, index = 20, 24, 9, 1
    s = render_scene(seed, index, (H, W))
    layers = fs._scene(np.random.default_rng([seed, index]), H, W, 6)

    def local(layer, frame, x, y):
        T = layer.frames[frame]
        return (T[0, 0] * x + T[0, 1] * y + T[0, 2], T[1, 0] * x + T[1, 1] * y + T[1, 2])

    def front(frame, x, y):
        top = 0
        for j in range(1, len(layers)):
            u, v = local(layers[j], frame, x, y)
            ru = layers[j].radius * layers[j].aspect[0]
            rv = layers[j].radius * layers[j].aspect[1]
            if inside(layers[j].shape, np.array(u / ru), np.array(v / rv)):
                top = j
        return top

    for y in range(H):
        for x in range(W):
            j = front(0, x, y)
            assert s["instances"][y, x] == j and s["label"][y, x] == layers[j].cls
            lay = layers[j]
            u, v = local(lay, 0, x, y)
            t = texture(lay.texture, np.array([u]), np.array([v]), lay.period, lay.params)
            rgb = lay.colours[0] + (lay.colours[1] - lay.colours[0]) * t[0]
            np.testing.assert_array_equal(s["image1"][y, x], np.clip(np.rint(rgb), 0, 255))
            x2 = lay.motion[0, 0] * x + lay.motion[0, 1] * y + lay.motion[0, 2]
            y2 = lay.motion[1, 0] * x + lay.motion[1, 1] * y + lay.motion[1, 2]
            gone = not (-0.5 <= x2 <= W - 0.5 and -0.5 <= y2 <= H - 0.5)
            assert s["occluded"][y, x] == (gone or front(1, x2, y2) != j)


def test_every_class_appears_with_its_shape_texture_pair():
    counts = np.zeros(9, np.int64)
    for i in range(40):
        counts += np.bincount(render_scene(2, i, (32, 32), classes=8)["label"].ravel(),
                              minlength=9)
    assert (counts > 0).all()
    fractions = counts[1:] / counts[1:].sum()
    assert fractions.min() > 0.05       # shapes are area-balanced: no class is rare
    assert FLYINGSHAPES_CLASSES[0] == "background" and len(FLYINGSHAPES_CLASSES) == 9


def test_colour_alone_cannot_segment():
    """A per-pixel colour classifier (the Bayes rule on a 8x8x8 colour histogram, fit on
    some scenes, scored on others) does no better than always saying background, and
    the classes' mean colours differ by less than a third of a channel's spread (~62)."""
    scenes = [render_scene(21, i, (48, 48)) for i in range(60)]
    train, test = scenes[:40], scenes[40:]

    def bins(s):
        q = (s["image1"] // 32).astype(np.int64).reshape(-1, 3)
        return q @ [64, 8, 1]

    hist = np.zeros((512, 7))
    for s in train:
        np.add.at(hist, (bins(s), s["label"].ravel()), 1)
    rule = hist.argmax(1)
    acc = np.mean([(rule[bins(s)] == s["label"].ravel()).mean() for s in test])
    majority = np.mean([(s["label"] == 0).mean() for s in test])
    assert acc < majority + 0.05, (acc, majority)
    scenes = [render_scene(22, i, (24, 24)) for i in range(400)]
    means = np.array([np.concatenate([s["image1"][s["label"] == c] for s in scenes]).mean(0)
                      for c in range(7)])
    assert np.ptp(means, axis=0).max() < 20, means


def test_generate_writes_what_render_scene_draws(tmp_path):
    paths = generate(tmp_path / "fs", 3, (24, 32), seed=7)
    seg = HDF5SegmentationDataset(paths.segmentation, fields=("images", "labels",
                                                              "instances"))
    flo = HDF5FlowDataset(paths.flow, fields=("image1", "image2", "flow", "occluded"))
    assert seg.classes == list(FLYINGSHAPES_CLASSES[:7]) and seg.source == "FlyingShapes"
    for i in range(3):
        s = render_scene(7, i, (24, 32))
        np.testing.assert_array_equal(seg[i]["image"], s["image1"])
        np.testing.assert_array_equal(seg[i]["label"], s["label"])
        np.testing.assert_array_equal(seg[i]["instances"], s["instances"])
        for k in ("image1", "image2", "flow", "occluded"):
            np.testing.assert_array_equal(flo[i][k], s[k])
    assert int(seg.attrs["seed"]) == 7 and list(seg.attrs["size"]) == [24, 32]


def test_ensure_synthetic_caches_and_repairs(tmp_path):
    paths = ensure_synthetic(tmp_path, 2, (16, 16), seed=1)
    stamp = os.stat(paths.flow).st_mtime_ns
    again = ensure_synthetic(tmp_path, 2, (16, 16), seed=1)
    assert again == paths and os.stat(paths.flow).st_mtime_ns == stamp
    other = ensure_synthetic(tmp_path, 2, (16, 16), seed=2)
    assert other.flow != paths.flow
    with open(paths.segmentation, "wb") as f:
        f.write(b"garbage")
    ensure_synthetic(tmp_path, 2, (16, 16), seed=1)
    assert len(HDF5SegmentationDataset(paths.segmentation)) == 2
