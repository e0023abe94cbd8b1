"""Checkpoints: ``save(path, module, optimizer=None, **extra)`` and ``load(path, ...)``.

The file is an uncompressed NumPy ``.npz`` archive that needs no pickle to read:

* ``__header__``: a uint8 array holding UTF-8 JSON: the format name and version, the
  module's parameter names in order, the optimizer's class, hyper-parameters and scalar
  state, and the ``extra`` values;
* ``model/<name>``: one array per entry of ``module.state_dict()``;
* ``optimizer/...`` and ``extra/...``: every array found in the optimizer state and in
  ``extra``, named by where it sits; the JSON holds ``{"__array__": <member name>}`` in
  its place.

Tuples, dicts with non-string keys (the optimizer's parameter indices) and NumPy scalars
are encoded so that they come back as they were (a NumPy scalar comes back as the
Python number of the same value), which is what makes the optimizer state round-trip
exactly.  Anything else in ``extra`` (objects, functions) is refused: a checkpoint holds
data, not code.

Writing is atomic (:func:`segnp.io.atomic_path`): the archive goes to a temporary file
in the destination's folder, is flushed to disk, and is renamed over ``path``.  A failure while
writing removes the temporary file and leaves any previous checkpoint untouched.  (A
process killed outright cannot remove its temporary file; it is a hidden
``.<name>.*.tmp`` beside the checkpoint, and the old checkpoint is still intact.)
"""
import json
import os
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from .backends import get_backend
from .atomic import atomic_path

__all__ = ["save", "load", "read_checkpoint"]

FORMAT = "segnp-checkpoint"
VERSION = 1
_RESERVED = ("__array__", "__tuple__", "__items__")


class _Encoder:
    """Turns nested Python/NumPy values into JSON, moving arrays into ``self.arrays``."""

    def __init__(self, fn):
        self.fn = fn
        self.arrays = OrderedDict()
        self.to_numpy = get_backend().to_numpy

    def array(self, value, where):
        a = np.asarray(self.to_numpy(value))
        if a.dtype.kind not in "biufc":
            raise TypeError(f"{self.fn}: {where} must hold a numeric array; got dtype "
                            f"{a.dtype}")
        name = where
        n = 1
        while name in self.arrays:
            n += 1
            name = f"{where}#{n}"
        self.arrays[name] = a
        return {"__array__": name}

    def encode(self, value, where):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            return value.item()
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            return self.array(value, where)
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, f"{where}/{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{where}/{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            plain = all(isinstance(k, str) for k in value) and not (
                len(value) == 1 and next(iter(value)) in _RESERVED)
            if plain:
                return {k: self.encode(v, f"{where}/{k}") for k, v in value.items()}
            return {"__items__": [[self.encode(k, f"{where}/key"),
                                   self.encode(v, f"{where}/{k}")] for k, v in value.items()]}
        raise TypeError(f"{self.fn}: cannot store {where} of type {type(value).__name__}; "
                        f"a checkpoint holds numbers, strings, bools, None, arrays, and "
                        f"lists, tuples and dicts of them")


class _NotSegnp(Exception):
    """A readable archive that is not a segnp checkpoint (read_checkpoint says why)."""


def _decode(value, arrays):
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (key, inner), = value.items()
            if key == "__array__":
                return arrays[inner]
            if key == "__tuple__":
                return tuple(_decode(v, arrays) for v in inner)
            if key == "__items__":
                return {_hashable(_decode(k, arrays)): _decode(v, arrays) for k, v in inner}
        return {k: _decode(v, arrays) for k, v in value.items()}
    return value


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def _write_npz(f, arrays):
    # Its own function so that tests can make it fail midway.
    np.savez(f, **arrays)


def save(path, module, optimizer=None, **extra):
    """Write ``module``'s state, ``optimizer``'s state (if given) and ``extra`` to ``path``.

    ``extra`` may hold numbers, strings, bools, None, arrays, and lists, tuples and dicts
    of them (an epoch counter, a scheduler's ``state_dict()``, a NumPy generator's
    ``bit_generator.state``).  The write is atomic (see the module docstring).
    """
    from .nn.module import Module
    from .optim.optimizer import Optimizer
    if not isinstance(module, Module):
        raise TypeError(f"save: module must be a segnp.nn.Module; got {type(module).__name__}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"save: optimizer must be a segnp.optim.Optimizer or None; got "
                        f"{type(optimizer).__name__}")
    enc = _Encoder("save")
    state = module.state_dict()
    for key, a in state.items():
        enc.arrays[f"model/{key}"] = a
    header = {"format": FORMAT, "version": VERSION, "model": list(state), "optimizer": None,
              "extra": {k: enc.encode(v, f"extra/{k}") for k, v in extra.items()}}
    if optimizer is not None:
        header["optimizer"] = {"type": type(optimizer).__name__,
                               "state_dict": enc.encode(optimizer.state_dict(), "optimizer")}
    text = json.dumps(header, allow_nan=True)
    arrays = OrderedDict([("__header__", np.frombuffer(text.encode("utf-8"), np.uint8))])
    arrays.update(enc.arrays)
    # The temporary name ends in .tmp: np.savez writes to the open file whatever its name.
    with atomic_path(path, keep_ext=False, durable=True) as tmp:
        with open(tmp, "wb") as f:
            _write_npz(f, arrays)


def read_checkpoint(path):
    """Everything in a checkpoint, without a module: a dict with ``'model'`` (an ordered
    name -> array dict), ``'optimizer_type'``, ``'optimizer'`` (a state dict or None)
    and ``'extra'``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no checkpoint at {path!r}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(f"load: {path!r} is not a readable segnp checkpoint (expected an "
                         f".npz archive; the file starts with {magic!r})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "__header__" not in archive.files:
                raise _NotSegnp(f"expected a '__header__' entry; got entries "
                                f"{archive.files[:5]}")
            header = json.loads(archive["__header__"].tobytes().decode("utf-8"))
            if not isinstance(header, dict):
                raise _NotSegnp("its header is not a JSON object")
            if header.get("format") != FORMAT or header.get("version") != VERSION:
                raise _NotSegnp(f"expected format {FORMAT!r} version {VERSION}; it has "
                                f"{header.get('format')!r} version {header.get('version')}")
            arrays = {name: archive[name] for name in archive.files if name != "__header__"}
    except _NotSegnp as err:
        raise ValueError(f"load: {path!r} is not a segnp checkpoint: {err}") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as err:
        # A cut-off archive loses its table of contents or the end of a member.
        raise ValueError(f"load: {path!r} is truncated or corrupt, not a readable segnp "
                         f"checkpoint ({type(err).__name__}: {err})") from err
    model = OrderedDict((k, arrays[f"model/{k}"]) for k in header["model"])
    opt = header["optimizer"]
    return {"model": model,
            "optimizer_type": None if opt is None else opt["type"],
            "optimizer": None if opt is None else _decode(opt["state_dict"], arrays),
            "extra": _decode(header["extra"], arrays)}


def load(path, module=None, optimizer=None):
    """Load a checkpoint written by :func:`save` into ``module`` and ``optimizer`` (either
    may be None) and return the ``extra`` dict.

    The module's keys and shapes are checked strictly; the optimizer must be of the
    class that was saved, over parameter groups of the same sizes.
    """
    ckpt = read_checkpoint(path)
    if optimizer is not None:
        if ckpt["optimizer"] is None:
            raise ValueError(f"load: an optimizer was given but {os.fspath(path)!r} holds no "
                             f"optimizer state")
        if ckpt["optimizer_type"] != type(optimizer).__name__:
            raise ValueError(f"load: expected optimizer state for {type(optimizer).__name__}; "
                             f"the checkpoint holds {ckpt['optimizer_type']}")
    if module is not None:
        module.load_state_dict(ckpt["model"], strict=True)
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt["extra"]
