"""The experiment helpers: ROC AUC and pair distances against hand cases and naive
loops, mask quality, lr multiplier groups, weight transfer, downsampling, and the
trainer's logs and exact resume, and the figures (PNG files of README size, atomic
writes, argument checks)."""
import json
import os

import numpy as np
import pytest

import segnp
from segnp import nn
from segnp.experiments import (Trainer, lr_mult_groups, mask_quality, pair_distances,
                               roc_auc, transfer_weights, downsample_flow, write_logs,
                               finished)
from segnp.experiments import figures
from segnp.experiments.figures import boundary_pixel, pca_rgb, window_masks
from segnp.optim import SGD


def naive_auc(scores, positive):
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    total = 0.0
    for a in pos:
        for b in neg:
            total += 1.0 if a > b else 0.5 if a == b else 0.0
    return total / (len(pos) * len(neg))


def test_roc_auc_hand_case():
    # positives 0.35, 0.8; negatives 0.1, 0.4: pairs won 1 + 0 + 1 + 1 = 3 of 4
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half
    assert roc_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert roc_auc([1, 2, 3], [0, 1, 1]) == pytest.approx(1.0)
    assert roc_auc([3, 2, 1], [0, 1, 1]) == pytest.approx(0.0)
    assert np.isnan(roc_auc([1, 2], [1, 1]))


def test_roc_auc_matches_naive_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 57).astype(float)
    positive = rng.random(57) < 0.4
    assert roc_auc(scores, positive) == pytest.approx(naive_auc(scores, positive))
    with pytest.raises(ValueError, match="roc_auc"):
        roc_auc([1, 2, 3], [1, 0])


@pytest.mark.parametrize("distance", [1, 3])
def test_pair_distances_naive(distance):
    rng = np.random.default_rng(distance)
    N, D, H, W = 2, 3, 7, 9
    feat = rng.normal(size=(N, D, H, W))
    labels = rng.integers(0, 3, (N, H, W))
    labels[0, 2, 3] = 255
    dist, same = pair_distances(feat, labels, distance, norm="l1")
    k = max(1, int(round(distance / np.sqrt(2))))
    want_d, want_s = [], []
    for dy, dx in ((0, distance), (distance, 0), (k, k), (k, -k)):
        for n in range(N):
            for y in range(H):
                for x in range(W):
                    y2, x2 = y + dy, x + dx
                    if not (0 <= y2 < H and 0 <= x2 < W):
                        continue
                    if labels[n, y, x] == 255 or labels[n, y2, x2] == 255:
                        continue
                    want_d.append(np.abs(feat[n, :, y, x] - feat[n, :, y2, x2]).sum())
                    want_s.append(labels[n, y, x] == labels[n, y2, x2])
    assert sorted(np.round(dist, 10)) == sorted(np.round(want_d, 10))
    assert same.sum() == sum(want_s) and same.size == len(want_s)
    with pytest.raises(ValueError, match="pair_distances"):
        pair_distances(feat, labels[:, :-1], 1)


def test_mask_quality_separates_what_it_should():
    rng = np.random.default_rng(1)
    labels = np.zeros((2, 12, 12), np.int64)
    labels[:, :, 6:] = 1
    labels[1, 3:8, 2:5] = 2
    emb = np.eye(3)[labels].transpose(0, 3, 1, 2) * 5.0        # perfect embeddings
    colour = rng.normal(size=(2, 3, 12, 12))                     # colour says nothing
    q = mask_quality(emb, colour, labels, distance=2)
    assert q["embedding_auc"] == pytest.approx(1.0)
    assert 0.35 < q["colour_auc"] < 0.65
    assert q["embedding_same_mean"] == 0.0 and q["embedding_diff_mean"] == 10.0


def test_lr_mult_groups():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)
            self.aware = nn.SegAwareConv2d(3, 2, 3)
    net = Net()
    groups = lr_mult_groups(net, 0.1, {r"\.lam$": 10, r"^conv\.": 0.5})
    by_lr = {round(g["lr"], 6): len(g["params"]) for g in groups}
    assert by_lr == {0.05: 2, 0.1: 2, 1.0: 1}
    # a multiplier of 0 freezes: its parameters get no group
    groups = lr_mult_groups(net, 0.1, {r"^conv\.": 0})
    assert sum(len(g["params"]) for g in groups) == 3


def test_transfer_weights_scales_plain_into_normalised():
    src = nn.Conv2d(2, 3, 3, padding=1)

    class Dst(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.SegAwareConv2d(2, 3, 3)
    dst = Dst()
    state = {f"layer.{k}": v for k, v in src.state_dict().items()}
    names = transfer_weights(dst, state)
    assert sorted(names) == ["layer.bias", "layer.weight"]
    got = dst.state_dict()
    np.testing.assert_allclose(got["layer.weight"], 9 * state["layer.weight"], rtol=1e-6)
    np.testing.assert_array_equal(got["layer.bias"], state["layer.bias"])
    with pytest.raises(ValueError, match="transfer_weights"):
        transfer_weights(dst, {"layer.bias": np.zeros(4, np.float32)})


def test_downsample_flow_point_grid():
    # the target of a stride-s prediction sample i is the flow at input pixel s i
    flow = np.arange(2 * 2 * 9 * 6, dtype=np.float64).reshape(2, 2, 9, 6)
    out = downsample_flow(flow, 4)
    assert out.shape == (2, 2, 3, 2)
    for i in range(3):
        for j in range(2):
            np.testing.assert_array_equal(out[:, :, i, j], flow[:, :, 4 * i, 4 * j])
    with pytest.raises(ValueError, match="downsample_flow"):
        downsample_flow(flow, 0)


def test_flow_targets_match_prediction_shapes():
    from segnp.models import FlowNetS
    net = FlowNetS(widths=(4, 4, 4, 4))
    x = segnp.Tensor(np.zeros((1, 6, 36, 20), np.float32))
    _, scales = net(x)
    flow = np.zeros((1, 2, 36, 20), np.float32)
    for p, s in zip(scales, FlowNetS.SCALE_STRIDES):
        assert downsample_flow(flow, s).shape == p.shape


def _trainer(tmp_path, name, epochs, fail_at=None):
    from segnp import functions as F
    from segnp.autograd import Tensor
    from segnp.optim import PolyLR
    from segnp.random import manual_seed
    from segnp.data import DataLoader
    manual_seed(3)
    net = nn.Conv2d(3, 2, 3, padding=1)
    rng = np.random.default_rng(0)
    data = [{"image": rng.normal(size=(6, 6, 3)).astype(np.float32),
             "label": rng.integers(0, 2, (6, 6)).astype(np.uint8)} for _ in range(12)]
    loader = DataLoader(data, batch_size=4, shuffle=True, seed=5)
    opt = SGD(net.parameters(), lr=0.1, momentum=0.9)

    def step(model, batch):
        x, y = batch
        h = F.dropout(model(Tensor(x)), 0.3, True)     # draws from the library generator
        return F.softmax_cross_entropy(h, y), {"extra": 1.0}

    t = Trainer(net, opt, loader, step, str(tmp_path / name), epochs,
                scheduler=PolyLR(opt, epochs * len(loader)), progress=False,
                evaluate=lambda m: {"score": 0.5}, config={"task": "toy"})
    if fail_at is not None:
        original = t.run_epoch

        def run_epoch(epoch):
            if epoch == fail_at:
                raise KeyboardInterrupt
            return original(epoch)
        t.run_epoch = run_epoch
    return t, net


def test_trainer_resume_equals_uninterrupted(tmp_path):
    t, net = _trainer(tmp_path, "a", 3)
    hist = t.fit()
    want = {k: v.copy() for k, v in net.state_dict().items()}
    t2, _ = _trainer(tmp_path, "b", 3, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        t2.fit()
    assert not finished(tmp_path / "b")
    t3, net3 = _trainer(tmp_path, "b", 3)         # a fresh process would do this
    hist3 = t3.fit(resume=True)
    for k, v in net3.state_dict().items():
        np.testing.assert_array_equal(v, want[k])
    assert [h["loss"] for h in hist3] == [h["loss"] for h in hist]
    assert finished(tmp_path / "b")
    log = json.loads((tmp_path / "b" / "log.json").read_text())
    assert [r["epoch"] for r in log] == [1, 2, 3] and log[0]["score"] == 0.5
    csv_lines = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,loss,extra,lr,score") and len(csv_lines) == 4


def test_write_logs_union_of_keys(tmp_path):
    write_logs(str(tmp_path), [{"epoch": 1, "a": 0.5}, {"epoch": 2, "b": 2}])
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines == ["epoch,a,b", "1,0.5,", "2,,2"]
    assert not any(n.startswith(".") or "tmp" in n for n in os.listdir(tmp_path)
                   if n not in ("log.csv", "log.json"))


@pytest.mark.parametrize("variant", [{"segaware": "all"}, {"segaware": "fc6"}])
def test_unnormalised_segaware_starts_exactly_as_the_baseline(variant):
    """Fine-tuning from a trained baseline: with segaware_normalize=False and lam = 0 the
    segmentation-aware network computes what the baseline did, borders included."""
    from segnp.autograd import Tensor, no_grad
    from segnp.experiments import build_model
    from segnp.random import manual_seed
    manual_seed(0)
    small = {"widths": [4, 4, 6, 6], "fc_width": 8, "fc6_dilation": 2, "dropout": 0.0,
             "num_classes": 3}
    emb = {"widths": [4, 4, 4], "embed_dim": 3, "side_dim": 2}
    base = build_model({"task": "segmentation", "model": small})
    aware = build_model({"task": "segmentation", "embedder": emb,
                         "model": dict(small, segaware_normalize=False, **variant)})
    names = transfer_weights(aware, base.state_dict())
    assert len(names) == len(base.state_dict())
    x = Tensor(np.random.default_rng(0).normal(size=(2, 3, 19, 17)).astype(np.float32))
    with no_grad():
        want = base.eval()(x).data
        got = aware.eval()(x).data
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the normalised form (Eq. 7) differs near the borders of small feature maps
    normed = build_model({"task": "segmentation", "embedder": emb,
                          "model": dict(small, **variant)})
    transfer_weights(normed, base.state_dict())
    with no_grad():
        assert not np.allclose(normed.eval()(x).data, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- figures

def test_figure_helpers():
    labels = np.zeros((15, 15), np.int64)
    labels[:, 8:] = 1
    r, c = boundary_pixel(labels, 3)
    assert c in (7, 8) and 3 <= r < 12
    assert boundary_pixel(np.zeros((9, 9), np.int64), 2) == (4, 4)
    feat = np.zeros((2, 15, 15))
    feat[0][labels == 1] = 4.0
    m = window_masks(feat, (7, 7), 3, lam=1.0)
    assert m.shape == (7, 7) and m[3, 3] == 1.0
    np.testing.assert_allclose(m[:, 4:], np.exp(-4.0))   # columns 8.. are the other side
    np.testing.assert_allclose(m[:, :4], 1.0)
    rng = np.random.default_rng(2)
    e = rng.normal(size=(4, 6, 5))
    pca, basis = pca_rgb(e)
    assert pca.shape == (6, 5, 3) and pca.dtype == np.uint8 and len(basis) == 4
    np.testing.assert_array_equal(pca_rgb(e, basis)[0], pca)
    # the first component is the direction of largest spread: along it, red varies most
    e = np.zeros((3, 4, 4))
    e[1] = np.arange(16).reshape(4, 4)
    pca, _ = pca_rgb(e)
    assert pca[..., 0].std() > 10 and pca[..., 1].std() == 0


def _scene_batch(n=2, size=16):
    from segnp.data.flyingshapes import render_scene
    from segnp.experiments.data import preprocess
    scenes = [render_scene(0, i, (size, size)) for i in range(n)]
    img = np.stack([s["image1"] for s in scenes])
    mean = img.reshape(-1, 3).mean(0)
    x = preprocess(img, mean, 1 / 64)
    labels = np.stack([s["label"] for s in scenes]).astype(np.int64)
    flow = np.stack([s["flow"] for s in scenes]).transpose(0, 3, 1, 2)
    return x, labels, flow, mean


def _png(path, tmp_path, width=(900, 1450), height=(250, 1100)):
    """The PNG at ``path`` as (H, W, 3) after checking its size and that the folder holds
    no temporary file."""
    import imageio.v3 as iio
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]
    img = iio.imread(path)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] in (3, 4)
    assert width[0] <= img.shape[1] <= width[1] and height[0] <= img.shape[0] <= height[1]
    return img[..., :3]


def _has_colour(img, rgb):
    return bool((img == np.asarray(rgb, np.uint8)).all(-1).any())


def test_figure_embeddings_png(tmp_path):
    x, labels, _, mean = _scene_batch()
    e = np.random.default_rng(0).normal(size=(2, 4, 16, 16))
    out = figures.figure_embeddings(tmp_path / "fig3.png", x, labels, e, mean, 1 / 64,
                                    radius=3, class_names=["background", "a", "b"])
    img = _png(out, tmp_path)
    pal = segnp.io.label_palette()
    win = [labels[n][r - 3:r + 4, c - 3:c + 4]
           for n, (r, c) in enumerate(boundary_pixel(lab, 3) for lab in labels)]
    for k in np.unique(win):  # every class of a window is drawn in its palette colour
        assert _has_colour(img, pal[k])
    with pytest.raises(ValueError, match="figure_embeddings: embeddings"):
        figures.figure_embeddings(tmp_path / "x.png", x, labels, e[:, :, :8], mean, 1 / 64)
    with pytest.raises(ValueError, match="figure_embeddings: radius"):
        figures.figure_embeddings(tmp_path / "x.png", x, labels, e, mean, 1 / 64, radius=8)
    assert sorted(os.listdir(tmp_path)) == ["fig3.png"]


def test_figure_bilateral_and_predictions_png(tmp_path):
    from segnp.models import EmbeddingNet, SegNet
    from segnp.random import manual_seed
    x, labels, _, mean = _scene_batch()
    manual_seed(0)
    net = SegNet(7, widths=(4, 4, 4, 4), fc_width=4, bf=(1, 3), dropout=0.0,
                 embedder=EmbeddingNet((4, 4, 4), 4, 2))
    out = figures.figure_bilateral(tmp_path / "fig4.png", net, x, labels, mean, 1 / 64,
                                   count=1)
    assert net.bf is not None   # put back after drawing the scores before it
    _png(out, tmp_path, height=(200, 600))
    with pytest.raises(ValueError, match="figure_bilateral: model"):
        figures.figure_bilateral(tmp_path / "x.png", SegNet(7, widths=(4, 4, 4, 4),
                                                            fc_width=4), x, labels, mean, 1)
    with pytest.raises(ValueError, match="figure_bilateral: labels"):
        figures.figure_bilateral(tmp_path / "x.png", net, x, labels[:, :8], mean, 1)
    os.remove(out)
    pred = np.full_like(labels, 3)
    out = figures.figure_predictions(tmp_path / "pred.png", x, labels, {"run 1": pred}, mean,
                                     1 / 64, count=1, class_names=["bg", "a", "b", "c"])
    img = _png(out, tmp_path, width=(500, 1450), height=(200, 600))
    assert _has_colour(img, segnp.io.label_palette()[3])
    with pytest.raises(ValueError, match="figure_predictions: count"):
        figures.figure_predictions(tmp_path / "x.png", x, labels, {"a": pred}, mean, 1,
                                   count=0)


def test_figure_trimap_png(tmp_path):
    rng = np.random.default_rng(1)
    K = np.arange(1, 6)
    curves = {"baseline": (K, 20 + rng.random((3, 5))), "bf": (K, 21 + rng.random((3, 5))),
              "crf": (K, 22 + rng.random(5), 0.5 * np.ones(5))}
    out = figures.figure_trimap(tmp_path / "fig7.png", curves, reference="baseline")
    _png(out, tmp_path, height=(400, 700))
    with pytest.raises(ValueError, match="figure_trimap: reference 'z'"):
        figures.figure_trimap(tmp_path / "x.png", curves, reference="z")
    with pytest.raises(ValueError, match="figure_trimap: curves\\['b'\\] must have the half"):
        figures.figure_trimap(tmp_path / "x.png", {"a": (K, K), "b": (K + 1, K)}, "a")
    with pytest.raises(ValueError, match="figure_trimap: curves\\['a'\\]: the spread"):
        figures.figure_trimap(tmp_path / "x.png", {"a": (K, K, K[:2])})
    with pytest.raises(ValueError, match="figure_trimap: curves must be"):
        figures.figure_trimap(tmp_path / "x.png", {})
    assert sorted(os.listdir(tmp_path)) == ["fig7.png"]


def test_figure_flow_png(tmp_path):
    x, _, flow, mean = _scene_batch()
    flows = {"zero": np.zeros_like(flow), "true": flow.copy()}
    out = figures.figure_flow(tmp_path / "fig8.png", x, flow, flows, mean, 1 / 64, count=1,
                              epes={"zero": 1.0})
    img = _png(out, tmp_path, height=(200, 600))
    m = np.sqrt((flow[0] ** 2).sum(0)).max()
    # the first row's true flow, in its colour coding, is in the figure
    corner = segnp.io.flow_to_color(flow[0].transpose(1, 2, 0), m)[0, 0]
    assert _has_colour(img, corner)
    with pytest.raises(ValueError, match="figure_flow: epes"):
        figures.figure_flow(tmp_path / "x.png", x, flow, flows, mean, 1, epes={"z": 1.0})
    with pytest.raises(ValueError, match="figure_flow: flows\\['zero'\\]"):
        figures.figure_flow(tmp_path / "x.png", x, flow, {"zero": flow[:, :, :8]}, mean, 1)
    with pytest.raises(FileNotFoundError, match="figure_flow"):
        figures.figure_flow(tmp_path / "no" / "x.png", x, flow, flows, mean, 1)
    assert sorted(os.listdir(tmp_path)) == ["fig8.png"]


def test_sharpening_schedule_raises_frozen_lams_linearly_and_resumes():
    from segnp.experiments.runs import _SharpeningPolyLR
    from segnp.models import SegNet
    from segnp.optim import Adam
    net = SegNet(3, widths=(2, 2, 2, 2), fc_width=4, segaware="all",
                 lam_init={"body.0": 0.5, "fc6": 0.25})
    layers = [layer for _, layer, _ in net.segaware_layers()]
    opt = Adam(net.fc8.parameters(), lr=1e-2)
    sched = _SharpeningPolyLR(opt, 4, layers, 3.0)
    for t in range(6):
        frac = min(t, 4) / 4
        assert float(net.body[0].lam.data) == pytest.approx(0.5 * (1 + 2 * frac))
        assert float(net.fc6.lam.data) == pytest.approx(0.25 * (1 + 2 * frac))
        assert float(net.body[1].lam.data) == 0.0     # 0 stays 0
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 * (1 - frac) ** 0.9)
        sched.step()
    # a resumed run: rebuilt with the start lams, its schedule restored at step 2 of 4
    state = json.loads(json.dumps(dict(sched.state_dict(), last_epoch=2)))
    net.body[0].lam.data[...] = 0.5
    again = _SharpeningPolyLR(Adam(net.fc8.parameters(), lr=1e-2), 4, layers[:1], 3.0)
    again.load_state_dict(state)
    assert float(net.body[0].lam.data) == pytest.approx(0.5 * 2.0)


def test_flow_step_final_is_the_full_resolution_epe_alone():
    """``loss="final"`` (the reproduction's flow fine-tuning) is the full-resolution
    end-point error alone; the default adds FlowNet's coarser scales."""
    from segnp.autograd import Tensor, no_grad
    from segnp.experiments.tasks import flow_step
    from segnp.models import FlowNetS
    from segnp.random import manual_seed
    manual_seed(4)
    net = FlowNetS(widths=(4, 4, 4, 4)).eval()
    rng = np.random.default_rng(1)
    image1, image2 = (rng.standard_normal((2, 3, 16, 12)).astype(np.float32)
                      for _ in range(2))
    flow = rng.standard_normal((2, 2, 16, 12)).astype(np.float32)
    with no_grad():
        final, _ = flow_step(net, (image1, image2, flow), loss="final")
        multi, _ = flow_step(net, (image1, image2, flow))
        pred, _ = net(Tensor(np.concatenate([image1, image2], axis=1)))
    epe = np.sqrt(((pred.data - flow) ** 2).sum(axis=1)).mean()
    np.testing.assert_allclose(final.item(), epe, rtol=1e-5)
    assert multi.item() > final.item() + 0.1


def test_run_flow_trains_on_the_loss_it_is_given(tmp_path, monkeypatch):
    """run_flow hands its ``loss`` to every training step, and refuses an unknown one
    before it builds anything."""
    from segnp.experiments import runs
    from segnp.experiments.data import load_split
    with pytest.raises(ValueError, match=r"run_flow: loss must be one of \('multiscale', "
                                         r"'final'\); got 'l2'"):
        runs.run_flow(str(tmp_path / "never"), None, loss="l2")
    assert not (tmp_path / "never").exists()
    seen = []
    real = runs.flow_step
    monkeypatch.setattr(runs, "flow_step", lambda model, batch, loss="multiscale": (
        seen.append(loss), real(model, batch, loss=loss))[1])
    train = load_split("flow", None, "train", 4, 32, str(tmp_path / "cache"))
    for loss in ("final", "multiscale"):
        seen.clear()
        runs.run_flow(str(tmp_path / loss), train, epochs=1, batch_size=2,
                      model={"widths": [4, 4, 4, 4]}, progress=False, loss=loss)
        assert seen == [loss, loss]
