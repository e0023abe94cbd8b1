"""examples/reproduce.py end to end on a tiny setting: it must train every run (on two
worker processes), write REPORT.md with the three tables, results.json and the four
figures, print the tables, refuse to reuse an output folder silently, and reuse its
finished runs with --resume."""
import importlib.util
import json
import os

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")


def _reproduce():
    spec = importlib.util.spec_from_file_location(
        "example_reproduce", os.path.join(EXAMPLES, "reproduce.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


E2E = "all segaware, end to end"


def _check_embedders(out, rows):
    """The end-to-end row's embedder has moved from the trained embedder; every other
    row's is bitwise the trained one."""
    from segnp.experiments.protocol import _slug
    from segnp.experiments.runs import load_state
    for seed in (0, 1):
        runs = os.path.join(out, "runs", f"seed{seed}")
        trained = load_state(os.path.join(runs, "embedding", "checkpoint.npz"))[0]
        checked = 0
        for name in rows:
            state = load_state(os.path.join(runs, "seg_" + _slug(name),
                                            "checkpoint.npz"))[0]
            emb = {k[len("embedder."):]: v for k, v in state.items()
                   if k.startswith("embedder.")}
            if not emb:   # the control, the oracle: no embedder
                continue
            assert emb.keys() == trained.keys()
            same = [np.array_equal(emb[k], trained[k]) for k in trained]
            if name == E2E:
                assert not any(same), name
            else:
                assert all(same), name
            checked += 1
        assert checked == 8    # the eight rows but the control and the oracle


def _check_flow_rows(out, flownet, emb_mult):
    """The segmentation-aware flow row has the preset's upsamplings and decoder
    layers, and its motion embedder moved from the trained one when it fine-tunes it
    (``emb_mult`` > 0), else not; the control is the plain bilinear network."""
    from segnp.experiments import load_run
    from segnp.experiments.runs import load_state
    for seed in (0, 1):
        runs = os.path.join(out, "runs", f"seed{seed}")
        trained = load_state(os.path.join(runs, "flow_embedding", "checkpoint.npz"))[0]
        net = load_run(os.path.join(runs, "flow_segaware", "checkpoint.npz"))[0]
        assert net.upsample == flownet["upsample"]
        assert net.bf.repeat == flownet["bf_repeat"]
        assert net.aware_decoder == tuple(flownet["aware_decoder"])
        assert float(net.up_flow.lam.data) != flownet["up_lam_init"]   # learned
        state = net.embedder.state_dict()
        same = [np.array_equal(state[k], trained[k]) for k in trained]
        assert not any(same) if emb_mult > 0 else all(same)
        control = load_run(os.path.join(runs, "flow_baseline", "checkpoint.npz"))[0]
        assert control.embedder is None and control.up_flow is None
        assert control.aware_decoder == () and control.segaware_layers() == []


def test_reproduce_tiny_end_to_end(tmp_path, capsys):
    mod = _reproduce()
    out = str(tmp_path / "results")
    other_loss = "multiscale" if mod.COMMON["flow_ft_loss"] == "final" else "final"
    args = ["--preset", "tiny", "--out", out, "--cache", str(tmp_path / "cache"),
            "--no-progress", "--seeds", "0", "1", "--e2e-aux-weight", "0.5",
            "--keep-all-fc6", "0.5", "--keep-e2e", "0.75", "--ft-lr", "0.0007",
            "--flow-ft-lr", "0.0015", "--flow-ft-loss", other_loss, "--flow-bf-repeat", "2"]
    results = mod.main(args)
    printed = capsys.readouterr().out
    report = open(os.path.join(out, "REPORT.md")).read()
    for row in mod.SEG_ROWS:
        assert f"| {row} |" in report and f"| {row} |" in printed
    assert "ROC AUC" in report and "EPE" in report and "±" in report
    for fig in ("fig3_embeddings.png", "fig4_bilateral.png", "fig7_trimap.png",
                "fig8_flow.png"):
        assert os.path.getsize(os.path.join(out, fig)) > 200
        assert f"]({fig})" in report
    saved = json.load(open(os.path.join(out, "results.json")))
    assert [r["seed"] for r in saved["results"]] == [0, 1]
    assert saved["config"]["ft_lr"] == 0.0007 != mod.COMMON["ft_lr"]
    assert saved["config"]["keep_e2e"] == 0.75 != mod.COMMON["keep_e2e"]
    assert saved["config"]["flow_ft_lr"] == 0.0015 != mod.COMMON["flow_ft_lr"]
    assert saved["config"]["flow_ft_loss"] == other_loss
    assert saved["config"]["flownet"]["bf_repeat"] == 2 != mod.FLOWNET["bf_repeat"]
    assert len(results) == 2
    for r in results:
        assert 0 <= r["masks"]["embedding_auc"] <= 1
        assert set(r["segmentation"]) == set(mod.SEG_ROWS)
        assert r["flow"]["baseline"]["epe"] > 0
        assert r["flow"]["constant flow"]["epe"] > 0
        # every row is paired with the same seed's control, on val and test
        assert "val" in r["segmentation"]["baseline"]
        seg = r["segmentation"]
        # every row with segmentation-aware layers reports its masks on test; the
        # oracle's one-hot masks keep 1 within a region
        assert {n for n in seg if "mask_values" in seg[n]} == {
            n for n, (v, _) in mod.SEG_ROWS.items() if v.get("segaware")}
        assert seg["ground-truth masks"]["mask_values"]["same"] == 1.0
        assert 0 <= seg[E2E]["embedder_masks"]["embedding_auc"] <= 1
        assert [n for n in seg if "embedder_masks" in seg[n]] == [E2E]
        # FC6 of the all-layers rows keeps 0.5 (--keep-all-fc6, the end-to-end row's
        # too), body.7 (same stride, same dilation) 0.9, but 0.75 in the end-to-end row
        # (--keep-e2e): lam is proportional to -ln(keep)
        for name, keep in (("all segaware", 0.9), (E2E, 0.75), ("all + BF", 0.9),
                           ("all + CRF", 0.9)):
            cal = seg[name]["calibration"]
            assert cal["fc6"]["lam"] / cal["body.7"]["lam"] == \
                pytest.approx(np.log(0.5) / np.log(keep), rel=1e-5)
        assert seg[E2E]["calibration"]["body.7"]["lam"] / \
            seg["all segaware"]["calibration"]["body.7"]["lam"] == \
            pytest.approx(np.log(0.75) / np.log(0.9), rel=1e-5)
        # and the network trained with those lams (frozen in both rows)
        assert seg[E2E]["lams"]["body.7.lam"] / seg["all segaware"]["lams"]["body.7.lam"] \
            == pytest.approx(np.log(0.75) / np.log(0.9), rel=1e-5)
        assert seg[E2E]["calibration"]["fc6"]["lam"] == \
            pytest.approx(seg["all segaware"]["calibration"]["fc6"]["lam"], rel=1e-6)
        # the FC6 row's keep (--keep-fc6, 0.5 by default) gives the same lam
        assert seg["FC6 segaware"]["calibration"]["fc6"]["lam"] == \
            pytest.approx(seg["all segaware"]["calibration"]["fc6"]["lam"], rel=1e-6)
    _check_embedders(out, mod.SEG_ROWS)
    _check_flow_rows(out, dict(mod.FLOWNET, bf_repeat=2), mod.COMMON["flow_emb_mult"])
    # an existing output is refused without --resume
    with pytest.raises(ValueError, match="already holds runs"):
        mod.main(args)
    # --resume reuses the finished runs: the same numbers again
    again = mod.main(args + ["--resume"])
    assert again[0]["segmentation"]["all + CRF"]["miou"] == \
        pytest.approx(results[0]["segmentation"]["all + CRF"]["miou"])
    assert again[1]["flow"]["segaware"]["epe"] == \
        pytest.approx(results[1]["flow"]["segaware"]["epe"])
    # ... but not under settings other than those the runs were made with; the refusal
    # comes before anything in --out is touched
    before = {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)}
    with pytest.raises(ValueError, match=r"--resume: the runs in .* were made with "
                                         r"flow_emb_mult=3\.0 \(now 0\.5\)"):
        mod.main(args + ["--resume", "--flow-emb-mult", "0.5"])
    assert {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)} == before


def test_reproduce_resume_keeps_settings_but_not_seeds_or_rows(tmp_path):
    mod = _reproduce()
    base = {"size": 32, "flow_emb_mult": 3.0, "flownet": {"widths": [8]},
            "seeds": [0], "rows": ["baseline"], "flow": True, "preset": "tiny"}
    out = str(tmp_path)
    saved = mod.check_settings(out, base, resume=False)
    assert "seeds" not in saved and saved["flownet"] == {"widths": [8]}
    with open(os.path.join(out, mod.SETTINGS), "w") as f:
        json.dump(saved, f)
    # seeds, rows, --no-flow and the preset's name may change; tuples match their lists
    more = dict(base, seeds=[0, 1], rows=["baseline", "all segaware"], flow=False,
                preset="default", flownet={"widths": (8,)})
    assert mod.check_settings(out, more, resume=True) == saved
    with pytest.raises(ValueError, match=r"flownet=\{'widths': \[8\]\} "
                                         r"\(now \{'widths': \[16\]\}\), size=32 \(now 64\)"):
        mod.check_settings(out, dict(base, size=64, flownet={"widths": [16]}), resume=True)
    # runs recorded before keep_e2e existed calibrated that row at keep_all: they
    # resume with --keep-e2e equal to it, and say so when it differs
    with open(os.path.join(out, mod.SETTINGS), "w") as f:
        json.dump(dict(saved, keep_all=0.9), f)
    assert mod.check_settings(out, dict(base, keep_all=0.9, keep_e2e=0.9), resume=True)
    with pytest.raises(ValueError, match=r"keep_e2e=0\.9 \(now 0\.85\)"):
        mod.check_settings(out, dict(base, keep_all=0.9, keep_e2e=0.85), resume=True)
    with open(os.path.join(out, mod.SETTINGS), "w") as f:
        json.dump(saved, f)
    # a fresh run (no --resume) records its own settings
    assert mod.check_settings(out, dict(base, size=64), resume=False)["size"] == 64
    # an unreadable record is one line, as in the training scripts
    with open(os.path.join(out, mod.SETTINGS), "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="is not a readable options file"):
        mod.check_settings(out, base, resume=True)
