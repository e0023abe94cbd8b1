"""The reproduction protocol's pieces: lam calibration, the job scheduler, the oracle
embeddings, SegNet's output stride and per-layer lams, the mean masks of same- and
different-region taps, and the report tables."""
import numpy as np
import pytest

from segnp.experiments.masks import layer_mask_means
from segnp.experiments.protocol import seed_jobs
from segnp.experiments.report import report_lines, stat, summary_lines
from segnp.experiments.schedule import Job, bottom_levels, run_jobs
from segnp.experiments.tasks import label_embeddings
from segnp.models import FlowNetS, SegNet
from segnp.nn import SegAwareConv2d, calibrate_lams, tap_distances


def naive_tap_distances(e, labels, ksize, dilation):
    """Every (pixel, in-image off-centre tap) pair by loops, straight from the window."""
    N, D, H, W = e.shape
    r = ksize // 2
    ds, same = [], []
    for n in range(N):
        for y in range(H):
            for x in range(W):
                for ky in range(-r, r + 1):
                    for kx in range(-r, r + 1):
                        yy, xx = y + ky * dilation, x + kx * dilation
                        if (ky, kx) == (0, 0) or not (0 <= yy < H and 0 <= xx < W):
                            continue
                        ds.append(np.abs(e[n, :, y, x] - e[n, :, yy, xx]).sum())
                        same.append(labels[n, y, x] == labels[n, yy, xx])
    return np.array(ds), np.array(same)


@pytest.mark.parametrize("ksize,dilation", [(3, 1), (3, 2), (5, 1)])
def test_tap_distances_matches_loops(ksize, dilation):
    rng = np.random.default_rng(0)
    e = rng.standard_normal((2, 3, 6, 7))
    labels = rng.integers(0, 3, (2, 6, 7))
    d, same = tap_distances(e, labels, ksize, dilation)
    nd, nsame = naive_tap_distances(e, labels, ksize, dilation)
    # the same multiset of (distance, same) pairs, in another order
    order = np.lexsort((d, same))
    norder = np.lexsort((nd, nsame))
    np.testing.assert_allclose(d[order], nd[norder], rtol=1e-12)
    np.testing.assert_array_equal(same[order], nsame[norder])


def test_tap_distances_leaves_out_ignored_pixels_and_checks_shapes():
    e = np.zeros((1, 2, 4, 4))
    labels = np.full((1, 4, 4), 255)
    labels[0, :2] = 1
    d, same = tap_distances(e, labels, 3, 1)
    assert same.all() and (d == 0).all()
    assert same.size == naive_tap_distances(e[:, :, :2], labels[:, :2], 3, 1)[0].size
    with pytest.raises(ValueError, match="tap_distances: e must be"):
        tap_distances(np.zeros((1, 2, 4, 4)), np.zeros((1, 4, 5)), 3, 1)


def test_calibrate_lams_gives_the_same_region_median_the_asked_mask():
    rng = np.random.default_rng(1)
    labels = np.zeros((2, 48, 48), np.int64)
    labels[:, :, 24:] = 1
    e = rng.random((2, 4, 48, 48)) * 0.2 + labels[:, None] * 2.0
    net = SegNet(2, widths=(2, 2, 2, 2), fc_width=4, segaware="all")
    stats = calibrate_lams(net.segaware_layers(), e, labels, keep=0.8)
    assert list(stats) == [f"body.{i}" for i in range(8)] + ["fc6"]
    for name, layer, stride in net.segaware_layers():
        dil = layer.dilation[0]
        d, same = tap_distances(e[..., ::stride, ::stride], labels[:, ::stride, ::stride],
                                3, dil)
        lam = float(layer.lam.data)
        assert lam == pytest.approx(stats[name]["lam"])
        assert np.exp(-lam * np.median(d[same])) == pytest.approx(0.8)
        # different regions are 2 apart here: their mask is far below a same-region one
        assert stats[name]["diff_mask"] < 0.2
        assert not layer.lam.requires_grad
    with pytest.raises(ValueError, match="keep must be in"):
        calibrate_lams(net.segaware_layers(), e, labels, keep=1.0)


def test_segnet_output_stride_and_per_layer_lams():
    net = SegNet(3, widths=(2, 2, 2, 2), fc_width=4, segaware="all", output_stride=4,
                 lam_init={"fc6": 0.5, "body.0": 0.25})
    strides = {name: s for name, _, s in net.segaware_layers()}
    assert strides == {"body.0": 1, "body.1": 1, "body.2": 2, "body.3": 2, "body.4": 4,
                       "body.5": 4, "body.6": 4, "body.7": 4, "fc6": 4}
    assert net.body[6].dilation == (4, 4) and net.fc6.dilation[0] == 8 * 4 // 4
    assert float(net.fc6.lam.data) == 0.5 and float(net.body[0].lam.data) == 0.25
    assert float(net.body[1].lam.data) == 0.0
    x = np.random.default_rng(0).standard_normal((1, 3, 20, 20)).astype(np.float32)
    e = np.zeros((1, 2, 20, 20), np.float32)
    assert net(x, e).shape == (1, 3, 20, 20)
    with pytest.raises(ValueError, match="output_stride must be one of"):
        SegNet(3, output_stride=16)
    with pytest.raises(ValueError, match="lam_init names layers"):
        SegNet(3, lam_init={"fc7": 1.0})


def test_flownet_segaware_layers():
    assert FlowNetS(segaware=False).segaware_layers() == []
    (name, layer, stride), = FlowNetS(segaware=True).segaware_layers()
    assert (name, stride) == ("predict2", 4) and isinstance(layer, SegAwareConv2d)


def test_label_embeddings_are_one_hot_with_ignored_pixels_zero():
    labels = np.array([[[0, 2], [255, 1]]])
    e = label_embeddings(labels, 3)
    assert e.shape == (1, 3, 2, 2) and e.dtype == np.float32
    np.testing.assert_array_equal(e[0, :, 0, 0], [1, 0, 0])
    np.testing.assert_array_equal(e[0, :, 0, 1], [0, 0, 1])
    np.testing.assert_array_equal(e[0, :, 1, 0], [0, 0, 0])


def _add(a, deps, key=None):
    return a + sum(deps.values())


@pytest.mark.parametrize("workers", [1, 2])
def test_run_jobs_passes_dependency_results(workers):
    jobs = [Job("a", _add, {"a": 1}, ()), Job("b", _add, {"a": 10}, ()),
            Job("c", _add, {"a": 100}, ("a", "b")), Job("d", _add, {"a": 0}, ("c",))]
    lines = []
    out = run_jobs(jobs, workers=workers, log=lines.append)
    assert out == {"a": 1, "b": 10, "c": 111, "d": 111}
    assert len(lines) == 4 and all(line.startswith("done ") for line in lines)


def test_bottom_levels_add_the_costliest_chain_that_waits_for_a_job():
    jobs = [Job("a", _add, {}, (), 1.0), Job("b", _add, {}, (), 5.0),
            Job("c", _add, {}, ("a",), 1.0), Job("d", _add, {}, ("a",), 10.0),
            Job("e", _add, {}, ("b", "d"), 2.0)]
    assert bottom_levels(jobs) == {"a": 13.0, "b": 7.0, "c": 1.0, "d": 12.0, "e": 2.0}
    with pytest.raises(ValueError, match="bottom_levels: job 'c' depends on"):
        bottom_levels(jobs[2:] + jobs[:2])   # one line, not a KeyError from inside


def _record(order, key, deps):
    order.append(key)


def test_ready_jobs_start_by_bottom_level_then_list_order():
    # one worker in threads, so the start order is the scheduler's choice alone: a
    # first (it unlocks the longest chain), then d (10) before b (5) though b is
    # listed first, and c and f (equal levels) in the list's order
    from concurrent.futures import ThreadPoolExecutor
    from segnp.experiments import schedule
    order = []
    jobs = [Job(k, _record, {"order": order, "key": k}, deps, cost) for k, deps, cost in
            [("a", (), 1.0), ("b", (), 5.0), ("c", ("a",), 1.0), ("d", ("a",), 10.0),
             ("f", (), 1.0)]]
    results = {}
    with ThreadPoolExecutor(1) as pool:
        schedule._run_graph(pool, 1, list(jobs), {}, results, {}, lambda _: None)
    assert order == ["a", "d", "b", "c", "f"] and set(results) == set("abcdf")


def test_seed_jobs_cost_their_epochs_times_seconds_per_epoch():
    cfg = {"emb_epochs": 2, "flow_emb_epochs": 3, "seg_epochs": 4, "flow_epochs": 5,
           "ft_epochs": 6, "flow_ft_epochs": 7, "count": 1024, "flow_count": 2048}
    jobs = {j.key: j for j in seed_jobs("out", cfg, 1)}
    assert jobs["s1/embedding"].cost == pytest.approx(14.7 * 2)
    assert jobs["s1/seg/+9x9 BF x4"].cost == pytest.approx(39.0 * 6)
    assert jobs["s1/flow/segaware"].cost == pytest.approx(72.0 * 7)
    assert all(j.cost > 0 for j in jobs.values())
    # an epoch's seconds follow its scenes: a quarter of the segmentation scenes makes
    # every job that trains on them a quarter as long, and leaves the flow jobs alone
    small = {j.key: j.cost for j in seed_jobs("out", dict(cfg, count=256), 1)}
    for key, j in jobs.items():
        flow_data = key in ("s1/flow_baseline", "s1/flow/baseline", "s1/flow/segaware")
        assert small[key] == pytest.approx(j.cost * (1.0 if flow_data else 0.25)), key
    assert jobs["s1/seg/all + CRF"].deps == ("s1/embedding", "s1/seg_baseline")


def test_run_jobs_refuses_unknown_or_later_dependencies_and_duplicates():
    with pytest.raises(ValueError, match="depends on"):
        run_jobs([Job("a", _add, {"a": 1}, ("b",)), Job("b", _add, {"a": 1}, ())])
    with pytest.raises(ValueError, match="unique"):
        run_jobs([Job("a", _add, {"a": 1}, ()), Job("a", _add, {"a": 1}, ())])
    with pytest.raises(ValueError, match="cost >= 0"):
        run_jobs([Job("a", _add, {"a": 1}, (), -1.0)])


def _fake_results(seeds=(0, 1)):
    out = []
    for s in seeds:
        seg = {}
        for i, name in enumerate(["baseline", "+9x9 BF", "all segaware"]):
            m = {"miou": 0.30 + 0.01 * i + 0.001 * s, "trimap3_miou": 0.2 + 0.02 * i,
                 "trimap10_miou": 0.25}
            seg[name] = dict(m, val=dict(m), lams={"fc6": 0.1} if i == 2 else {})
        masks = {"distance": 4, "embedding_auc": 0.9, "colour_auc": 0.7,
                 "same_median": 0.2, "diff_median": 0.7}
        flow = {k: {"epe": v, "aae": 10.0} for k, v in
                (("constant flow", 2.0), ("baseline", 1.4), ("segaware", 1.2))}
        out.append({"seed": s, "masks": masks, "flow_masks": masks, "segmentation": seg,
                    "flow": flow})
    return out


def test_filter_table_pairs_each_filter_with_the_row_it_is_added_to():
    results = _fake_results()
    for r in results:
        seg = r["segmentation"]
        seg["all + CRF"] = dict(seg["all segaware"], miou=seg["all segaware"]["miou"] + 0.01,
                                trimap3_miou=seg["all segaware"]["trimap3_miou"] + 0.03)
    lines = summary_lines(results)
    bf = next(line for line in lines if line.startswith("| +9x9 BF | baseline |"))
    assert "| 1.00 ± 0.00 | 2.00 ± 0.00 | 2/2 |" in bf
    crf = next(line for line in lines if line.startswith("| all + CRF | all segaware |"))
    assert "| 1.00 ± 0.00 | 3.00 ± 0.00 | 2/2 |" in crf
    # one filter row (the quick preset): no table, it would repeat table (b)
    assert not any("(b2)" in line for line in summary_lines(_fake_results()))


def test_report_pairs_deltas_with_the_same_seeds_control():
    assert stat([1.0]) == "1.00"
    assert stat([1.0, 3.0]) == "2.00 ± 1.41"
    lines = summary_lines(_fake_results())
    row = next(line for line in lines if line.startswith("| all segaware |"))
    # Δ = 2 points in both seeds: the seeds' own offsets (0.1 point) cancel
    assert "| 2.00 ± 0.00 | 4.00 ± 0.00 | 2/2 |" in row
    flow = next(line for line in lines if line.startswith("| segaware |"))
    assert "-0.200 ± 0.000" in flow and "0.600 ± 0.000" in flow
    assert "| -14.3 ± 0.0 | 2/2 |" in flow      # -0.2 / 1.4, lower in both seeds
    report = report_lines(_fake_results(), {"preset": "x"}, "cmd", 60.0, ["f.png"])
    assert "![f.png](f.png)" in report and any("Validation" in line for line in report)


def test_layer_mask_means_match_loops_and_the_oracle_bounds():
    rng = np.random.default_rng(2)
    net = SegNet(3, widths=(2, 2, 2, 2), fc_width=4, segaware="all",
                 lam_init={n: 0.3 + 0.1 * i for i, n in enumerate(
                     [f"body.{i}" for i in range(8)] + ["fc6"])})
    e = rng.random((2, 3, 40, 40)) * 2.0    # FC6 (stride 8, dilation 4) has taps at 40
    labels = rng.integers(0, 3, (2, 40, 40))
    got = layer_mask_means(net.segaware_layers(), e, labels)
    want = {}
    for name, layer, s in net.segaware_layers():
        d, same = naive_tap_distances(e[..., ::s, ::s], labels[:, ::s, ::s], 3,
                                      layer.dilation[0])
        m, same = np.exp(-float(layer.lam.data) * d), np.asarray(same, bool)
        want[name] = (m[same].mean(), m[~same].mean())
        assert got["layers"][name]["same"] == pytest.approx(want[name][0], rel=1e-6)
        assert got["layers"][name]["diff"] == pytest.approx(want[name][1], rel=1e-6)
    # each layer counts once
    assert got["same"] == pytest.approx(np.mean([v[0] for v in want.values()]))
    assert got["diff"] == pytest.approx(np.mean([v[1] for v in want.values()]))
    # one-hot labels at the oracle's lam 2: same-region taps keep 1, the others exp(-4)
    for _, layer, _ in net.segaware_layers():
        layer.lam.data[...] = 2.0
    oracle = layer_mask_means(net.segaware_layers(), label_embeddings(labels, 3), labels)
    assert oracle["same"] == 1.0 and oracle["diff"] == pytest.approx(np.exp(-4.0))


def test_table1_gives_each_rows_share_of_the_ground_truth_ceiling():
    results = _fake_results()
    for r in results:
        seg = r["segmentation"]
        # the ceiling is 8 points above the control in seed 0, 4 in seed 1
        gain = 0.08 if r["seed"] == 0 else 0.04
        seg["ground-truth masks"] = dict(seg["baseline"], miou=seg["baseline"]["miou"] + gain)
        seg["ground-truth masks"]["val"] = dict(seg["ground-truth masks"])
    lines = summary_lines(results)
    assert lines[lines.index(next(x for x in lines if x.startswith("| method |")))] \
        .endswith("| share of the ground-truth ceiling |")
    row = next(line for line in lines if line.startswith("| all segaware |"))
    assert row.endswith("| 38 ± 18 % |")        # 2/8 and 2/4
    gt = next(line for line in lines if line.startswith("| ground-truth masks |"))
    assert gt.endswith("| 100 ± 0 % |")
    base = next(line for line in lines if line.startswith("| baseline |"))
    assert base.endswith("| — | — |")
    # without the ground-truth row there is no ceiling column
    assert "share" not in summary_lines(_fake_results())[9]


def test_mask_table_and_the_fine_tuned_embedders_auc():
    results = _fake_results()
    for r in results:
        seg = r["segmentation"]
        seg["all segaware"]["mask_values"] = {"same": 0.9, "diff": 0.6, "layers": {}}
        seg["all segaware, end to end"] = dict(
            seg["all segaware"], mask_values={"same": 0.8, "diff": 0.2, "layers": {}},
            embedder_masks=dict(r["masks"], embedding_auc=0.95))
    lines = summary_lines(results)
    assert "| all segaware | 0.900 ± 0.000 | 0.600 ± 0.000 | 0.667 ± 0.000 |" in lines
    assert "| all segaware, end to end | 0.800 ± 0.000 | 0.200 ± 0.000 | 0.250 ± 0.000 |" \
        in lines
    e2e = next(line for line in lines if line.startswith("| semantic, fine-tuned in"))
    assert "| 0.950 ± 0.000 | 0.700 ± 0.000 | 0.250 ± 0.000 |" in e2e
    # no segmentation-aware row reports masks: no mask table
    assert not any("(b3)" in line for line in summary_lines(_fake_results()))
