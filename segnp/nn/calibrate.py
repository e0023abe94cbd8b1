"""Setting the mask hardness lam of segmentation-aware layers from data (Eq. 3).

**Why not learn lam from 0.**  At lam = 0 a segmentation-aware convolution is the plain
one, and ``dL/dlam = -sum(gm * d)`` there is the correlation between the loss gradient
of each tap and its embedding distance.  On a trained network that correlation is
small and changes sign from batch to batch.  Adam normalises every step to about the
lr whatever the gradient's size, so lam takes steps of equal size both ways, and the
projection onto lam >= 0 stops every step down at 0: lam random-walks against a wall
at 0.  In short fine-tunings it stays at 0 (FlyingShapes, 2 epochs: 0.00-0.04), and
the layer never becomes segmentation-aware; over longer ones it drifts up unevenly
(3 epochs at 10x lr: 0.00-0.41, some layers still at 0).  The authors' Caffe code
starts lam at 0.05 and moves it by SGD at lr 1e-3, where it barely changes: in effect
a fixed hyper-parameter.

So lam is set here, once, where it makes the mask do what Eq. 3 is for: a tap in the
same region as the centre keeps about ``keep`` of its weight.  The distances that
matter are those a layer sees: embeddings sampled at the layer's resolution (its
stride) and taps at its dilation, so each layer gets its own lam:

    lam_layer = -ln(keep) / median{ d(e_i, e_j) : j a tap of i, same label as i }

The different-region taps then get ``keep ** (d_diff / d_same)``, small when the
embeddings separate regions.  Labels come from training data, never from test.
"""
import numpy as np

__all__ = ["tap_distances", "calibrate_lams"]


def _subsample(a, stride):
    # the point grid of a padded stride-s map: sample i on input pixel s i
    return a[..., ::stride, ::stride]


def offset_pairs(fn, feat, labels, offsets, norm="l1", ignore_index=255, name="e"):
    """Distances and same-label flags of every pixel paired with its neighbour at each
    (dy, dx) of ``offsets``, where both lie in the image and neither label is
    ``ignore_index``.

    feat (N, D, H, W), labels (N, H, W); ``norm`` 'l1' (sum |delta|) or 'l2'
    (Euclidean).  Returns (d (P,), same (P,) bool).  ``fn`` and ``name`` name the
    caller and its feature argument in errors.
    """
    feat = np.asarray(feat, np.float64)
    labels = np.asarray(labels)
    if feat.ndim != 4 or labels.shape != (feat.shape[0],) + feat.shape[2:]:
        raise ValueError(f"{fn}: {name} must be (N, D, H, W) and labels (N, H, W) with "
                         f"the same N, H, W; got {feat.shape} and {labels.shape}")
    if norm not in ("l1", "l2"):
        raise ValueError(f"{fn}: norm must be 'l1' or 'l2'; got {norm!r}")
    H, W = labels.shape[1:]
    ds, sames = [], []
    for dy, dx in offsets:
        if abs(dy) >= H or abs(dx) >= W:   # no pixel has that neighbour
            continue
        # pixel [ya, xa] and its neighbour [yb, xb]
        ya, yb = slice(max(0, -dy), H - max(0, dy)), slice(max(0, dy), H - max(0, -dy))
        xa, xb = slice(max(0, -dx), W - max(0, dx)), slice(max(0, dx), W - max(0, -dx))
        delta = feat[:, :, ya, xa] - feat[:, :, yb, xb]
        d = np.abs(delta).sum(1) if norm == "l1" else np.sqrt((delta * delta).sum(1))
        la, lb = labels[:, ya, xa], labels[:, yb, xb]
        keep = (la != ignore_index) & (lb != ignore_index)
        ds.append(d[keep])
        sames.append((la == lb)[keep])
    if not ds:
        return np.zeros(0), np.zeros(0, bool)
    return np.concatenate(ds), np.concatenate(sames)


def tap_distances(e, labels, ksize, dilation, norm="l1", ignore_index=255):
    """Distances between every pixel and the taps of its ``ksize`` x ``ksize`` window.

    e (N, D, H, W) embeddings, labels (N, H, W).  Returns (d, same): the L1 (or L2)
    distance and the same-label flag of every (pixel, tap) pair whose tap lies inside
    the image, the centre tap excluded and ignored labels left out.
    """
    r = ksize // 2
    taps = [(ky * dilation, kx * dilation) for ky in range(-r, r + 1)
            for kx in range(-r, r + 1) if (ky, kx) != (0, 0)]
    return offset_pairs("tap_distances", e, labels, taps, norm, ignore_index)


def calibrate_lams(layers, e, labels, keep=0.8, freeze=True):
    """Set the lam of each segmentation-aware layer so that same-region taps keep
    ``keep`` of their weight (see the module docstring).

    layers: [(name, layer, stride)] as :meth:`segnp.models.SegNet.segaware_layers`
    gives them, each layer with ``kernel_size``, ``dilation``, ``norm`` and a ``lam``
    Parameter.  e (N, D, H, W) embeddings of training images (a NumPy array), labels
    (N, H, W).  ``freeze``: stop the optimizers from moving lam (``requires_grad``
    False).  Returns {name: {"lam", "same_median", "diff_median", "diff_mask",
    "mean_mask"}}: the mask a median different-region tap gets, and the mean mask
    weight of a window's taps (the centre's 1 included), by which an unnormalised
    layer's output shrinks on average when its mask is switched on.
    """
    if not 0.0 < float(keep) < 1.0:
        raise ValueError(f"calibrate_lams: keep must be in (0, 1); got {keep!r}")
    out = {}
    for name, layer, stride in layers:
        dilation = layer.dilation[0] if isinstance(layer.dilation, tuple) else layer.dilation
        d, same = tap_distances(_subsample(e, stride), _subsample(labels, stride),
                                layer.kernel_size, dilation, layer.norm)
        if not same.any():
            raise ValueError(f"calibrate_lams: layer {name!r} sees no same-region tap pair "
                             f"at stride {stride}; give more or larger images")
        same_med = float(np.median(d[same]))
        diff_med = float(np.median(d[~same])) if (~same).any() else float("nan")
        lam = -np.log(float(keep)) / max(same_med, 1e-12)
        layer.lam.data[...] = lam
        layer.lam.requires_grad = not freeze
        K = layer.kernel_size ** 2
        mean_mask = (1.0 + (K - 1) * float(np.exp(-lam * d).mean())) / K
        out[name] = {"lam": float(lam), "same_median": same_med, "diff_median": diff_med,
                     "diff_mask": float(np.exp(-lam * diff_med)), "mean_mask": mean_mask}
    return out
