"""examples/reproduce.py end to end on a tiny setting: it must train every run (on two
worker processes), write REPORT.md with the three tables, results.json and the four
figures, print the tables, refuse to reuse an output folder silently, and reuse its
finished runs with --resume."""
import importlib.util
import json
import os

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")


def _reproduce():
    spec = importlib.util.spec_from_file_location(
        "example_reproduce", os.path.join(EXAMPLES, "reproduce.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reproduce_tiny_end_to_end(tmp_path, capsys):
    mod = _reproduce()
    out = str(tmp_path / "results")
    args = ["--preset", "tiny", "--out", out, "--cache", str(tmp_path / "cache"),
            "--no-progress", "--seeds", "0", "1"]
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
    assert len(results) == 2
    for r in results:
        assert 0 <= r["masks"]["embedding_auc"] <= 1
        assert set(r["segmentation"]) == set(mod.SEG_ROWS)
        assert r["flow"]["baseline"]["epe"] > 0
        assert r["flow"]["constant flow"]["epe"] > 0
        # every row is paired with the same seed's control, on val and test
        assert "val" in r["segmentation"]["baseline"]
    # an existing output is refused without --resume
    with pytest.raises(ValueError, match="already holds runs"):
        mod.main(args)
    # --resume reuses the finished runs: the same numbers again
    again = mod.main(args + ["--resume"])
    assert again[0]["segmentation"]["all + CRF"]["miou"] == \
        pytest.approx(results[0]["segmentation"]["all + CRF"]["miou"])
    assert again[1]["flow"]["segaware"]["epe"] == \
        pytest.approx(results[1]["flow"]["segaware"]["epe"])
