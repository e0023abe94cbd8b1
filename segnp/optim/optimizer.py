"""``Optimizer``: parameter groups, per-parameter state, and the update loop.

An optimizer holds *parameter groups*: dicts with a ``'params'`` list and the
hyper-parameters (``lr``, ``momentum``, ...) that apply to those parameters.  Groups
with their own ``lr`` are how Caffe's ``lr_mult`` is expressed (the paper's networks
train biases and new layers faster than pre-trained weights)::

    SGD([{'params': backbone.parameters()},
         {'params': head.parameters(), 'lr': 10 * base_lr}], lr=base_lr, momentum=0.9)

``step()`` updates, in place and outside the tape, every parameter that has a gradient
(frozen ones, ``requires_grad = False``, are kept but skipped), then projects it onto
its constraint (``Parameter.apply_constraint``; this is how the segmentation-aware
layers keep lam >= 0).  Subclasses define only ``update``.

The state of a parameter (step count, momentum buffer, Adam moments) lives in
``self.state[id(p)]``.  ``state_dict()`` names parameters by their position in the
groups, so it can be loaded into a fresh optimizer over a fresh model of the same
architecture, and it round-trips exactly.
"""
import numbers

import numpy as np

from ..autograd import Parameter, Tensor, no_grad
from ..backends import get_backend

__all__ = ["Optimizer"]


def _copy_value(v, to_numpy):
    # Arrays leave as host copies; everything else (step counts) is a Python scalar.
    if hasattr(v, "shape") and hasattr(v, "dtype"):
        return np.array(to_numpy(v), copy=True)
    return v


class Optimizer:
    """Base class: ``Optimizer(params, defaults)``.

    ``params`` is an iterable of Parameters, or of dicts ``{'params': [...], 'lr': ...}``
    (parameter groups).  ``defaults`` fills the hyper-parameters a group does not set.
    """

    def __init__(self, params, defaults):
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError(f"{name}: params must be an iterable of Parameters or of dicts; "
                            f"got a single {type(params).__name__}")
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}
        groups = list(params)
        if not groups:
            raise ValueError(f"{name}: got an empty list of parameters")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # ---- groups --------------------------------------------------------------------
    def add_param_group(self, group):
        """Add a dict ``{'params': [...], <hyper-parameters>}``; missing ones take defaults."""
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}.add_param_group: expected a dict with a 'params' key; "
                            f"got {type(group).__name__}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            # A frozen Parameter (requires_grad = False) is accepted and skipped by step(),
            # so that unfreezing it later needs no new optimizer.
            if not isinstance(p, Parameter) and not (isinstance(p, Tensor)
                                                     and p.requires_grad):
                what = type(p).__name__ + (" that requires no grad"
                                           if isinstance(p, Tensor) else "")
                raise TypeError(f"{name}: every parameter must be a Parameter or a Tensor "
                                f"that requires grad; got a {what}")
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{name}: a parameter appears twice in one group")
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if taken & set(ids):
            raise ValueError(f"{name}: a parameter appears in more than one group")
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(f"{name}: unknown hyper-parameters {sorted(unknown)}; expected "
                             f"some of {sorted(self.defaults)}")
        new = {"params": params}
        for key, default in self.defaults.items():
            new[key] = group.get(key, default)
        if "initial_lr" in group:
            new["initial_lr"] = group["initial_lr"]
        self.check_hyperparameters(new)
        self.param_groups.append(new)

    def check_hyperparameters(self, group):
        """Raise ValueError for an invalid setting in ``group`` (subclasses extend this)."""
        lr = group.get("lr")
        if not isinstance(lr, numbers.Real) or not lr >= 0:
            raise ValueError(f"{type(self).__name__}: lr must be a number >= 0; got {lr!r}")

    def _all_params(self):
        return [p for g in self.param_groups for p in g["params"]]

    # ---- the update ----------------------------------------------------------------
    def zero_grad(self):
        """Forget every gradient (``grad = None``); the next backward starts afresh."""
        for p in self._all_params():
            p.grad = None

    def step(self):
        """Update every parameter that has a gradient and is not frozen (requires_grad
        False), then apply its constraint."""
        self.xp = get_backend().xp  # the array module, for subclasses that allocate state
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None or not p.requires_grad:
                        continue
                    self.update(p, p.grad, self.state.setdefault(id(p), {}), group)
                    p.apply_constraint()

    def update(self, p, g, state, group):
        """Change ``p.data`` in place from its gradient ``g`` (an array), its ``state``
        dict and its ``group``'s hyper-parameters.  Subclasses define this."""
        raise TypeError(f"{type(self).__name__} must define update(p, g, state, group)")

    # ---- state ---------------------------------------------------------------------
    def state_dict(self):
        """``{'state': {index: {name: array or scalar}}, 'param_groups': [...]}``.

        Parameters are named by their index in the concatenated groups; arrays are host
        NumPy copies.  Hyper-parameters are copied as they are (``lr`` included, so a
        scheduler's changes are kept).
        """
        to_numpy = get_backend().to_numpy
        index, groups = 0, []
        state = {}
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                if self.state.get(id(p)):
                    state[index] = {k: _copy_value(v, to_numpy)
                                    for k, v in self.state[id(p)].items()}
                ids.append(index)
                index += 1
            hyper = {k: v for k, v in g.items() if k != "params"}
            groups.append({**hyper, "params": ids})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load what ``state_dict()`` gave, into an optimizer over parameters of the same
        shapes in the same groups.  Checked fully before anything is changed."""
        fn = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{fn}: expected a dict with keys 'state' and 'param_groups'; "
                             f"got {type(state_dict).__name__}")
        saved_groups = state_dict["param_groups"]
        sizes = [len(g["params"]) for g in self.param_groups]
        saved_sizes = [len(g["params"]) for g in saved_groups]
        if sizes != saved_sizes:
            raise ValueError(f"{fn}: expected {len(sizes)} parameter groups of sizes {sizes}; "
                             f"given {len(saved_sizes)} of sizes {saved_sizes}")
        params = self._all_params()
        backend = get_backend()
        new_state = {}
        for key, entry in state_dict["state"].items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(f"{fn}: state for parameter {i}, but there are only "
                                 f"{len(params)} parameters")
            p = params[i]
            loaded = {}
            for k, v in entry.items():
                if hasattr(v, "shape") and hasattr(v, "dtype"):
                    if tuple(v.shape) != p.shape:
                        raise ValueError(f"{fn}: state {k!r} of parameter {i} must have "
                                         f"shape {p.shape}; given {tuple(v.shape)}")
                    # Keep the saved dtype: the state must come back bit for bit.
                    v = backend.asarray(np.array(backend.to_numpy(v), copy=True))
                loaded[k] = v
            new_state[id(p)] = loaded
        new_groups = []
        for g, saved in zip(self.param_groups, saved_groups):
            new = {"params": g["params"]}
            for k, v in saved.items():
                if k == "params":
                    continue
                # A tuple hyper-parameter (Adam's betas) may come back from JSON as a list.
                if isinstance(g.get(k), tuple) and isinstance(v, list):
                    v = tuple(v)
                new[k] = v
            self.check_hyperparameters(new)
            new_groups.append(new)
        for g, new in zip(self.param_groups, new_groups):
            g.clear()  # in place: a scheduler or caller holding a group sees the change
            g.update(new)
        self.state = new_state

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, g in enumerate(self.param_groups):
            hyper = ", ".join(f"{k}={v}" for k, v in g.items() if k != "params")
            lines.append(f"  group {i}: {len(g['params'])} params, {hyper}")
        return "\n".join(lines) + "\n)"
