"""Learning-rate schedulers: set each group's ``lr`` from its initial lr and a counter.

Every scheduler computes ``lr = f(initial_lr, t)`` in closed form from the number of
``step()`` calls ``t`` (``last_epoch``), rather than multiplying the current lr, so a
resumed run gets exactly the lr of an uninterrupted one.  Construction sets t = 0 and
stores each group's starting lr as ``'initial_lr'`` (as PyTorch does).  Call
``step()`` once per epoch (StepLR) or once per iteration (PolyLR), after
``optimizer.step()``.
"""
import numbers

from .optimizer import Optimizer

__all__ = ["LRScheduler", "StepLR", "PolyLR"]


class LRScheduler:
    """Base class: subclasses define ``lr_at(initial_lr, t)``."""

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer; got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def lr_at(self, initial_lr, t):
        raise TypeError(f"{type(self).__name__} must define lr_at(initial_lr, t)")

    def _apply(self):
        groups = self.optimizer.param_groups
        if len(groups) != len(self.base_lrs):
            raise ValueError(f"{type(self).__name__}: the optimizer has {len(groups)} "
                             f"parameter groups but the scheduler knows {len(self.base_lrs)}")
        for g, base in zip(groups, self.base_lrs):
            g["lr"] = self.lr_at(base, self.last_epoch)

    def step(self):
        """Advance the counter by one and set the new lr of every group."""
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        """Plain Python values (JSON-safe): the counter, initial lrs and settings."""
        return {k: (list(v) if isinstance(v, (list, tuple)) else v)
                for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state):
        """Restore what ``state_dict`` gave and set the optimizer's lr to match it."""
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected keys "
                             f"{sorted(expected)}; given {sorted(state)}")
        for k, v in state.items():
            setattr(self, k, list(v) if isinstance(v, (list, tuple)) else v)
        self._apply()


def _check(fn, name, value, test, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not test(value):
        raise ValueError(f"{fn}: {name} must be {what}; got {value!r}")
    return value


def _count(fn, name, value):
    """``value``, a whole number >= 1 (a step count), as an int."""
    return int(_check(fn, name, value, lambda v: v >= 1 and v == int(v), "an int >= 1"))


def _nonnegative(fn, name, value):
    """``value``, a number >= 0 (a factor or a power), as a float."""
    return float(_check(fn, name, value, lambda v: v >= 0, "a number >= 0"))


class StepLR(LRScheduler):
    """lr = initial_lr * gamma ** (t // step_size): decay by ``gamma`` every ``step_size``
    steps (Caffe's "step" policy)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = _count("StepLR", "step_size", step_size)
        self.gamma = _nonnegative("StepLR", "gamma", gamma)
        super().__init__(optimizer)

    def lr_at(self, initial_lr, t):
        return initial_lr * self.gamma ** (t // self.step_size)


class PolyLR(LRScheduler):
    """lr = initial_lr * (1 - t / max_iters) ** power, and 0 from t = max_iters on
    (DeepLab's "poly" policy, power 0.9)."""

    def __init__(self, optimizer, max_iters, power=0.9):
        self.max_iters = _count("PolyLR", "max_iters", max_iters)
        self.power = _nonnegative("PolyLR", "power", power)
        super().__init__(optimizer)

    def lr_at(self, initial_lr, t):
        return initial_lr * max(0.0, 1.0 - t / self.max_iters) ** self.power
