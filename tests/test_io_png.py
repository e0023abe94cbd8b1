"""PNG helpers, the VOC palette, and the Middlebury flow colour coding."""
import math

import imageio.v3 as iio
import numpy as np
import pytest

from segnp.io import (color_wheel, flow_to_color, image_size, label_palette, overlay_labels,
                      read_image, read_label, wheel_legend, write_label_png, write_png)


def test_label_palette_against_bit_loop():
    pal = label_palette()
    for i in (0, 1, 2, 3, 7, 15, 21, 128, 200, 255):
        r = g = b = 0
        c = i
        for j in range(8):  # the VOC devkit's bitget loop
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        assert tuple(pal[i]) == (r, g, b), i
    assert tuple(pal[1]) == (128, 0, 0) and tuple(pal[255]) == (224, 224, 192)


def test_label_png_round_trip_keeps_indices(tmp_path):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 21, (9, 11)).astype(np.uint8)
    label[0, :4] = 255
    path = tmp_path / "lab.png"
    write_label_png(path, label)
    np.testing.assert_array_equal(read_label(path), label)
    # it is a palette image whose colours are the VOC map
    rgb = iio.imread(path, mode="RGB")
    np.testing.assert_array_equal(rgb, label_palette()[label])


def test_grey_label_png_is_read_as_values(tmp_path):
    label = np.arange(12, dtype=np.uint8).reshape(3, 4)
    iio.imwrite(tmp_path / "g.png", label)
    np.testing.assert_array_equal(read_label(tmp_path / "g.png"), label)


def test_rgb_label_png_is_rejected_with_its_name(tmp_path):
    iio.imwrite(tmp_path / "rgb_label.png", np.zeros((3, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"rgb_label\.png.*palette.*RGB"):
        read_label(tmp_path / "rgb_label.png")


def test_read_image_and_size(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (7, 5, 3)).astype(np.uint8)
    write_png(tmp_path / "i.png", img)
    np.testing.assert_array_equal(read_image(tmp_path / "i.png"), img)
    assert image_size(tmp_path / "i.png") == (7, 5)
    grey = img[:, :, 0]
    write_png(tmp_path / "g.png", grey)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), np.dstack([grey] * 3))


def test_missing_and_corrupt_images_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.png"):
        read_image(tmp_path / "gone.png")
    with pytest.raises(FileNotFoundError, match="gone.png"):
        read_label(tmp_path / "gone.png")
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"junk\.png"):
        read_image(tmp_path / "junk.png")
    with pytest.raises(ValueError, match=r"junk\.png"):
        read_label(tmp_path / "junk.png")


def test_overlay_blends_palette_colours():
    image = np.full((2, 2, 3), 100, np.uint8)
    label = np.array([[0, 1], [2, 255]], np.uint8)
    out = overlay_labels(image, label, alpha=0.5)
    expect = np.rint(0.5 * 100 + 0.5 * label_palette()[label].astype(float))
    np.testing.assert_array_equal(out, expect)


def _naive_flow_color(u, v, max_flow):
    """One pixel, straight from the Middlebury description."""
    steps = [15, 6, 4, 11, 13, 6]
    wheel = []
    keys = [(255, 0, 0), (255, 255, 0), (0, 255, 0), (0, 255, 255), (0, 0, 255),
            (255, 0, 255)]
    for k, n in enumerate(steps):
        a, b = keys[k], keys[(k + 1) % 6]
        for i in range(n):
            wheel.append([math.floor(a[c] + (b[c] - a[c]) * i / n) for c in range(3)])
    ncols = len(wheel)
    rad = math.hypot(u, v) / max_flow
    fk = (math.atan2(-v, -u) / math.pi + 1) / 2 * (ncols - 1)
    k0 = int(math.floor(fk))
    k1 = (k0 + 1) % ncols
    f = fk - k0
    out = []
    for c in range(3):
        col = ((1 - f) * wheel[k0][c] + f * wheel[k1][c]) / 255
        col = 1 - rad * (1 - col) if rad <= 1 else col * 0.75
        out.append(math.floor(255 * col))
    return out


def test_flow_color_against_naive_loop():
    rng = np.random.default_rng(2)
    flow = rng.uniform(-5, 5, (6, 7, 2))
    flow[0, 0] = (0, 0)
    flow[0, 1] = (-3, 0)
    got = flow_to_color(flow, max_flow=4.0)
    want = np.array([[_naive_flow_color(u, v, 4.0) for u, v in row] for row in flow])
    np.testing.assert_array_equal(got, want)
    # default scale: the largest magnitude
    big = np.hypot(flow[..., 0], flow[..., 1]).max()
    want = np.array([[_naive_flow_color(u, v, big) for u, v in row] for row in flow])
    np.testing.assert_array_equal(flow_to_color(flow), want)


def test_flow_color_landmarks():
    wheel = color_wheel()
    assert wheel.shape == (55, 3)
    zero = flow_to_color(np.zeros((2, 2, 2)))
    assert (zero == 255).all()                      # no motion: white
    flow = np.array([[[1.0, 0.0], [0.0, 1.0], [np.nan, 0.0], [2e9, 0.0]]])
    out = flow_to_color(flow, max_flow=1.0)
    assert tuple(out[0, 0]) == (255, 0, 0)          # rightwards: red
    assert out[0, 1, 2] == 0 and out[0, 1, 0] > 200  # downwards: yellow-orange
    assert (out[0, 2:] == 0).all()                  # unknown flow: black
    legend = wheel_legend(33)
    assert legend.shape == (33, 33, 3) and (legend[16, 16] == 255).all()


def test_flow_color_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"flow_to_color: flow must be \(H, W, 2\)"):
        flow_to_color(np.zeros((3, 3)))
