"""Augmentations of one sample: a dict of (h, w, ...) arrays with the keys of the datasets
('image', 'label' for segmentation; 'image1', 'image2', 'flow' and maybe 'occluded' for
flow).  Every transform is called as ``t(sample, rng)`` with a NumPy Generator, returns a
new dict, and moves all arrays of a sample together, so labels stay on their pixels and
flow stays consistent with its two frames.
"""
import numpy as np

from .hdf5 import IGNORE_LABEL

__all__ = ["Compose", "RandomScale", "RandomCrop", "RandomHorizontalFlip", "SubtractMean",
           "resize_bilinear", "resize_nearest"]

IMAGE_KEYS = ("image", "image1", "image2")
# resampled by nearest neighbour: class indices and masks must not be blended
INDEX_KEYS = ("label", "instances", "occluded")
# what padding holds: nothing to learn from (ignore), or "not visible"
PAD_FILL = {"label": IGNORE_LABEL, "instances": IGNORE_LABEL, "occluded": 1}


def _source_coords(n_out, n_in):
    """Source coordinates of output pixel centres (pixel i covers [i, i + 1))."""
    return (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5


def resize_bilinear(a, oh, ow):
    """Bilinear resize of (h, w) or (h, w, C) to (oh, ow[, C]); float32, edges clamped.

    Separable: rows are blended first, then columns.  Both passes gather along the
    leading axis (the columns through a transposed view), where whole rows move at once,
    and blend in place as ``a0 + f (a1 - a0)`` to keep temporaries to two.
    """
    a = np.asarray(a)
    h, w = a.shape[:2]
    if (oh, ow) == (h, w):
        return a.astype(np.float32)

    def axis_weights(n_out, n_in):
        src = np.clip(_source_coords(n_out, n_in), 0, n_in - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(np.float32)

    def blend(src, i0, i1, f):
        # gathering before the cast keeps uint8 inputs small until they are blended
        lo = src[i0].astype(np.float32, copy=False)
        hi = src[i1].astype(np.float32, copy=False)
        hi -= lo
        hi *= f.reshape((-1,) + (1,) * (src.ndim - 1))
        lo += hi
        return lo

    y0, y1, fy = axis_weights(oh, h)
    x0, x1, fx = axis_weights(ow, w)
    rows = blend(a, y0, y1, fy)                                 # (oh, w[, C])
    return blend(rows.swapaxes(0, 1), x0, x1, fx).swapaxes(0, 1)


def resize_nearest(a, oh, ow):
    """Nearest-neighbour resize of (h, w[, C]) to (oh, ow[, C]), same dtype."""
    a = np.asarray(a)
    h, w = a.shape[:2]
    yi = np.minimum(np.floor((np.arange(oh) + 0.5) * (h / oh)).astype(np.int64), h - 1)
    xi = np.minimum(np.floor((np.arange(ow) + 0.5) * (w / ow)).astype(np.int64), w - 1)
    return a[yi[:, None], xi[None, :]]


def _like(resized, original):
    """Back to the original integer dtype (uint8 images stay uint8); ``resized`` is a
    fresh float array, rounded and clipped in place."""
    if original.dtype.kind in "iu":
        info = np.iinfo(original.dtype)
        np.rint(resized, out=resized)
        np.clip(resized, info.min, info.max, out=resized)
        return resized.astype(original.dtype)
    return resized.astype(original.dtype, copy=False)


def _size(sample):
    return next(iter(sample.values())).shape[:2]


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, sample, rng):
        for t in self.transforms:
            sample = t(sample, rng)
        return sample

    def __repr__(self):
        return f"Compose({self.transforms!r})"


class RandomScale:
    """Scale jitter: resize by a factor drawn uniformly from [min_scale, max_scale].

    Images and flow are resampled bilinearly, labels and masks by nearest neighbour;
    flow vectors are multiplied by the same factors as the axes they lie along.
    """

    def __init__(self, min_scale=0.5, max_scale=1.5):
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"RandomScale: need 0 < min_scale <= max_scale; got "
                             f"{min_scale}, {max_scale}")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)

    def __call__(self, sample, rng):
        s = rng.uniform(self.min_scale, self.max_scale)
        h, w = _size(sample)
        oh, ow = max(1, int(round(h * s))), max(1, int(round(w * s)))
        out = {}
        for k, a in sample.items():
            if k in INDEX_KEYS:
                out[k] = resize_nearest(a, oh, ow)
            else:
                r = resize_bilinear(a, oh, ow)
                if k == "flow":
                    r *= np.array([ow / w, oh / h], np.float32)
                out[k] = _like(r, a)
        return out

    def __repr__(self):
        return f"RandomScale({self.min_scale}, {self.max_scale})"


class RandomCrop:
    """A random (CH, CW) window.  Smaller samples are first padded at the bottom and
    right: labels with ``ignore_label``, images with ``fill`` (0; after SubtractMean that
    is the mean colour).  Flow has no ignore value, so a flow sample smaller than the crop
    is an error."""

    def __init__(self, size, ignore_label=IGNORE_LABEL, fill=0):
        size = (size, size) if np.isscalar(size) else tuple(size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"RandomCrop: size must be a positive int or (CH, CW); got "
                             f"{size}")
        self.size = (int(size[0]), int(size[1]))
        self.ignore_label, self.fill = ignore_label, fill

    def __call__(self, sample, rng):
        CH, CW = self.size
        h, w = _size(sample)
        if (h < CH or w < CW) and "flow" in sample:
            raise ValueError(f"RandomCrop: flow samples cannot be padded (flow has no "
                             f"ignore value); crop {self.size} is larger than the sample "
                             f"({h}, {w}); crop smaller or scale up first")
        ph, pw = max(CH - h, 0), max(CW - w, 0)
        y = int(rng.integers(0, h + ph - CH + 1))
        x = int(rng.integers(0, w + pw - CW + 1))
        out = {}
        for k, a in sample.items():
            if ph or pw:
                fill = (self.ignore_label if k == "label" else PAD_FILL[k]
                        if k in INDEX_KEYS else self.fill)
                pad = ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2)
                a = np.pad(a, pad, constant_values=fill)
            out[k] = a[y:y + CH, x:x + CW]
        return out

    def __repr__(self):
        return f"RandomCrop({self.size})"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``; the horizontal flow u changes sign."""

    def __init__(self, p=0.5):
        self.p = float(p)

    def __call__(self, sample, rng):
        if rng.random() >= self.p:
            return dict(sample)
        out = {k: a[:, ::-1] for k, a in sample.items()}
        if "flow" in out:
            out["flow"] = out["flow"] * np.array([-1, 1], out["flow"].dtype)
        return out

    def __repr__(self):
        return f"RandomHorizontalFlip({self.p})"


class SubtractMean:
    """Images to float32 ``(image - mean) * scale``; other keys unchanged.

    ``mean``: RGB (3,), e.g. ``dataset.mean``; ``scale`` e.g. 1/255 for unit range.
    """

    def __init__(self, mean, scale=1.0):
        mean = np.asarray(mean, np.float32).reshape(-1)
        if mean.shape != (3,):
            raise ValueError(f"SubtractMean: mean must be RGB (3,); got shape {mean.shape}")
        self.mean, self.scale = mean, np.float32(scale)

    def __call__(self, sample, rng):
        out = dict(sample)
        for k in IMAGE_KEYS:
            if k in out:
                x = out[k].astype(np.float32)
                x -= self.mean
                x *= self.scale
                out[k] = x
        return out

    def __repr__(self):
        return f"SubtractMean({self.mean.tolist()}, scale={float(self.scale)})"
