"""FlyingShapes: a generated stand-in for PASCAL VOC and FlyingChairs that needs no
download (the default data of the examples and tests).

Each scene is a textured background under 4-7 textured objects in a random depth order.
An object's class fixes its shape and its texture family (``shapes.py``); its size,
aspect, orientation, texture scale and phase vary.  All colours of a scene come from one
small palette shared by the background and every object, and each region blends two of
them, so colour statistics of the classes and the background overlap: colour alone
cannot segment the image, texture and shape can (the point of the paper's Fig. 3).

The second frame moves every object and the background by its own random affine motion
M (as FlyingChairs does), so the exact flow of a frame-1 pixel x on layer j is
M_j(x) - x, with image1(y, x) ~ image2(y + v, x + u).  A frame-1 pixel is occluded when
its moved position is covered by another layer in frame 2, or leaves the image.

Scene i of a seed is drawn from ``default_rng([seed, i])``: deterministic, and the same
whatever the count.
"""
import collections
import os

import numpy as np

from .hdf5 import FlowWriter, SegmentationWriter, read_header
from .shapes import BACKGROUND_TEXTURE, SHAPES, TEXTURES, inside, texture

__all__ = ["FLYINGSHAPES_CLASSES", "GENERATOR_VERSION", "SyntheticPaths", "render_scene",
           "generate", "ensure_synthetic"]

FLYINGSHAPES_CLASSES = ("background",) + SHAPES
GENERATOR_VERSION = 1
MIN_CLASSES = 6

SyntheticPaths = collections.namedtuple("SyntheticPaths", ["segmentation", "flow"])


def _affine(rng, centre, max_shift, max_turn_deg, max_zoom, max_stretch):
    """A random affine map (2, 3) about ``centre``: turn, zoom, small stretch and shear,
    then a shift of length at most ``max_shift``."""
    turn = np.deg2rad(rng.uniform(-max_turn_deg, max_turn_deg))
    zoom = np.exp(rng.uniform(-max_zoom, max_zoom))
    e, shear = rng.uniform(-max_stretch, max_stretch, 2)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    A = rot @ np.array([[zoom * (1 + e), shear], [0.0, zoom * (1 - e)]])
    r, phi = max_shift * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
    shift = r * np.array([np.cos(phi), np.sin(phi)])
    centre = np.asarray(centre, float)
    return np.concatenate([A, (centre + shift - A @ centre)[:, None]], axis=1)


def _compose(P, Q):
    """The affine map x -> P(Q(x)), both (2, 3)."""
    return np.concatenate([P[:, :2] @ Q[:, :2], (P[:, :2] @ Q[:, 2] + P[:, 2])[:, None]], 1)


def _invert(M):
    Ai = np.linalg.inv(M[:, :2])
    return np.concatenate([Ai, (-Ai @ M[:, 2])[:, None]], axis=1)


Layer = collections.namedtuple(
    "Layer", "cls shape texture frames motion radius aspect period params colours")


def _scene(rng, H, W, classes):
    """The layers of one scene, background first.  ``frames[f]`` maps image coordinates
    of frame f to the layer's own pixel coordinates."""
    S = min(H, W)
    palette = rng.uniform(20, 235, (4, 3))

    def colours():
        return palette[rng.choice(len(palette), 2, replace=False)]

    def period():
        # fine enough to be texture at 128x128, coarse enough to resample well
        return rng.uniform(7.0, 12.0) * max(1.0, S / 128)

    centre = np.array([(W - 1) / 2, (H - 1) / 2])
    to_bg = np.concatenate([np.eye(2), -centre[:, None]], axis=1)
    motion = _affine(rng, centre, 0.03 * S, 3.0, 0.04, 0.02)
    layers = [Layer(0, None, BACKGROUND_TEXTURE, (to_bg, _compose(to_bg, _invert(motion))),
                    motion, None, None, period(), rng.random(4), colours())]
    for _ in range(int(rng.integers(4, 8))):
        cls = int(rng.integers(1, classes + 1))
        c = np.array([rng.uniform(0.1, 0.9) * W, rng.uniform(0.1, 0.9) * H])
        turn = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
        to_obj = np.concatenate([rot, (-rot @ c)[:, None]], axis=1)
        motion = _affine(rng, c, 0.06 * S, 10.0, 0.08, 0.03)
        layers.append(Layer(cls, SHAPES[cls - 1], TEXTURES[cls - 1],
                            (to_obj, _compose(to_obj, _invert(motion))), motion,
                            rng.uniform(0.13, 0.27) * S, np.exp(rng.uniform(-0.2, 0.2, 2)),
                            period(), rng.random(4), colours()))
    return layers


def _local(layer, frame, x, y):
    T = layer.frames[frame]
    return T[0, 0] * x + T[0, 1] * y + T[0, 2], T[1, 0] * x + T[1, 1] * y + T[1, 2]


def _top_layer(layers, frame, x, y):
    """Index of the front-most layer at each point (0: background)."""
    top = np.zeros(x.shape, np.int64)
    for j in range(1, len(layers)):
        layer = layers[j]
        u, v = _local(layer, frame, x, y)
        ru, rv = layer.radius * layer.aspect
        top[inside(layer.shape, u / ru, v / rv)] = j
    return top


def _render(layers, frame, x, y):
    """RGB float (M, 3) and front layer (M,) at the points (x, y) of ``frame``."""
    top = _top_layer(layers, frame, x, y)
    rgb = np.empty(x.shape + (3,))
    for j, layer in enumerate(layers):
        sel = top == j
        if sel.any():
            u, v = _local(layer, frame, x[sel], y[sel])
            t = texture(layer.texture, u, v, layer.period, layer.params)[:, None]
            c0, c1 = layer.colours
            rgb[sel] = c0 + (c1 - c0) * t
    return rgb, top


def _to_uint8(rgb, H, W):
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(H, W, 3)


def render_scene(seed, index, size, classes=MIN_CLASSES):
    """Scene ``index`` of ``seed`` at ``size`` (H, W), as a dict:

    - image1, image2: uint8 (H, W, 3), the two frames;
    - label: uint8 (H, W), class of the front-most object in frame 1 (0: background);
    - instances: uint8 (H, W), its depth rank (0: background, 1.. objects back to front);
    - flow: float32 (H, W, 2), exact (u, v) of frame 1 into frame 2;
    - occluded: bool (H, W), frame-1 pixels hidden or out of view in frame 2.
    """
    H, W = (int(s) for s in size)
    if H < 8 or W < 8:
        raise ValueError(f"render_scene: size must be at least 8x8; got {size}")
    if not MIN_CLASSES <= classes <= len(SHAPES):
        raise ValueError(f"render_scene: classes must be in [{MIN_CLASSES}, {len(SHAPES)}]; "
                         f"got {classes}")
    layers = _scene(np.random.default_rng([int(seed), int(index)]), H, W, classes)
    y, x = np.mgrid[0:H, 0:W].reshape(2, -1).astype(np.float64)
    rgb1, top1 = _render(layers, 0, x, y)
    rgb2, _ = _render(layers, 1, x, y)

    motions = np.stack([layer.motion for layer in layers])[top1]     # (M, 2, 3)
    x2 = motions[:, 0, 0] * x + motions[:, 0, 1] * y + motions[:, 0, 2]
    y2 = motions[:, 1, 0] * x + motions[:, 1, 1] * y + motions[:, 1, 2]
    top2 = _top_layer(layers, 1, x2, y2)
    out_of_view = (x2 < -0.5) | (x2 > W - 0.5) | (y2 < -0.5) | (y2 > H - 0.5)

    classes_of = np.array([layer.cls for layer in layers], np.uint8)
    return {
        "image1": _to_uint8(rgb1, H, W),
        "image2": _to_uint8(rgb2, H, W),
        "label": classes_of[top1].reshape(H, W),
        "instances": top1.astype(np.uint8).reshape(H, W),
        "flow": np.stack([x2 - x, y2 - y], axis=-1).astype(np.float32).reshape(H, W, 2),
        "occluded": ((top2 != top1) | out_of_view).reshape(H, W),
    }


def _attrs(count, size, seed, classes):
    return {"generator": "FlyingShapes", "generator_version": GENERATOR_VERSION,
            "seed": int(seed), "count": int(count), "size": np.asarray(size, np.int64),
            "num_object_classes": int(classes)}


def generate(out_dir, count, size, seed=0, classes=MIN_CLASSES, progress=False):
    """Write ``count`` scenes to ``out_dir/segmentation.h5`` (frame 1, labels, instances)
    and ``out_dir/flow.h5`` (both frames, flow, occlusion); returns their SyntheticPaths.

    Both files are written atomically.  ``progress``: show a tqdm progress bar.
    """
    count, (H, W) = int(count), (int(s) for s in size)
    if count < 1:
        raise ValueError(f"generate: count must be >= 1; got {count}")
    render_scene(seed, 0, (H, W), classes)   # checks the arguments before any file opens
    paths = SyntheticPaths(os.path.join(out_dir, "segmentation.h5"),
                           os.path.join(out_dir, "flow.h5"))
    attrs = _attrs(count, (H, W), seed, classes)
    names = FLYINGSHAPES_CLASSES[:classes + 1]
    indices = range(count)
    if progress:
        from tqdm import tqdm
        indices = tqdm(indices, desc="FlyingShapes", unit="scene")
    with SegmentationWriter(paths.segmentation, count, (H, W), names, source="FlyingShapes",
                            attrs=attrs, instances=True) as seg, \
            FlowWriter(paths.flow, count, (H, W), source="FlyingShapes", attrs=attrs,
                       occlusion=True) as flo:
        for i in indices:
            s = render_scene(seed, i, (H, W), classes)
            seg.add(s["image1"], s["label"], instances=s["instances"])
            flo.add(s["image1"], s["image2"], s["flow"], occluded=s["occluded"])
    return paths


def _is_current(path, kind, attrs):
    try:
        got = read_header(path, kind, "ensure_synthetic")["attrs"]
    except (OSError, ValueError):
        return False
    return all(np.array_equal(np.asarray(got.get(k)), np.asarray(v)) for k, v in
               attrs.items())


def ensure_synthetic(cache_dir, count, size, seed=0, classes=MIN_CLASSES, progress=False):
    """FlyingShapes files for these settings under ``cache_dir``, generated on first use.

    Each setting has its own subfolder; files that are missing, unreadable, or made by
    another generator version are generated again.  Returns SyntheticPaths.
    """
    H, W = (int(s) for s in size)
    folder = os.path.join(os.fspath(cache_dir), f"flyingshapes-v{GENERATOR_VERSION}-"
                                                f"n{int(count)}-{H}x{W}-k{classes}-s{seed}")
    paths = SyntheticPaths(os.path.join(folder, "segmentation.h5"),
                           os.path.join(folder, "flow.h5"))
    attrs = _attrs(count, (H, W), seed, classes)
    if _is_current(paths.segmentation, "segmentation", attrs) and \
            _is_current(paths.flow, "flow", attrs):
        return paths
    return generate(folder, count, (H, W), seed, classes, progress)
