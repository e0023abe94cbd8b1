"""examples/joint_upsampling.py on a tiny setting: the results.json layout of issue 22,
the figure, the refusal to overwrite, and one-line errors with exit status 2."""
import importlib.util
import json
import os

import numpy as np
import pytest

from segnp.experiments.joint import (JointUpsampler, avg_pool_flow, embed_images, finetune,
                                    guide, scenes)
from segnp.models import EmbeddingNet

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "examples", "joint_upsampling.py")
TINY = ["--size", "16", "--count", "8", "--val-count", "4", "--test-count", "4",
        "--emb-steps", "2", "--steps", "2", "--ft-steps", "2", "--iterations", "1",
        "--batch-size", "4", "--no-progress"]


def script():
    spec = importlib.util.spec_from_file_location("example_joint_upsampling", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiny_run_writes_results_and_figure(tmp_path, capsys):
    out = tmp_path / "ju"
    results = script().main(["--out", str(out)] + TINY)
    with open(out / "results.json") as f:
        saved = json.load(f)
    assert saved == results
    assert set(saved) == {"x4", "x8"}
    for key in saved:
        assert set(saved[key]) == {"bilinear", "segaware"}
        assert all(np.isfinite(v) and v > 0 for v in saved[key].values())
    with open(out / "details.json") as f:
        details = json.load(f)
    assert details["x8"]["chosen"]["iterations"] in (0, 1, 2)
    assert details["x4"]["chosen"]["embedder"] in ("frozen", "end_to_end")
    assert details["end_to_end"]["steps"] == 2 and len(details["end_to_end"]["image_weights"]) == 2
    assert len(details["x4"]["val"]["segaware_end_to_end"]) == 3
    assert (out / "joint_upsampling.png").stat().st_size > 1000
    assert "x8: test EPE bilinear" in capsys.readouterr().out
    # a second run refuses to replace the results, before any work
    code = script().run_script(script().main, ["--out", str(out)] + TINY)
    assert code == 2
    err = capsys.readouterr().err
    assert "results.json' exists; add --overwrite" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["--size", "20"], "--size must be a multiple of 8"),
    (["--count", "0"], "expected an integer >= 1"),
    (["--steps", "-1"], "expected an integer >= 0"),
    (["--ft-lr", "0"], "expected a finite number > 0"),
])
def test_bad_arguments_exit_2(tmp_path, args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        script().main(["--out", str(tmp_path / "x")] + args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_pooling_and_the_upsampler_at_lam_zero_is_bilinear():
    """The pieces: block means, and the model with lam = 0 and no back-projection is
    bilinear interpolation of the pooled flow."""
    import segnp.functions as F
    images, instances, flow = scenes("val", 2, 16)
    assert images.shape == (2, 16, 16, 3) and instances.shape == (2, 16, 16)
    lo = avg_pool_flow(flow, 4)
    np.testing.assert_allclose(lo[0, 1, 1, 2], flow[0, 1, 4:8, 8:12].mean(), rtol=1e-6)
    model = JointUpsampler(4, lam_init=0.0)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    e = embed_images(EmbeddingNet(widths=(4, 4, 4), embed_dim=4, side_dim=2), x)
    y = model(lo, guide(x, e, 0.5), 0).numpy()
    np.testing.assert_allclose(y, F.resize_bilinear(lo, (16, 16)).numpy(), atol=1e-5)


def test_finetune_trains_the_embedder_and_both_lams_through_the_epe():
    """End to end: the EPE's gradient reaches the embedder's weights (through the masks'
    e) and each factor's lam, and a few steps lower the training loss."""
    images, _, flow = scenes("train", 4, 16)
    x = (images.transpose(0, 3, 1, 2) / 255.0 - 0.5).astype(np.float32)
    net = EmbeddingNet(widths=(4, 4, 4), embed_dim=4, side_dim=2)
    before = [p.numpy().copy() for p in net.parameters()]
    models = {4: JointUpsampler(4, lam_init=1.0), 8: JointUpsampler(8, lam_init=1.0)}
    lo = {f: avg_pool_flow(flow, f) for f in models}
    losses = finetune(net, models, {4: 0.5, 8: 0.0}, x, lo, flow, steps=12, iterations=1,
                      batch_size=4, seed=0, lr=0.05)
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert all(not np.array_equal(b, p.numpy()) for b, p in zip(before, net.parameters()))
    assert all(abs(m.up.lam.item() - 1.0) > 1e-4 for m in models.values())
