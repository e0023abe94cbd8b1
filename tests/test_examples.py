"""The example scripts: --help, a 20-step training smoke test with a falling loss for
each script's model, exact resume through the scripts, evaluate and visualize on the
checkpoints they write."""
import importlib.util
import json
import os

import numpy as np
import pytest

from segnp import serialization
from segnp.experiments import (EMBEDDING_DEFAULTS, FLOWNET_DEFAULTS, SEGNET_DEFAULTS,
                               Trainer, build_model, embedding_step, flow_step,
                               segmentation_step)
from segnp.optim import Adam
from segnp.random import manual_seed

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")
SCRIPTS = ("train_embeddings", "train_segmentation", "train_flow", "evaluate", "visualize",
           "reproduce")


def script(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  os.path.join(EXAMPLES, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        script(name).main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--backend" in out and "--seed" in out


def _batch(task, rng, N=4, S=24):
    labels = np.zeros((N, S, S), np.int64)
    for n in range(N):   # two rectangles of different classes on background
        labels[n, 3:12, 4 + n:14 + n] = 1
        labels[n, 14:22, 10:20 - n] = 2
    palette = np.array([[-1.0, 0.2, 0.8], [0.5, -0.7, 0.1], [1.0, 0.9, -1.0]])
    images = palette[labels].transpose(0, 3, 1, 2).astype(np.float32)
    images += rng.normal(scale=0.3, size=images.shape).astype(np.float32)
    if task != "flow":
        return images, labels
    flow = np.zeros((N, 2, S, S), np.float32)
    flow[:, 0][labels == 1] = 1.5
    flow[:, 1][labels == 2] = -1.0
    return images, images[:, :, :, ::-1].copy(), flow


@pytest.mark.parametrize("task", ["embedding", "segmentation", "flow"])
def test_twenty_steps_lower_the_loss(task):
    """The model each training script builds, on one fixed batch, 20 Adam steps."""
    manual_seed(0)
    rng = np.random.default_rng(0)
    model_cfg = {"embedding": EMBEDDING_DEFAULTS,
                 "segmentation": dict(SEGNET_DEFAULTS, num_classes=3, segaware="fc6",
                                      dropout=0.0),
                 "flow": dict(FLOWNET_DEFAULTS, segaware=True)}[task]
    embedder = None if task == "embedding" else EMBEDDING_DEFAULTS
    net = build_model({"task": task, "model": model_cfg, "embedder": embedder})
    step = {"embedding": embedding_step, "segmentation": segmentation_step,
            "flow": flow_step}[task]
    batch = _batch(task, rng)
    opt = Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss, _ = step(net, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


COMMON = ["--count", "8", "--test-count", "4", "--size", "32", "--batch-size", "4",
          "--no-progress"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache")
    os.environ["SEGNP_CACHE"] = str(path)
    yield str(path)
    os.environ.pop("SEGNP_CACHE", None)


def _params(path):
    return serialization.read_checkpoint(path)["model"]


def _resume_equals(tmp_path, name, args, epochs=2):
    """Train ``epochs`` epochs in one go, and in another folder kill the run in its last
    epoch and resume it: the parameters must be identical."""
    mod = script(name)
    full, part = str(tmp_path / f"{name}-full"), str(tmp_path / f"{name}-part")
    mod.main(args + ["--out", full, "--epochs", str(epochs)])
    original = Trainer.run_epoch

    def dies_in_last_epoch(self, epoch):
        if epoch == epochs - 1:
            raise KeyboardInterrupt
        return original(self, epoch)
    Trainer.run_epoch = dies_in_last_epoch
    try:
        with pytest.raises(KeyboardInterrupt):
            mod.main(args + ["--out", part, "--epochs", str(epochs)])
    finally:
        Trainer.run_epoch = original
    mod.main(args + ["--out", part, "--epochs", str(epochs), "--resume"])
    a, b = _params(os.path.join(full, "checkpoint.npz")), _params(os.path.join(part,
                                                                              "checkpoint.npz"))
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    log = json.load(open(os.path.join(part, "log.json")))
    assert [r["epoch"] for r in log] == list(range(1, epochs + 1))
    return full


@pytest.fixture(scope="module")
def embedder(cache, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("emb") / "run")
    script("train_embeddings").main(COMMON + ["--out", out, "--epochs", "1"])
    return os.path.join(out, "checkpoint.npz")


def test_embeddings_resume_and_outputs(cache, tmp_path):
    full = _resume_equals(tmp_path, "train_embeddings", COMMON)
    q = json.load(open(os.path.join(full, "mask_quality.json")))
    assert 0 <= q["embedding_auc"] <= 1 and 0 <= q["colour_auc"] <= 1
    assert open(os.path.join(full, "log.csv")).readline().startswith("epoch,loss")


def test_segmentation_resume_with_embedder(cache, embedder, tmp_path):
    full = _resume_equals(tmp_path, "train_segmentation",
                          COMMON + ["--variant", "all-bf", "--embedder", embedder])
    log = json.load(open(os.path.join(full, "log.json")))
    assert {"miou", "trimap3_miou", "trimap10_miou", "pixel_acc"} <= set(log[-1])
    ev = script("evaluate").main([os.path.join(full, "checkpoint.npz"), "--test-count", "4",
                                  "--size", "32", "--no-progress"])
    assert ev["task"] == "segmentation" and len(ev["curve_miou"]) == 40
    assert ev["miou"] == pytest.approx(log[-1]["miou"])
    figs = script("visualize").main([os.path.join(full, "checkpoint.npz"), "--size", "32",
                                     "--count", "2", "--out", str(tmp_path / "figs")])
    assert any(f.endswith("fig4_bilateral.png") for f in figs)
    assert all(os.path.getsize(f) > 100 for f in figs)


def test_segmentation_variant_needs_embedder(cache, tmp_path):
    with pytest.raises(SystemExit):
        script("train_segmentation").main(COMMON + ["--variant", "fc6", "--out",
                                                    str(tmp_path / "x")])


def test_flow_resume_segaware(cache, embedder, tmp_path):
    full = _resume_equals(tmp_path, "train_flow",
                          COMMON + ["--segaware", "--embedder", embedder])
    log = json.load(open(os.path.join(full, "log.json")))
    assert log[-1]["epe"] > 0 and log[-1]["aae"] > 0
    figs = script("visualize").main([os.path.join(full, "checkpoint.npz"), "--size", "32",
                                     "--count", "2", "--out", str(tmp_path / "figs")])
    assert figs[0].endswith("fig8_flow.png") and os.path.getsize(figs[0]) > 100


def test_embedding_figure(cache, embedder, tmp_path):
    figs = script("visualize").main([embedder, "--size", "32", "--count", "2", "--out",
                                     str(tmp_path / "figs")])
    assert figs[0].endswith("fig3_embeddings.png")
    ev = script("evaluate").main([embedder, "--test-count", "4", "--size", "32",
                                  "--no-progress", "--metrics", str(tmp_path / "m.json")])
    assert "embedding_auc" in ev and "embedding_loss" in ev


def test_segmentation_from_baseline_init(cache, embedder, tmp_path):
    """--init of a trained baseline into a segmentation-aware variant: 'auto' picks the
    unnormalised form, recorded in the run config so that evaluation rebuilds it."""
    base = str(tmp_path / "base")
    script("train_segmentation").main(COMMON + ["--out", base, "--epochs", "1"])
    out = str(tmp_path / "fc6")
    hist = script("train_segmentation").main(
        COMMON + ["--out", out, "--epochs", "1", "--variant", "fc6", "--embedder", embedder,
                  "--init", os.path.join(base, "checkpoint.npz")])
    cfg = serialization.read_checkpoint(os.path.join(out, "checkpoint.npz"))["extra"]["config"]
    assert cfg["model"]["segaware_normalize"] is False and cfg["model"]["segaware"] == "fc6"
    assert np.isfinite(hist[-1]["loss"])


def test_embedder_mult_zero_freezes_the_embedder(cache, embedder, tmp_path):
    """embedder_mult=0: the pre-trained embedder gets no gradient and keeps its weights
    while the rest of the segmentation-aware network trains."""
    from segnp.experiments import load_split, load_state, run_segmentation
    train = load_split("segmentation", None, "train", 8, 32, cache)
    emb = load_state(embedder)
    net, hist = run_segmentation(str(tmp_path / "frozen"), train, variant={"bf": [1, 5]},
                                 epochs=1, batch_size=4, embedder=emb, embedder_mult=0.0,
                                 progress=False)
    assert not any(p.requires_grad for p in net.embedder.parameters())
    assert all(p.grad is None for p in net.embedder.parameters())
    state = net.state_dict()
    for k, v in emb[0].items():
        np.testing.assert_array_equal(state["embedder." + k], v, err_msg=k)
    assert float(np.asarray(state["bf.lam"])) != 1.0   # the filter itself trained
    assert np.isfinite(hist[-1]["loss"])


def test_a_frozen_embedders_cache_takes_bitwise_the_same_steps(cache, embedder, tmp_path,
                                                               monkeypatch):
    """A row with a frozen embedder looks its embeddings up in an EmbeddingCache: over
    3 epochs of flipped batches it embeds each (image, flip) once, and ends with the
    very parameters and losses of the same run that embeds every batch again."""
    from segnp.experiments import load_split, load_state, run_segmentation, runs
    from segnp.experiments.embedding_cache import EmbeddingCache
    from segnp.experiments.tasks import segmentation_step
    train = load_split("segmentation", None, "train", 8, 32, cache)
    kw = dict(variant={"segaware": "all", "bf": [1, 5]}, epochs=3, batch_size=4,
              embedder=load_state(embedder), embedder_mult=0.0, progress=False, seed=3)
    made = []

    class Recorded(EmbeddingCache):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(runs, "EmbeddingCache", Recorded)
    cached, hist = run_segmentation(str(tmp_path / "cached"), train, **kw)
    (c,), = [made]
    assert c.hits + c.misses == 3 * 8 and 8 <= c.misses < 3 * 8 and c.hits > 0
    assert c.misses == len(c._store)
    monkeypatch.setattr(runs, "frozen_embedder_step",
                        lambda model, batch, cache: segmentation_step(model, batch))
    plain, plain_hist = run_segmentation(str(tmp_path / "plain"), train, **kw)
    assert len(made) == 1 or made[1].hits + made[1].misses == 0  # the cache went unused
    assert [h["loss"] for h in hist] == [h["loss"] for h in plain_hist]
    a, b = cached.state_dict(), plain.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_only_an_exact_frozen_embedder_run_caches_embeddings(cache, embedder, tmp_path,
                                                            monkeypatch):
    """The cache is used for a frozen embedder on NumPy arrays alone: not when the
    embedder trains, not for the oracle row, not on CuPy (its batched products may round
    an image differently in another batch) and not with the paper's random crops."""
    import types
    from segnp.experiments import load_split, load_state, run_segmentation, runs
    train = load_split("segmentation", None, "train", 8, 32, cache)
    steps = []
    monkeypatch.setattr(runs, "_fit", lambda model, opt, loader, step, *a, **k:
                        steps.append(step) or [])
    kw = dict(variant={"bf": [1, 5]}, epochs=1, batch_size=4, embedder=load_state(embedder),
              progress=False)
    for name, extra in [("frozen", {"embedder_mult": 0.0}), ("trains", {"embedder_mult": 0.1}),
                        ("oracle", {"embedder_mult": 0.0, "oracle": True})]:
        run_segmentation(str(tmp_path / name), train, **kw, **extra)
    assert runs._caches_embeddings(paper=False) and not runs._caches_embeddings(paper=True)
    monkeypatch.setattr(runs, "get_backend", lambda: types.SimpleNamespace(xp=object()))
    run_segmentation(str(tmp_path / "device"), train, **kw, embedder_mult=0.0)
    cached = [getattr(s, "func", s) is runs.frozen_embedder_step for s in steps]
    assert cached == [True, False, False, False]
