"""``Module``: the container that holds Parameters, buffers and submodules.

A Module registers what is assigned to it, in assignment order:

* a ``Parameter`` goes to ``_parameters`` (what optimizers update);
* a ``Module`` goes to ``_modules`` (its parameters become ours, with a dotted prefix);
* an array given to ``register_buffer`` goes to ``_buffers`` (state that is saved but
  not trained).

Names follow PyTorch: a module's own parameters come first, then its buffers, then each
submodule's, so ``features.0.weight`` means "the weight of child 0 of child features".
Every registry is an ordered dict, never a set: the order of ``parameters()`` is the
order of the optimizer's state and of a checkpoint, and it must not change from run to
run.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from ..autograd import Parameter, Tensor
from ..backends import get_backend

__all__ = ["Module", "Sequential", "ModuleList"]

LoadResult = namedtuple("LoadResult", ["missing_keys", "unexpected_keys"])


def _key_list(keys):
    return "[" + ", ".join(repr(k) for k in keys) + "]"


class Module:
    """Base class of every layer and model: subclass it and define ``forward``.

    ``module(*args)`` calls ``forward(*args)``.  ``training`` is True after construction
    and after ``train()``, False after ``eval()``; layers such as ``Dropout`` read it.
    """

    def __init__(self):
        # object.__setattr__: our own __setattr__ needs these registries to exist.
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration --------------------------------------------------------------
    def _registries(self, name):
        if "_parameters" not in self.__dict__:
            raise TypeError(f"{type(self).__name__}: call super().__init__() before "
                            f"assigning {name!r}")
        return self._parameters, self._buffers, self._modules

    def __setattr__(self, name, value):
        params, buffers, modules = self._registries(name)
        if isinstance(value, (Parameter, Module)):
            self.__dict__.pop(name, None)  # a plain attribute of that name is replaced
            if isinstance(value, Parameter):
                self.register_parameter(name, value)
            else:
                self.add_module(name, value)
        elif name in params:
            if value is not None:
                raise TypeError(f"{type(self).__name__}: {name!r} is a Parameter; assign a "
                                f"Parameter or None, got {type(value).__name__}")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"{type(self).__name__}: {name!r} is a submodule; assign a "
                                f"Module or None, got {type(value).__name__}")
            modules[name] = None
        elif name in buffers:
            buffers[name] = None if value is None else get_backend().asarray(value)
        else:
            if (isinstance(value, (list, tuple)) and value
                    and all(isinstance(v, Module) for v in value)):
                # A plain list hides its modules from parameters() and state_dict().
                raise TypeError(f"{type(self).__name__}: {name!r} is a {type(value).__name__} "
                                f"of Modules; wrap it in nn.ModuleList so that its "
                                f"parameters are registered")
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails, i.e. for registered names.
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._persistent.discard(name)
                return
        object.__delattr__(self, name)

    def _check_new_name(self, fn, name):
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"{type(self).__name__}.{fn}: name must be a non-empty string "
                             f"without '.'; got {name!r}")
        if name in self.__dict__:
            raise ValueError(f"{type(self).__name__}.{fn}: {name!r} is already a plain "
                             f"attribute")

    def _forget(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._persistent.discard(name)

    def register_parameter(self, name, param):
        """Register ``param`` (a Parameter, or None for an absent one such as a bias)."""
        self._register("register_parameter", self._parameters, Parameter, name, param)

    def add_module(self, name, module):
        """Register ``module`` as a child called ``name`` (None keeps the slot empty)."""
        self._register("add_module", self._modules, Module, name, module)

    def _register(self, method, registry, kind, name, value):
        """``registry[name] = value``, a ``kind`` or None, for ``method``."""
        self._registries(name)
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"{type(self).__name__}.{method}: expected a {kind.__name__} "
                            f"or None for {name!r}; got {type(value).__name__}")
        if name not in registry:
            self._check_new_name(method, name)
            self._forget(name)
        registry[name] = value

    def register_buffer(self, name, array, persistent=True):
        """Register a non-trained array; ``state_dict`` includes it when ``persistent``."""
        self._registries(name)
        if name not in self._buffers:
            self._check_new_name("register_buffer", name)
            self._forget(name)
        self._buffers[name] = None if array is None else get_backend().asarray(array)
        if persistent:
            self._persistent.add(name)
        else:
            self._persistent.discard(name)

    # ---- traversal -----------------------------------------------------------------
    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix=""):
        """This module and every descendant, depth first, each once, with dotted names."""
        seen = set()
        stack = [(prefix, self)]
        while stack:  # iterative: deep models need no recursion
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            kids = [(f"{name}.{k}" if name else k, c) for k, c in m.named_children()]
            stack.extend(reversed(kids))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter) pairs; a Parameter shared by two modules comes once."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mname, m in mods:
            for pname, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix=""):
        for mname, m in self.named_modules(prefix):
            for bname, b in m._buffers.items():
                if b is not None:
                    yield (f"{mname}.{bname}" if mname else bname), b

    def buffers(self):
        for _, b in self.named_buffers():
            yield b

    def apply(self, fn):
        """Call ``fn(m)`` on every submodule, then on this module (for custom init)."""
        for m in reversed(list(self.modules())):
            fn(m)
        return self

    # ---- modes and gradients -------------------------------------------------------
    def train(self, mode=True):
        """Set ``training`` on this module and every descendant; returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        """Forget the gradients of every parameter (``grad = None``)."""
        for p in self.parameters():
            p.grad = None

    def to(self, dtype):
        """Cast every parameter and floating buffer to ``dtype``, in place; returns self.

        The Parameter objects stay the same, so an optimizer built before still holds
        them (its state is not cast: build optimizers after choosing the dtype).
        """
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"Module.to: dtype must be floating (float32 or float64); "
                            f"got {dtype}")
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        for m in self.modules():
            for name, b in m._buffers.items():
                if b is not None and b.dtype.kind == "f":
                    m._buffers[name] = b.astype(dtype)
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    # ---- state ---------------------------------------------------------------------
    def _state_items(self):
        # Every name, shared parameters included under each of their names.
        for mname, m in self.named_modules():
            pre = f"{mname}." if mname else ""
            for name, p in m._parameters.items():
                if p is not None:
                    yield pre + name, p, m, name
            for name, b in m._buffers.items():
                if b is not None and name in m._persistent:
                    yield pre + name, b, m, name

    def state_dict(self):
        """An ordered dict: dotted name -> host NumPy copy of each parameter and buffer."""
        to_numpy = get_backend().to_numpy
        out = OrderedDict()
        for key, v, _, _ in self._state_items():
            data = v.data if isinstance(v, Tensor) else v
            out[key] = np.array(to_numpy(data), copy=True)
        return out

    def load_state_dict(self, state, strict=True):
        """Copy ``state`` (name -> array) into the parameters and buffers, in place.

        With ``strict`` every expected key must be present and no other key may be;
        shapes must always match.  Everything is checked before anything is written,
        so a failed load leaves the module unchanged.  Values are cast to the dtype of
        the parameter they replace.  Returns ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state, "keys"):
            raise TypeError(f"load_state_dict: expected a mapping of name -> array; got "
                            f"{type(state).__name__}")
        targets = OrderedDict((k, (v, m, n)) for k, v, m, n in self._state_items())
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {_key_list(missing)}")
            if unexpected:
                parts.append(f"unexpected keys {_key_list(unexpected)}")
            raise ValueError(
                f"load_state_dict: {' and '.join(parts)}; expected keys "
                f"{_key_list(targets)}; given keys {_key_list(state.keys())}")
        backend = get_backend()
        staged = []
        for key, (v, m, name) in targets.items():
            if key not in state:
                continue
            value = state[key]
            value = np.asarray(backend.to_numpy(value.data if isinstance(value, Tensor)
                                                else value))
            current = v.data if isinstance(v, Tensor) else v
            if value.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: {key!r} must be a numeric array; got "
                                f"dtype {value.dtype}")
            if tuple(value.shape) != tuple(current.shape):
                raise ValueError(f"load_state_dict: shape mismatch for {key!r}: expected "
                                 f"{tuple(current.shape)}; given {tuple(value.shape)}")
            staged.append((v, m, name, value.astype(current.dtype)))
        for v, m, name, value in staged:
            if isinstance(v, Tensor):
                v.data[...] = backend.asarray(value)
            else:
                m._buffers[name] = backend.asarray(value)
        return LoadResult(missing, unexpected)

    # ---- calling and printing ------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} must define forward(...)")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self):
        """The text inside the parentheses of this module's repr (its settings)."""
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ")
                 for name, m in self._modules.items() if m is not None]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


class _Children(Module):
    """What Sequential and ModuleList share: children that must be Modules, appended
    under the names ``0``, ``1``, ...; errors name ``_kind``."""

    _kind = None

    def _check(self, m):
        if not isinstance(m, Module):
            raise TypeError(f"{self._kind}: expected a Module; got {type(m).__name__}")
        return m

    def append(self, module):
        self.add_module(str(len(self._modules)), self._check(module))
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Sequential(_Children):
    """Calls its children in order, each on the output of the previous one.

    ``Sequential(conv, relu, ...)`` names the children ``0``, ``1``, ...; an
    ``OrderedDict`` of name -> module gives them names.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    _kind = "Sequential"

    def add_module(self, name, module):
        super().add_module(name, self._check(module))

    def __getitem__(self, index):
        mods = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(mods[index]))
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"Sequential: index must be an int or a slice; got "
                            f"{type(index).__name__}")
        if not -len(mods) <= index < len(mods):
            raise IndexError(f"Sequential: index {index} out of range for {len(mods)} "
                             f"modules")
        return mods[index][1]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(_Children):
    """A list of modules whose parameters are registered (children ``0``, ``1``, ...).

    It has no forward: the owner decides how to call its items.
    """

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    _kind = "ModuleList"

    def _index(self, index):
        n = len(self._modules)
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"ModuleList: index must be an int; got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"ModuleList: index {index} out of range for {n} modules")
        return str(int(index) % n)

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return self._modules[self._index(index)]

    def __setitem__(self, index, module):
        self._modules[self._index(index)] = self._check(module)

    def forward(self, *args, **kwargs):
        raise TypeError("ModuleList has no forward: iterate over it and call its items")
