"""segnp.window.Window: the window of a segmentation-aware op, worked out once."""
import dataclasses
import os
import re

import numpy as np
import pytest

import segnp.functions as F
from segnp.autograd import Tensor
from segnp import window as window_module
from segnp.backends.cuda.source import CUDA_DIR
from segnp.window import Window


def test_fields_are_those_of_the_cuda_segwindow_struct_in_order():
    with open(os.path.join(CUDA_DIR, "window.cuh")) as f:
        struct = re.search(r"struct SegWindow \{\s*int ([^;]+);", f.read()).group(1)
    assert [n.strip() for n in struct.split(",")] == \
        [f.name for f in dataclasses.fields(Window)]


def test_defaults_centre_and_padding_rule():
    w = Window.segaware("f", 7, 6, 3, stride=2, dilation=(1, 2))
    assert w.ints() == (7, 6, 3, 4, 3, 2, 2, 1, 2, 1, 2) and w.centre == (0, 0)
    assert Window.segaware("f", 7, 6, 3, padding=0).centre == (1, 1)
    with pytest.raises(ValueError, match=r"f: padding must be at most dilation\*\(ksize//2\)"):
        Window.segaware("f", 7, 6, 3, padding=2)
    with pytest.raises(ValueError, match="f: ksize must be odd"):
        Window.segaware("f", 7, 6, 4)
    with pytest.raises(ValueError, match=r"f: the window was built for a \(7, 6\) input; "
                                         r"got \(7, 7\)"):
        w.of("f", 7, 7)


def test_segaware_conv2d_works_the_window_out_once(monkeypatch):
    calls = []
    real = window_module.segaware_geometry
    monkeypatch.setattr(window_module, "segaware_geometry",
                        lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    rng = np.random.default_rng(0)
    x, e = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((2, 2, 6, 5))
    W = rng.standard_normal((4, 3, 3, 3))
    y = F.segaware_conv2d(Tensor(x, requires_grad=True), Tensor(e, requires_grad=True),
                          Tensor(W, requires_grad=True), lam=0.5, stride=2)
    assert calls == ["segaware_conv2d"]
    y.sum().backward()
    assert calls == ["segaware_conv2d"]
