"""The experiment helpers: ROC AUC and pair distances against hand cases and naive
loops, mask quality, lr multiplier groups, weight transfer, downsampling, figures,
and the trainer's logs and exact resume."""
import json
import os

import numpy as np
import pytest

import segnp
from segnp import nn
from segnp.experiments import (Trainer, lr_mult_groups, mask_quality, pair_distances,
                               roc_auc, transfer_weights, downsample_flow, write_logs,
                               finished)
from segnp.experiments.figures import boundary_pixel, window_masks, figure_trimap
from segnp.experiments.raster import grid, line_plot, pca_rgb
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


def test_figures_and_raster():
    rng = np.random.default_rng(2)
    labels = np.zeros((15, 15), np.int64)
    labels[:, 8:] = 1
    r, c = boundary_pixel(labels, 3)
    assert labels[r, c] != labels[r, c - 1] or labels[r, c] != labels[r, c + 1] or \
        c in (7, 8)
    feat = np.zeros((2, 15, 15))
    feat[0][labels == 1] = 4.0
    m = window_masks(feat, (7, 7), 3, lam=1.0)
    assert m.shape == (7, 7) and m[3, 3] == 1.0
    np.testing.assert_allclose(m[:, 4:], np.exp(-4.0))   # columns 8.. are the other side
    img = figure_trimap({"a": (np.arange(1, 6), rng.random(5)), "b": (np.arange(1, 6),
                                                                    rng.random(5))})
    assert img.dtype == np.uint8 and img.ndim == 3 and (img != 255).any()
    two = figure_trimap({"a": (np.arange(1, 6), rng.random(5)),
                         "b": (np.arange(1, 6), rng.random(5))}, reference="a")
    assert two.shape[0] == img.shape[0] and two.shape[1] == 2 * img.shape[1] + 12
    with pytest.raises(ValueError, match="figure_trimap"):
        figure_trimap({"a": (np.arange(3), np.ones(3))}, reference="z")
    cells = [[np.zeros((5, 6, 3), np.uint8), np.zeros((5, 4), np.uint8)]]
    g = grid(cells, col_titles=["x", "y"])
    assert g.shape[1] == 6 + 4 + 3 * 4
    pca, basis = pca_rgb(rng.normal(size=(4, 6, 5)))
    assert pca.shape == (6, 5, 3) and len(basis) == 4
    plot = line_plot({"x": ([0, 1], [0, 1])})
    assert plot.shape == (300, 460, 3)


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


def test_tick_labels_have_no_negative_zero():
    from segnp.experiments.raster import _fmt
    assert _fmt(-0.0, 1.0) == "0"
    assert _fmt(-1e-17, 0.5) == "0.0"
    assert _fmt(-0.5, 0.5) == "-0.5"
