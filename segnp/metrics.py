"""Evaluation metrics: confusion-matrix mIoU and pixel accuracy, trimap scores near label
boundaries (the paper's Fig. 7), and optical-flow end-point and angular errors (Table 3).

All functions take host NumPy arrays (use ``backend.to_numpy`` first) and ignore pixels
labelled ``ignore_index``.
"""
import numpy as np
from scipy import ndimage

__all__ = ["confusion_matrix", "miou", "pixel_accuracy", "boundary_distance",
           "trimap_scores", "end_point_error", "angular_error"]


def _check_labels(fn, pred, labels, num_classes, ignore_index):
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.shape != labels.shape:
        raise ValueError(f"{fn}: pred and labels must have one shape; got {pred.shape} "
                         f"and {labels.shape}")
    for name, a in (("pred", pred), ("labels", labels)):
        if a.dtype.kind not in "iu":
            raise TypeError(f"{fn}: {name} must be an integer array; got dtype {a.dtype}")
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        raise ValueError(f"{fn}: labels must be in [0, {num_classes}) or {ignore_index}; "
                         f"got {labels[bad].flat[0]}")
    if ((pred < 0) | (pred >= num_classes)).any():
        raise ValueError(f"{fn}: pred must be in [0, {num_classes}); got values from "
                         f"{pred.min()} to {pred.max()}")
    return pred, labels


def confusion_matrix(pred, labels, num_classes, ignore_index=255, mask=None):
    """(L, L) int64 counts: row = true class, column = predicted class.

    ``mask`` (same shape, bool) restricts the count to some pixels (trimap bands).
    """
    pred, labels = _check_labels("confusion_matrix", pred, labels, num_classes, ignore_index)
    keep = labels != ignore_index
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
    idx = labels[keep].astype(np.int64) * num_classes + pred[keep]
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def miou(conf):
    """Mean intersection-over-union over the classes that occur (in truth or prediction)."""
    conf = np.asarray(conf, dtype=np.float64)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else float("nan")


def pixel_accuracy(conf):
    """Fraction of counted pixels labelled correctly."""
    conf = np.asarray(conf, dtype=np.float64)
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")


def boundary_distance(labels):
    """Euclidean distance (pixels) of each pixel to the nearest label boundary.

    labels (N, H, W).  A pixel is on a boundary when a 4-neighbour has another label
    (``ignore_index`` counts as a label, so VOC's void bands mark boundaries on both
    sides); boundary pixels have distance 0.  An image without boundary gets +inf.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"boundary_distance: labels must be (N, H, W); got shape {labels.shape}")
    edge = np.zeros(labels.shape, dtype=bool)
    dv = labels[:, 1:, :] != labels[:, :-1, :]
    dh = labels[:, :, 1:] != labels[:, :, :-1]
    edge[:, 1:, :] |= dv
    edge[:, :-1, :] |= dv
    edge[:, :, 1:] |= dh
    edge[:, :, :-1] |= dh
    dist = np.full(labels.shape, np.inf)
    for n in range(labels.shape[0]):  # one distance transform per image
        if edge[n].any():
            dist[n] = ndimage.distance_transform_edt(~edge[n])
    return dist


def trimap_scores(pred, labels, num_classes, widths=range(1, 41), ignore_index=255):
    """Pixel accuracy and mIoU within bands of half-width w around label boundaries (Fig. 7).

    Returns a dict ``{w: (accuracy, miou)}``; the band holds pixels at distance <= w from
    a boundary pixel (see :func:`boundary_distance`).
    """
    pred, labels = _check_labels("trimap_scores", pred, labels, num_classes, ignore_index)
    if labels.ndim == 2:
        pred, labels = pred[None], labels[None]
    dist = boundary_distance(labels)
    out = {}
    for w in widths:
        conf = confusion_matrix(pred, labels, num_classes, ignore_index, mask=dist <= w)
        out[int(w)] = (pixel_accuracy(conf), miou(conf))
    return out


def _check_flow(fn, pred, gt):
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[1] != 2:
        raise ValueError(f"{fn}: flows must both be (N, 2, H, W); got {pred.shape} and {gt.shape}")
    return pred, gt


def _known_mean(errors, gt):
    # Pixels of unknown true flow (NaN, as read_flo marks them) are left out.
    known = np.isfinite(gt).all(axis=1)
    return float(errors[known].mean()) if known.any() else float("nan")


def end_point_error(pred, gt):
    """Mean Euclidean distance between predicted and true flow vectors (N, 2, H, W),
    over the pixels whose true flow is known (finite)."""
    pred, gt = _check_flow("end_point_error", pred, gt)
    return _known_mean(np.sqrt(((pred - gt) ** 2).sum(axis=1)), gt)


def angular_error(pred, gt):
    """Average angular error in degrees between (u, v, 1) vectors (Barron et al., 1994),
    over the pixels whose true flow is known (finite)."""
    pred, gt = _check_flow("angular_error", pred, gt)
    (u, v), (ug, vg) = pred.transpose(1, 0, 2, 3), gt.transpose(1, 0, 2, 3)
    with np.errstate(invalid="ignore"):
        cos = (u * ug + v * vg + 1.0) / np.sqrt((u * u + v * v + 1.0) *
                                                (ug * ug + vg * vg + 1.0))
    return _known_mean(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), gt)
