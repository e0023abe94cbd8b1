"""Checkpoints: exact round trip of module, optimizer and extra; atomic writes; errors."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import segnp
from segnp import Parameter, Tensor, nn, serialization
from segnp.optim import SGD, Adam, PolyLR


class Small(nn.Module):
    def __init__(self, seed):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.conv = nn.Conv2d(2, 3, 3, padding=1, rng=rng)
        self.head = nn.Conv2d(3, 1, 1, dtype=np.float32, rng=rng)
        self.lam = Parameter(np.array([0.25], np.float32), constraint=lambda a: a.clip(0, None))
        self.register_buffer("count", np.array([3], np.int64))

    def forward(self, x):
        return self.head(self.conv(x)) * self.lam


ROOT = Path(__file__).resolve().parents[1]
X = np.random.default_rng(9).standard_normal((2, 2, 5, 5)).astype(np.float32)


def _train(model, opt, steps, sched=None):
    for _ in range(steps):
        opt.zero_grad()
        y = model(Tensor(X))
        (y * y).mean().backward()
        opt.step()
        if sched is not None:
            sched.step()


def _equal(a, b):
    """Equality of nested values, types included (a tuple is not a list)."""
    if isinstance(a, dict):
        return type(a) is type(b) and list(a) == list(b) and all(_equal(a[k], b[k])
                                                                  for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, np.ndarray):
        return type(b) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def _groups(model):
    return [{"params": [model.conv.weight, model.head.weight, model.lam]},
            {"params": [model.conv.bias, model.head.bias], "lr": 0.02}]


@pytest.mark.parametrize("make_opt", [
    lambda m: SGD(_groups(m), lr=0.01, momentum=0.9, weight_decay=1e-4, nesterov=True),
    lambda m: Adam(_groups(m), lr=1e-3, betas=(0.8, 0.95), weight_decay=1e-4)])
def test_round_trip_is_exact_and_training_continues_identically(tmp_path, make_opt):
    model = Small(0)
    opt = make_opt(model)
    sched = PolyLR(opt, max_iters=50)
    _train(model, opt, 3, sched)
    rng = np.random.default_rng(5)
    rng.standard_normal(7)
    extra = {"epoch": 3, "best": 0.125, "name": "run-a", "flags": (True, None),
             "history": [1.5, 2.5], "table": {"a": np.arange(4.0), 7: "int key"},
             "scheduler": sched.state_dict(), "rng": rng.bit_generator.state,
             "scalar": np.float64(0.1)}
    path = tmp_path / "ckpt.npz"
    segnp.save(path, model, opt, **extra)

    model2 = Small(1)
    opt2 = make_opt(model2)
    sched2 = PolyLR(opt2, max_iters=50)
    got = segnp.load(path, model2, opt2)
    assert _equal(model2.state_dict(), model.state_dict())
    assert _equal(opt2.state_dict(), opt.state_dict())
    assert got["scalar"] == 0.1 and type(got.pop("scalar")) is float
    expected = dict(extra)
    expected.pop("scalar")
    assert _equal(got, expected)

    sched2.load_state_dict(got["scheduler"])
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = got["rng"]
    assert np.array_equal(rng.standard_normal(3), rng2.standard_normal(3))
    _train(model, opt, 4, sched)
    _train(model2, opt2, 4, sched2)
    assert _equal(model2.state_dict(), model.state_dict())
    assert _equal(opt2.state_dict(), opt.state_dict())


def test_the_file_needs_no_pickle_and_names_its_arrays(tmp_path):
    model = Small(0)
    path = tmp_path / "m.npz"
    segnp.save(path, model, epoch=1)
    with np.load(path, allow_pickle=False) as archive:
        names = set(archive.files)
        np.testing.assert_array_equal(archive["model/conv.weight"], model.conv.weight.numpy())
    assert {"__header__", "model/lam", "model/count"} <= names
    ckpt = serialization.read_checkpoint(path)
    assert list(ckpt["model"]) == list(model.state_dict())
    assert ckpt["optimizer"] is None and ckpt["extra"] == {"epoch": 1}


def test_load_into_module_only_and_strict_keys(tmp_path):
    model = Small(0)
    path = tmp_path / "m.npz"
    segnp.save(path, model, Adam(model.parameters()))
    other = Small(1)
    assert segnp.load(path, other) == {}
    assert _equal(other.state_dict(), model.state_dict())

    class Bigger(Small):
        def __init__(self):
            super().__init__(2)
            self.more = Parameter(np.zeros(2))

    with pytest.raises(ValueError, match=r"load_state_dict: missing keys \['more'\]"):
        segnp.load(path, Bigger())


def test_load_errors_name_what_was_expected(tmp_path):
    model = Small(0)
    path = tmp_path / "m.npz"
    segnp.save(path, model)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        segnp.load(path, model, SGD(model.parameters(), lr=0.1))
    segnp.save(path, model, SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="expected optimizer state for Adam; the checkpoint "
                                         "holds SGD"):
        segnp.load(path, model, Adam(model.parameters()))
    junk = tmp_path / "junk.npz"
    np.savez(junk, a=np.zeros(2))
    with pytest.raises(ValueError, match="not a segnp checkpoint"):
        segnp.load(junk, model)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable segnp checkpoint"):
        segnp.load(text, model)


def test_save_refuses_code_and_wrong_types_without_writing(tmp_path):
    model = Small(0)
    path = tmp_path / "m.npz"
    with pytest.raises(TypeError, match=r"save: cannot store extra/hook of type function"):
        segnp.save(path, model, hook=lambda: 1)
    with pytest.raises(TypeError, match="save: cannot store extra/cfg/obj of type object"):
        segnp.save(path, model, cfg={"obj": object()})
    with pytest.raises(TypeError, match="save: module must be a segnp.nn.Module"):
        segnp.save(path, {"w": np.zeros(1)})
    assert os.listdir(tmp_path) == []


# ---- atomic writes --------------------------------------------------------------------------
def _crash_midway(exc):
    def write(f, arrays):
        f.write(b"PK\x03\x04 half a zip archive")
        f.flush()
        raise exc
    return write


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_a_crash_mid_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch,
                                                                     exc):
    model = Small(0)
    path = tmp_path / "ckpt.npz"
    segnp.save(path, model, epoch=1)
    old_bytes = path.read_bytes()
    model.lam.data[...] = 9.0
    monkeypatch.setattr(serialization, "_write_npz", _crash_midway(exc))
    with pytest.raises(type(exc)):
        segnp.save(path, model, epoch=2)
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    assert path.read_bytes() == old_bytes
    fresh = Small(1)
    assert segnp.load(path, fresh) == {"epoch": 1}
    assert fresh.lam.data[0] == np.float32(0.25)


def test_a_killed_process_leaves_the_old_checkpoint_intact(tmp_path):
    """os._exit mid-write: no clean-up runs at all, as when the process is killed."""
    path = tmp_path / "ckpt.npz"
    segnp.save(path, Small(0), epoch=1)
    old_bytes = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np, segnp
        from segnp import nn, serialization
        def die(f, arrays):
            f.write(b"PK partial")
            f.flush()
            os._exit(3)
        serialization._write_npz = die
        segnp.save({str(path)!r}, nn.Conv2d(2, 2, 1, rng=np.random.default_rng(0)), epoch=2)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert path.read_bytes() == old_bytes
    leftovers = [n for n in os.listdir(tmp_path) if n != "ckpt.npz"]
    assert all(n.startswith(".ckpt.npz.") and n.endswith(".tmp") for n in leftovers)
    assert segnp.load(path, Small(1)) == {"epoch": 1}


def test_save_replaces_an_existing_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    segnp.save(path, Small(0), epoch=1)
    segnp.save(path, Small(0), epoch=2)
    assert segnp.load(path, Small(1)) == {"epoch": 2}
    assert os.listdir(tmp_path) == ["ckpt.npz"]
