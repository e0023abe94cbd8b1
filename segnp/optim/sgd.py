"""Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay."""
import numbers

from .optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    """``SGD(params, lr, momentum=0.0, weight_decay=0.0, nesterov=False)``, PyTorch's rule
    (with dampening 0), which is also Caffe's for a constant lr::

        d   = g + weight_decay * p
        buf = d                       at the first step
        buf = momentum * buf + d      afterwards
        d   = d + momentum * buf      with Nesterov, else d = buf     (when momentum > 0)
        p   = p - lr * d

    Caffe scales the momentum buffer by lr instead (v = momentum v + lr d); the two
    agree while lr is constant and differ right after an lr change.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def check_hyperparameters(self, group):
        super().check_hyperparameters(group)
        for key in ("momentum", "weight_decay"):
            v = group[key]
            if not isinstance(v, numbers.Real) or not v >= 0:
                raise ValueError(f"SGD: {key} must be a number >= 0; got {v!r}")
        if group["nesterov"] and not group["momentum"] > 0:
            raise ValueError(f"SGD: nesterov=True needs momentum > 0; got momentum="
                             f"{group['momentum']!r}")

    def update(self, p, g, state, group):
        lr, momentum = group["lr"], group["momentum"]
        wd = group["weight_decay"]
        d = g + wd * p.data if wd != 0 else g
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.copy()
            else:
                buf *= momentum
                buf += d
            d = d + momentum * buf if group["nesterov"] else buf
        p.data -= lr * d
