"""Augmentations: resizing against naive loops, and every transform keeping images,
labels and flow consistent (checked by backward-warping with the transformed flow)."""
import numpy as np
import pytest
from scipy import ndimage

from segnp.data import (Compose, RandomCrop, RandomHorizontalFlip, RandomScale, SubtractMean,
                        render_scene, resize_bilinear, resize_nearest)


def _naive_bilinear(a, oh, ow):
    h, w = a.shape[:2]
    out = np.zeros((oh, ow) + a.shape[2:])
    for i in range(oh):
        for j in range(ow):
            sy = min(max((i + 0.5) * h / oh - 0.5, 0), h - 1)
            sx = min(max((j + 0.5) * w / ow - 0.5, 0), w - 1)
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            fy, fx = sy - y0, sx - x0
            out[i, j] = ((1 - fy) * (1 - fx) * a[y0, x0] + (1 - fy) * fx * a[y0, x1] +
                         fy * (1 - fx) * a[y1, x0] + fy * fx * a[y1, x1])
    return out


def _naive_nearest(a, oh, ow):
    h, w = a.shape[:2]
    out = np.zeros((oh, ow) + a.shape[2:], a.dtype)
    for i in range(oh):
        for j in range(ow):
            out[i, j] = a[min(int((i + 0.5) * h / oh), h - 1), min(int((j + 0.5) * w / ow),
                                                                     w - 1)]
    return out


@pytest.mark.parametrize("src,dst", [((5, 7), (9, 4)), ((8, 8), (3, 13)), ((1, 6), (4, 6))])
def test_resize_against_naive_loops(src, dst):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(src + (3,))
    np.testing.assert_allclose(resize_bilinear(a, *dst), _naive_bilinear(a, *dst),
                               rtol=1e-5, atol=1e-5)
    lab = rng.integers(0, 9, src).astype(np.uint8)
    np.testing.assert_array_equal(resize_nearest(lab, *dst), _naive_nearest(lab, *dst))
    np.testing.assert_allclose(resize_bilinear(a[..., 0], *src), a[..., 0], rtol=1e-6)


def _flow_sample(seed=3, size=(64, 72)):
    s = render_scene(seed, 0, size)
    return {"image1": s["image1"], "image2": s["image2"], "flow": s["flow"],
            "occluded": s["occluded"].astype(np.uint8)}


def _warp_error(sample):
    """Mean |image1 - image2 warped back by the flow| over visible pixels."""
    H, W = sample["flow"].shape[:2]
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    coords = [y + sample["flow"][..., 1], x + sample["flow"][..., 0]]
    img2 = sample["image2"].astype(np.float64)
    warped = np.stack([ndimage.map_coordinates(img2[..., c], coords, order=1, mode="nearest")
                       for c in range(3)], -1)
    err = np.abs(warped - sample["image1"]).mean(-1)
    visible = ~ndimage.binary_dilation(sample["occluded"].astype(bool), iterations=2)
    return err[visible].mean()


def test_flip_moves_everything_together_and_negates_u():
    seg = {"image": np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3),
           "label": np.array([[0, 1, 2], [3, 4, 255]], np.uint8)}
    out = RandomHorizontalFlip(p=1.0)(seg, np.random.default_rng(0))
    np.testing.assert_array_equal(out["image"], seg["image"][:, ::-1])
    np.testing.assert_array_equal(out["label"], [[2, 1, 0], [255, 4, 3]])
    kept = RandomHorizontalFlip(p=0.0)(seg, np.random.default_rng(0))
    np.testing.assert_array_equal(kept["label"], seg["label"])

    s = _flow_sample()
    f = RandomHorizontalFlip(p=1.0)(s, np.random.default_rng(0))
    np.testing.assert_array_equal(f["flow"][..., 0], -s["flow"][:, ::-1, 0])
    np.testing.assert_array_equal(f["flow"][..., 1], s["flow"][:, ::-1, 1])
    base = _warp_error(s)
    assert _warp_error(f) < base + 0.5
    # without negating u the flipped pair no longer matches
    wrong = dict(f, flow=s["flow"][:, ::-1])
    assert _warp_error(wrong) > 3 * base


def test_scale_keeps_flow_consistent_and_labels_exact():
    s = _flow_sample()
    base = _warp_error(s)
    for lo in (0.6, 1.4):
        out = RandomScale(lo, lo)(s, np.random.default_rng(0))
        h, w = out["image1"].shape[:2]
        assert (h, w) == (round(64 * lo), round(72 * lo))
        assert out["image1"].dtype == np.uint8 and out["occluded"].dtype == np.uint8
        np.testing.assert_allclose(out["flow"][h // 2, w // 2],
                                   resize_bilinear(s["flow"], h, w)[h // 2, w // 2] *
                                   [w / 72, h / 64], rtol=1e-5)
        assert _warp_error(out) < base + 2.5
    seg = render_scene(4, 1, (40, 40))
    out = RandomScale(0.5, 2.0)({"image": seg["image1"], "label": seg["label"]},
                                np.random.default_rng(1))
    assert set(np.unique(out["label"])) <= set(np.unique(seg["label"]))


def test_crop_pads_labels_with_ignore_and_images_with_fill():
    rng = np.random.default_rng(5)
    seg = {"image": rng.integers(0, 256, (3, 4, 3)).astype(np.uint8),
           "label": rng.integers(0, 5, (3, 4)).astype(np.uint8)}
    out = RandomCrop((6, 5), fill=7)(seg, rng)
    assert out["image"].shape == (6, 5, 3) and out["label"].shape == (6, 5)
    np.testing.assert_array_equal(out["label"][:3, :4], seg["label"])
    assert (out["label"][3:] == 255).all() and (out["label"][:, 4] == 255).all()
    assert (out["image"][3:] == 7).all()
    # a crop inside the image is a window of it, with labels on their pixels
    big = {"image": rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)}
    big["label"] = big["image"][..., 0].copy()
    win = RandomCrop(8)(big, rng)
    np.testing.assert_array_equal(win["label"], win["image"][..., 0])
    hits = [np.argwhere((big["image"][..., 0] == win["label"][0, 0]))]
    assert len(hits[0]) >= 1


def test_crop_of_flow_is_consistent_and_refuses_padding():
    s = _flow_sample()
    out = RandomCrop((40, 48))(s, np.random.default_rng(2))
    assert out["flow"].shape == (40, 48, 2)
    assert _warp_error(out) < _warp_error(s) + 1.0
    with pytest.raises(ValueError, match="flow samples cannot be padded"):
        RandomCrop((80, 80))(s, np.random.default_rng(0))


def test_subtract_mean_and_compose_are_deterministic():
    s = _flow_sample()
    mean = np.array([120.0, 110.0, 100.0])
    out = SubtractMean(mean, scale=0.5)(s, None)
    assert out["image1"].dtype == np.float32
    np.testing.assert_allclose(out["image2"], (s["image2"] - mean) * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(out["flow"], s["flow"])
    t = Compose([RandomScale(0.8, 1.2), SubtractMean(mean), RandomCrop(32),
                 RandomHorizontalFlip()])
    a = t(s, np.random.default_rng(9))
    b = t(s, np.random.default_rng(9))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(ValueError, match=r"SubtractMean: mean must be RGB \(3,\)"):
        SubtractMean([1, 2])
    with pytest.raises(ValueError, match="RandomScale: need 0 < min_scale"):
        RandomScale(2, 1)
