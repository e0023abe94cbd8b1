"""Image and label files: RGB images through imageio, palette label PNGs, label colours.

Label PNGs (PASCAL VOC's ``SegmentationClass``) are palette images: each pixel stores a
palette index, which is the class (255: boundary / ignore), and the palette only chooses
how it looks.  They are read as indices, never converted to RGB.
"""
import os
import warnings

import numpy as np
import imageio.v3 as iio
# Pillow is imageio's PNG back end; it is used directly for palette PNGs because
# imageio's writer quantises a palette image instead of keeping the given indices.
from PIL import Image

from ..atomic import atomic_path

__all__ = ["label_palette", "image_size", "read_image", "read_label", "write_png",
           "write_label_png", "overlay_labels"]


def label_palette(n=256):
    """The PASCAL VOC colour map: uint8 (n, 3); colour i spreads the bits of i over RGB
    (bit 0 -> red, 1 -> green, 2 -> blue, from the high bit of each channel down)."""
    i = np.arange(n)
    pal = np.zeros((n, 3), np.int64)
    for bit in range(8):
        for ch in range(3):
            pal[:, ch] |= ((i >> (3 * bit + ch)) & 1) << (7 - bit)
    return pal.astype(np.uint8)


def _check_exists(fn, path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{fn}: no such file {path!r}")
    return path


def image_size(path):
    """(H, W) of an image file, read from its header without decoding the pixels."""
    path = _check_exists("image_size", path)
    try:
        with Image.open(path) as im:
            W, H = im.size
    except Exception as e:
        raise ValueError(f"image_size: cannot read the header of {path!r}: {e}") from e
    return H, W


def read_image(path):
    """An RGB image as uint8 (H, W, 3); grey images are repeated over the channels and an
    alpha channel is dropped."""
    path = _check_exists("read_image", path)
    try:
        with warnings.catch_warnings():
            # on an undecodable file imageio tries every plugin, and some warn on import
            warnings.simplefilter("ignore", DeprecationWarning)
            img = iio.imread(path)
    except Exception as e:  # imageio raises many types for undecodable files
        raise ValueError(f"read_image: cannot decode {path!r}: {e}") from e
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"read_image: {path!r} must be an RGB or grey image; got an array "
                         f"of shape {img.shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"read_image: {path!r} must have 8 bits per channel; got dtype "
                         f"{img.dtype}")
    return np.ascontiguousarray(img[:, :, :3])


def read_label(path):
    """A label image as uint8 (H, W) of indices, from a palette ('P') or grey ('L') PNG."""
    path = _check_exists("read_label", path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in ("P", "L"):
                return np.array(im, dtype=np.uint8)
    except Exception as e:
        raise ValueError(f"read_label: cannot decode {path!r}: {e}") from e
    raise ValueError(f"read_label: {path!r} must be a palette (P) or grey (L) image whose "
                     f"values are class indices; got mode {mode!r}")


def write_png(path, img):
    """Write a uint8 image (H, W) or (H, W, 3) as PNG, atomically."""
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and
                                                           img.shape[2] not in (3, 4)):
        raise ValueError(f"write_png: image must be uint8 (H, W) or (H, W, 3); got "
                         f"{img.dtype} {img.shape}")
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, img, extension=".png")


def write_label_png(path, label, palette=None):
    """Write uint8 labels (H, W) as a palette PNG whose indices are the labels, atomically.

    ``palette``: (n <= 256, 3) uint8 colours; by default the VOC colour map.
    """
    label = np.asarray(label)
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"write_label_png: label must be uint8 (H, W); got {label.dtype} "
                         f"{label.shape}")
    pal = label_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    if pal.ndim != 2 or pal.shape[1] != 3 or len(pal) > 256:
        raise ValueError(f"write_label_png: palette must be (n <= 256, 3); got {pal.shape}")
    im = Image.frombytes("P", (label.shape[1], label.shape[0]),
                         np.ascontiguousarray(label).tobytes())
    im.putpalette(pal.ravel().tolist())
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def overlay_labels(image, label, palette=None, alpha=0.5, ignore_index=255):
    """Blend label colours over an RGB image: uint8 (H, W, 3).  Ignored pixels are drawn
    in the palette colour of ``ignore_index`` too (VOC's cream boundaries)."""
    pal = label_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    if len(pal) < 256:
        short = len(pal)
        pal = np.concatenate([pal, np.zeros((256 - short, 3), np.uint8)])
        if ignore_index is not None and ignore_index >= short:
            pal[ignore_index] = label_palette()[255]
    colours = pal[np.asarray(label, dtype=np.uint8)].astype(np.float32)
    out = (1 - alpha) * np.asarray(image, np.float32) + alpha * colours
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
