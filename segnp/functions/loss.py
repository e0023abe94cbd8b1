"""Losses: softmax cross-entropy (segmentation), L1, MSE and end-point error (flow).

All reduce to the mean, as PyTorch's default ``reduction='mean'``.
"""

import numpy as np

from ..autograd import Function, Tensor, as_tensor
from .._validate import check_float, check_int, is_int
from . import arith, reduce

__all__ = ["softmax_cross_entropy", "l1_loss", "mse_loss", "epe_loss"]


def _labels_array(fn, labels, xp):
    data = labels.data if isinstance(labels, Tensor) else labels
    check_int(fn, "labels", data)
    return xp.asarray(data)


class SoftmaxCrossEntropy(Function):
    """loss = sum_i w_{y_i} * (-log softmax(z_i)[y_i]) / sum_i w_{y_i}, over pixels i
    whose label is not ``ignore_index`` (PyTorch's weighted mean).

    logits z: (N, L) or (N, L, H, W); labels y: (N,) or (N, H, W), integers.
    The fused form keeps one (N, L, H, W) temporary: log-probabilities, reused as softmax
    in backward.
    """

    def __init__(self, labels, ignore_index, class_weight):
        self.labels = labels
        self.ignore_index = ignore_index
        self.class_weight = class_weight

    def forward(self, z):
        fn = "softmax_cross_entropy"
        xp = self.xp
        check_float(fn, "logits", z)
        if z.ndim < 2:
            raise ValueError(f"{fn}: logits must be (N, L) or (N, L, H, W); got shape {z.shape}")
        L = z.shape[1]
        y = _labels_array(fn, self.labels, xp)
        want = (z.shape[0],) + tuple(z.shape[2:])
        if tuple(y.shape) != want:
            raise ValueError(f"{fn}: labels must have shape {want} to match logits "
                             f"{tuple(z.shape)}; got {tuple(y.shape)}")
        valid = y != self.ignore_index
        bad = valid & ((y < 0) | (y >= L))
        if bool(bad.any()):
            raise ValueError(f"{fn}: labels must be class indices in [0, {L}) or "
                             f"ignore_index={self.ignore_index}; got value {int(y[bad][0])}")
        safe = xp.where(valid, y, 0).astype(np.int64)
        if self.class_weight is None:
            w = valid.astype(z.dtype)
        else:
            cw = xp.asarray(self.class_weight, dtype=z.dtype)
            if cw.shape != (L,):
                raise ValueError(f"{fn}: class_weight must have shape ({L},); got {cw.shape}")
            w = cw[safe] * valid
        total = w.sum()
        logp = z - z.max(axis=1, keepdims=True)
        logp -= xp.log(xp.exp(logp).sum(axis=1, keepdims=True))
        # Flat positions of logp[n, y, ...]: one gather of N*P elements, where
        # take_along_axis builds (N, 1, ...) index grids (2x the time of the whole loss).
        P = logp[0, 0].size
        pick = (xp.arange(y.shape[0]).reshape((-1,) + (1,) * (y.ndim - 1)) * (L * P)
                + safe * P + xp.arange(P).reshape(y.shape[1:]))
        picked = logp.reshape(-1)[pick]
        # No counted pixel: the loss is 0 and so is its gradient (scale 0, not 0/0).
        scale = 1.0 / total if float(total) > 0 else xp.zeros((), z.dtype)
        self.logp, self.pick, self.w, self.scale = logp, pick, w, scale
        return (-(w * picked).sum() * scale).astype(z.dtype)

    def backward(self, gy):
        xp = self.xp
        gz = xp.exp(self.logp).reshape(-1)  # a copy if logp kept a permuted input's layout
        gz[self.pick] -= 1  # softmax - onehot; pick never repeats a position
        gz = gz.reshape(self.logp.shape)
        gz *= (self.w * (gy * self.scale))[:, None]
        return (gz.astype(self.logp.dtype, copy=False),)


class EndPointError(Function):
    """loss = mean over (N, H, W) of ||pred - gt||_2 across the 2 flow channels.

    The gradient of the norm at 0 is taken as 0 (the minimum), not NaN.
    """

    def forward(self, pred, gt):
        d = pred - gt
        n = self.xp.sqrt((d * d).sum(axis=1))
        self.d, self.n = d, n
        return n.mean()

    def backward(self, gy):
        xp = self.xp
        n = self.n
        inv = xp.where(n > 0, 1.0 / xp.where(n > 0, n, 1), 0).astype(n.dtype)
        g = self.d * (inv * (gy / n.size))[:, None]
        gp, gg = self.needs_input_grad
        return (g if gp else None, -g if gg else None)


def softmax_cross_entropy(logits, labels, ignore_index=255, class_weight=None):
    """Mean softmax cross-entropy over the non-ignored pixels, as PyTorch's
    ``cross_entropy(logits, labels, weight=class_weight, ignore_index=ignore_index)``.

    logits: (N, L) or (N, L, H, W) float; labels: (N,) or (N, H, W) integers in [0, L) or
    ``ignore_index``; class_weight: optional (L,) weights (constant, not differentiated).
    The default ``ignore_index`` is 255, the void label of PASCAL VOC (PyTorch's is -100).
    Difference from PyTorch: with no counted pixel PyTorch returns NaN (0/0); this returns
    0 with a zero gradient, so a crop made of ignore labels cannot poison training.
    Labels outside [0, L) that are not ``ignore_index`` raise ValueError.
    """
    if not is_int(ignore_index):
        raise TypeError(f"softmax_cross_entropy: ignore_index must be an integer; "
                        f"got {ignore_index!r}")
    if isinstance(class_weight, Tensor):
        class_weight = class_weight.data
    return SoftmaxCrossEntropy(labels, int(ignore_index), class_weight)(logits)


def _check_pair(fn, pred, target, names=("input", "target")):
    pred, target = as_tensor(pred), as_tensor(target, like=pred)
    a, b = names
    check_float(fn, a, pred.data)
    check_float(fn, b, target.data)
    if pred.shape != target.shape:
        raise ValueError(f"{fn}: {b} must have {a}'s shape {pred.shape}; got {target.shape}")
    if pred.dtype != target.dtype:
        # A silent float64 promotion would double the memory.
        raise TypeError(f"{fn}: {b} must have {a}'s dtype {pred.dtype}; got {target.dtype}")
    return pred, target


def l1_loss(pred, target):
    """mean |pred - target| (PyTorch's ``l1_loss``; the subgradient at 0 is 0).

    pred and target: one shape and one floating dtype (no promotion, unlike PyTorch).
    """
    pred, target = _check_pair("l1_loss", pred, target)
    return reduce.mean(arith.abs(arith.sub(pred, target)))


def mse_loss(pred, target):
    """mean (pred - target)^2 (PyTorch's ``mse_loss``); pred and target as in ``l1_loss``."""
    pred, target = _check_pair("mse_loss", pred, target)
    d = arith.sub(pred, target)
    return reduce.mean(arith.mul(d, d))


def epe_loss(flow_pred, flow_gt):
    """Mean end-point error ||pred - gt||_2 of (N, 2, H, W) flows (u, v) in pixels.

    Both must have the same shape: models resize their prediction to the ground truth's
    resolution (scaling the vectors) before calling it.
    """
    flow_pred, flow_gt = _check_pair("epe_loss", flow_pred, flow_gt, ("flow_pred", "flow_gt"))
    if flow_pred.ndim != 4 or flow_pred.shape[1] != 2:
        raise ValueError(f"epe_loss: flow_pred must be (N, 2, H, W); got shape "
                         f"{flow_pred.shape}")
    return EndPointError()(flow_pred, flow_gt)
