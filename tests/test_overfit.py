"""A tiny CNN must overfit 8 generated images: the whole stack (layers, tape, optimizers)
working together.  The loss must fall at least 10x with SGD + momentum and with Adam."""
import numpy as np
import pytest

import segnp
import segnp.functions as F
from segnp import Tensor, nn, optim


def eight_images(seed=0, size=12):
    """(8, 3, size, size) float32 images with one bright square each on a dark noisy
    background, and (8, size, size) labels: 1 inside the square, 0 outside."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.3, (8, 3, size, size))
    y = np.zeros((8, size, size), np.int64)
    for i in range(8):
        h, w = rng.integers(3, 7, 2)
        top, left = rng.integers(0, size - h), rng.integers(0, size - w)
        x[i, :, top:top + h, left:left + w] = rng.uniform(0.6, 1.0, (3, 1, 1))
        y[i, top:top + h, left:left + w] = 1
    return x.astype(np.float32), y


def tiny_cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(),
                         nn.Conv2d(8, 2, 1))


def train(make_opt, steps):
    segnp.manual_seed(0)
    model = tiny_cnn()
    opt = make_opt(model.parameters())
    x, y = eight_images()
    x = Tensor(x)
    losses = []
    for _ in range(steps):
        loss = F.softmax_cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses), model, x, y


@pytest.mark.parametrize("make_opt,steps", [
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), 150),
    (lambda ps: optim.Adam(ps, lr=0.02), 150)], ids=["sgd-momentum", "adam"])
def test_tiny_cnn_overfits_eight_images(make_opt, steps):
    losses, model, x, y = train(make_opt, steps)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])
    with segnp.no_grad():
        pred = model(x).numpy().argmax(axis=1)
    assert (pred == y).mean() > 0.99


def _load_quickstart():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    spec = importlib.util.spec_from_file_location("quickstart", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_prints_a_falling_loss_and_saves_a_loadable_checkpoint(tmp_path, capsys):
    import re
    quickstart = _load_quickstart()
    ckpt = tmp_path / "quick.npz"
    quickstart.main(["--iters", "60", "--seed", "0", "--checkpoint", str(ckpt)])
    out = capsys.readouterr().out
    running = [float(v) for v in re.findall(r"\(running ([0-9.]+)\)", out)]
    assert len(running) == 7  # iterations 1, 10, ..., 60
    assert running[-1] < running[0] / 3, out
    assert re.search(r"held-out pixel accuracy 0\.\d+ +mIoU 0\.\d+", out), out
    model = quickstart.TinySegNet()
    extra = segnp.load(ckpt, model)
    assert extra["iteration"] == 60 and extra["scheduler"]["last_epoch"] == 60
