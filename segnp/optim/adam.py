"""Adam (Kingma and Ba, 2015) with L2 weight decay, PyTorch's rule."""
import math
import numbers

from .optimizer import Optimizer

__all__ = ["Adam"]


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)``::

        t  = t + 1
        g  = g + weight_decay * p              (L2 decay on the gradient, not AdamW)
        m  = beta1 * m + (1 - beta1) * g
        v  = beta2 * v + (1 - beta2) * g**2
        p  = p - lr * mhat / (sqrt(vhat) + eps),  mhat = m / (1 - beta1**t),
                                                  vhat = v / (1 - beta2**t)

    computed in PyTorch's order, (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t)
    + eps), so the results match it to rounding.  State per parameter: ``step``,
    ``exp_avg`` (m) and ``exp_avg_sq`` (v).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    def check_hyperparameters(self, group):
        super().check_hyperparameters(group)
        betas = group["betas"]
        if (not isinstance(betas, (tuple, list)) or len(betas) != 2
                or not all(isinstance(b, numbers.Real) and 0 <= b < 1 for b in betas)):
            raise ValueError(f"Adam: betas must be two numbers in [0, 1); got {betas!r}")
        group["betas"] = tuple(betas)
        for key in ("eps", "weight_decay"):
            v = group[key]
            if not isinstance(v, numbers.Real) or not v >= 0:
                raise ValueError(f"Adam: {key} must be a number >= 0; got {v!r}")

    def update(self, p, g, state, group):
        xp = self.xp
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        beta1, beta2 = group["betas"]
        wd = group["weight_decay"]
        state["step"] += 1
        t = state["step"]
        if wd != 0:
            g = g + wd * p.data
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        step_size = group["lr"] / (1 - beta1 ** t)
        denom = xp.sqrt(v)
        denom /= math.sqrt(1 - beta2 ** t)
        denom += group["eps"]
        p.data -= step_size * (m / denom)
