"""Mask quality (the claim of the paper's Fig. 3): do learned embeddings tell whether two
pixels lie on the same region better than colour does?

For every pixel pair at a fixed offset (the neighbours a mask at that distance weighs),
a distance -- embedding or colour -- should be small for same-label pairs and large for
different-label pairs.  How well it separates the two is the ROC AUC of the score
``-distance`` for the positive class "same label": 1 is a perfect mask, 0.5 is chance.
"""
import numpy as np

from ..nn.calibrate import offset_pairs, tap_distances

__all__ = ["roc_auc", "pair_distances", "mask_quality", "layer_mask_means"]


def roc_auc(scores, positive):
    """Area under the ROC curve of ``scores`` for the boolean labels ``positive``.

    The Mann-Whitney form: the probability that a random positive scores above a random
    negative, ties counting one half (average ranks).  NaN if a class is empty.
    """
    scores = np.asarray(scores, np.float64).ravel()
    positive = np.asarray(positive, bool).ravel()
    if scores.shape != positive.shape:
        raise ValueError(f"roc_auc: scores and positive must have one size; got "
                         f"{scores.shape} and {positive.shape}")
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata  # imported here: scipy.stats takes a second to load
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _offsets(distance):
    """The four directions of a pair at ``distance`` pixels along the axes and diagonals
    (the diagonal offset is rounded to the nearest pixel): each unordered pair once."""
    d = int(distance)
    k = max(1, int(round(distance / np.sqrt(2))))
    return ((0, d), (d, 0), (k, k), (k, -k))


def pair_distances(feat, labels, distance, norm="l1", ignore_index=255):
    """Distances and same-label flags of every pixel pair at ``distance``.

    feat (N, D, H, W) features (embeddings or colours), labels (N, H, W).  Returns
    (dist (P,), same (P,) bool) over pairs where neither label is ``ignore_index``.
    ``norm``: 'l1' (sum |delta|) or 'l2' (Euclidean).
    """
    return offset_pairs("pair_distances", feat, labels, _offsets(distance), norm,
                        ignore_index, name="feat")


def mask_quality(embeddings, images, labels, distance=4, embed_norm="l1",
                 colour_norm="l2"):
    """ROC AUC of embedding distance and of colour distance for same-label pairs at
    ``distance`` pixels (both as ``-distance`` scores).

    embeddings (N, D, H, W); images (N, 3, H, W) in any fixed colour scale; labels
    (N, H, W).  Returns a dict with 'embedding_auc', 'colour_auc', the pair counts
    'pairs', 'same_pairs', and the mean distances of same and different pairs.
    """
    de, same = pair_distances(embeddings, labels, distance, embed_norm)
    dc, same_c = pair_distances(images, labels, distance, colour_norm)
    if not np.array_equal(same, same_c):
        raise ValueError("mask_quality: embeddings and images must cover the same pixels")
    return {"distance": int(distance), "pairs": int(same.size), "same_pairs": int(same.sum()),
            "embedding_auc": roc_auc(-de, same), "colour_auc": roc_auc(-dc, same),
            "embedding_same_mean": float(de[same].mean()) if same.any() else float("nan"),
            "embedding_diff_mean": float(de[~same].mean()) if (~same).any() else float("nan")}


def layer_mask_means(layers, embeddings, labels):
    """What the masks of segmentation-aware layers do on labelled images: the mean mask
    ``exp(-lam d)`` (Eq. 3) of the same-region and of the different-region taps of
    each layer's window, at the layer's stride, dilation, norm and current lam.

    layers: [(name, layer, stride)] as :meth:`segnp.models.SegNet.segaware_layers`
    gives them; embeddings (N, D, H, W) at the input resolution; labels (N, H, W).
    Returns {"same": mean over layers, "diff": mean over layers, "layers": {name:
    {"same", "diff"}}} (each layer counts once, whatever its resolution; NaN where a
    layer sees no tap of that kind).
    """
    per = {}
    for name, layer, s in layers:
        dilation = layer.dilation[0] if isinstance(layer.dilation, tuple) else layer.dilation
        d, same = tap_distances(embeddings[..., ::s, ::s], labels[:, ::s, ::s],
                                layer.kernel_size, dilation, layer.norm)
        m = np.exp(-float(layer.lam.data) * d)
        per[name] = {k: float(m[sel].mean()) if sel.any() else float("nan")
                     for k, sel in (("same", same), ("diff", ~same))}
    out = {k: float(np.mean([v[k] for v in per.values()])) for k in ("same", "diff")}
    out["layers"] = per
    return out
