"""examples/joint_upsampling.py on a tiny setting: the results.json layout of issue 22,
the figure, the refusal to overwrite, and one-line errors with exit status 2."""
import importlib.util
import json
import os

import numpy as np
import pytest

from segnp.experiments.joint import (FLOW_SCALE, JointUpsampler, avg_pool_flow, embed_images,
                                    embedder_input, finetune, guide, pretrain_embedder, scenes,
                                    step_errors, upsample, upsample_steps, with_flow_input)
from segnp.metrics import end_point_error
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
    assert details["x8"]["chosen"]["iterations"] in range(5)  # 0 .. 4 x --iterations 1
    assert details["x8"]["chosen"]["smooth"] == [5, 2]
    assert set(details["x8"]["chosen"]["lams"]) == {"up", "smooth"}
    assert len(details["x4"]["val"]["segaware_end_to_end"]) == 5
    assert details["x4"]["chosen"]["embedder"] in ("frozen", "end_to_end")
    assert details["end_to_end"]["steps"] == 2 and len(details["end_to_end"]["image_weights"]) == 2
    for key in ("x4", "x8"):
        d, w = details[key], str(details["end_to_end"]["image_weights"][key])
        # fine-tuned: a copy, so the frozen-embedder upsampler keeps its learned lams
        assert d["lams_end_to_end"] != d["lams_frozen_embedder"][w]
        assert d["chosen"]["lams"] == (d["lams_end_to_end"] if d["chosen"]["embedder"] ==
                                       "end_to_end" else
                                       d["lams_frozen_embedder"][str(d["chosen"]["image_weight"])])
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
    (["--flow-input", "x2"], "invalid choice: 'x2'"),
    (["--flow-stage", "later"], "invalid choice: 'later'"),
    (["--widths", "8", "16"], "expected 3 arguments"),
    (["--widths", "8", "0", "8"], "expected an integer >= 1"),
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
    models = {4: JointUpsampler(4, lam_init=1.0), 8: JointUpsampler(8, lam_init=1.0,
                                                                    smooth=(5, 2))}
    lo = {f: avg_pool_flow(flow, f) for f in models}
    losses = finetune(net, models, {4: 0.5, 8: 0.0}, x, lo, flow, steps=12, iterations=1,
                      batch_size=4, seed=0, lr=0.05)
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert all(not np.array_equal(b, p.numpy()) for b, p in zip(before, net.parameters()))
    assert all(abs(m.up.lam.item() - 1.0) > 1e-4 for m in models.values())
    assert abs(models[8].smooth.lam.item() - 1.0) > 1e-4  # the smoothing step's own lam


def test_the_smoothing_step_before_each_back_projection():
    """JointUpsampler(smooth=(k, d)) is up, then per step the stride-1 segaware average
    and the back-projection; it keeps a constant flow constant whatever the guide, and
    without back-projection steps it is the upsampler without smoothing."""
    import segnp.functions as F
    rng = np.random.default_rng(1)
    lo = rng.standard_normal((2, 2, 2, 2)).astype(np.float32)
    g = rng.standard_normal((2, 5, 16, 16)).astype(np.float32)
    model = JointUpsampler(8, lam_init=0.7, smooth=(5, 2))
    model.smooth.lam.data[...] = 1.3
    assert model.lams() == pytest.approx({"up": 0.7, "smooth": 1.3})
    y, expected = model.up(lo, g), []
    for _ in range(3):
        expected.append(y.numpy())
        y = F.segaware_avg_pool2d(y, g, 5, 1.3, stride=1, dilation=2)
        y = y + model.up(lo - F.avg_pool2d(y, 8), g)
    expected.append(y.numpy())
    plain = JointUpsampler(8, lam_init=0.7)
    np.testing.assert_allclose(model(lo, g, 0).numpy(), plain(lo, g, 0).numpy(), rtol=1e-6)
    assert not np.allclose(model(lo, g, 1).numpy(), plain(lo, g, 1).numpy(), atol=1e-3)
    # forward with T steps, and one pass of steps() (upsample_steps, in batches of one)
    # after T steps, are both the loop above after T steps
    flow = rng.standard_normal((2, 2, 16, 16)).astype(np.float32)
    ys, errors = upsample_steps(model, lo, g, 3, 1), step_errors(model, lo, g, flow, 3)
    assert len(ys) == 4 and sorted(errors) == [0, 1, 2, 3]
    for T in range(4):
        np.testing.assert_allclose(model(lo, g, T).numpy(), expected[T], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ys[T], expected[T], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(upsample(model, lo, g, T, 1), ys[T])
        last = upsample_steps(model, lo, g, T, 1, last_only=True)
        assert len(last) == 1
        np.testing.assert_array_equal(last[0], ys[T])
        assert errors[T] == pytest.approx(end_point_error(expected[T], flow), rel=1e-5)
    assert len(set(errors.values())) == 4
    const = np.broadcast_to(np.float32([[[[0.75]], [[-2.0]]]]), (2, 2, 2, 2))
    out = model(const, g, 3).numpy()
    np.testing.assert_allclose(out[:, 0], 0.75, rtol=1e-5)
    np.testing.assert_allclose(out[:, 1], -2.0, rtol=1e-5)


def test_tiny_run_without_the_smoothing_step(tmp_path):
    out = tmp_path / "plain"
    script().main(["--out", str(out), "--no-smooth"] + TINY)
    with open(out / "details.json") as f:
        details = json.load(f)
    for key in ("x4", "x8"):
        assert details[key]["chosen"]["smooth"] is None
        assert set(details[key]["chosen"]["lams"]) == {"up"}


@pytest.mark.parametrize("extra", [["--ft-steps", "0"], ["--ft-lr", "1"]])
def test_tiny_run_end_to_end_from_a_copy_and_the_frozen_choice(tmp_path, extra):
    """Without end-to-end steps the fine-tuned upsampler is the frozen one at its image
    weight (both lams, the same validation errors); with an lr that wrecks the tiny
    end-to-end run, the frozen-embedder upsampler is chosen, with both its lams."""
    out = tmp_path / "ju"
    script().main(["--out", str(out)] + TINY + extra)
    with open(out / "details.json") as f:
        details = json.load(f)
    for key in ("x4", "x8"):
        d, w = details[key], details["end_to_end"]["image_weights"][key]
        frozen = d["lams_frozen_embedder"]
        assert set(frozen[str(w)]) == {"up", "smooth"}
        if extra[0] == "--ft-steps":
            assert d["lams_end_to_end"] == frozen[str(w)]
            tuned = d["val"]["segaware_end_to_end"]
            assert tuned == {k: v for k, v in d["val"]["segaware_frozen_embedder"].items()
                             if k.startswith(f"image_weight={w} ")}
        else:
            assert d["chosen"]["embedder"] == "frozen"
            assert d["chosen"]["lams"] == frozen[str(d["chosen"]["image_weight"])]


def test_tiny_run_with_each_factors_flow_as_the_embedders_input(tmp_path):
    """--flow-input own: one embedder, trained on both factors' inputs; its record in
    details.json."""
    out = tmp_path / "ju"
    results = script().main(["--out", str(out), "--flow-input", "own", "--widths", "4", "4",
                             "8"] + TINY)
    assert all(np.isfinite(v) and v > 0 for r in results.values() for v in r.values())
    with open(out / "details.json") as f:
        details = json.load(f)
    assert details["embedder"] == {"flow_input": "own", "flow_stage": "pretrain",
                                   "widths": [4, 4, 8], "steps": 2}


def test_tiny_run_with_the_flow_input_from_the_end_to_end_phase(tmp_path):
    out = tmp_path / "ju"
    results = script().main(["--out", str(out), "--flow-input", "x8", "--flow-stage",
                             "end_to_end"] + TINY)
    assert all(np.isfinite(v) and v > 0 for r in results.values() for v in r.values())
    with open(out / "details.json") as f:
        assert json.load(f)["embedder"]["flow_stage"] == "end_to_end"


def test_with_flow_input_starts_from_the_same_embeddings():
    """The widened copy ignores its 2 new channels until trained: the same embeddings
    (and side outputs) as the original for any flow, and the original is unchanged."""
    rng = np.random.default_rng(0)
    net = EmbeddingNet(widths=(4, 4, 4), embed_dim=4, side_dim=2)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    wide = with_flow_input(net)
    assert wide.in_channels == 5 and net.in_channels == 3
    x5 = np.concatenate([x, rng.standard_normal((2, 2, 16, 16)).astype(np.float32)], axis=1)
    e, sides = net(x)
    e5, sides5 = wide(x5)
    np.testing.assert_allclose(e5.numpy(), e.numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(sides5, sides):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert np.abs(wide.conv1_1.weight.numpy()[:, 3:]).max() == 0


def test_the_scripts_flow_inputs_are_the_librarys():
    from segnp.experiments.joint import FLOW_INPUTS
    for key in FLOW_INPUTS:
        assert script().parse(["--out", "x", "--flow-input", key]).flow_input == key
    with pytest.raises(SystemExit):
        script().parse(["--out", "x", "--flow-input", "x16"])


def test_embedder_input_appends_the_upsampled_pooled_flow():
    """Frame 1 alone without a flow; with one, 2 channels more: the pooled flow upsampled
    bilinearly (constant blocks stay constant), times FLOW_SCALE.  The x8 input of both
    factors: pooling the x4 input by 2 is pooling the flow by 8."""
    import segnp.functions as F
    images, _, flow = scenes("val", 2, 16)
    x = (images.transpose(0, 3, 1, 2) / 255.0 - 0.5).astype(np.float32)
    assert embedder_input(x) is x
    lo = avg_pool_flow(flow, 4)
    inp = embedder_input(x, lo)
    assert inp.shape == (2, 5, 16, 16) and inp.dtype == np.float32
    np.testing.assert_array_equal(inp[:, :3], x)
    np.testing.assert_allclose(inp[:, 3:], FLOW_SCALE * F.resize_bilinear(lo, (16, 16)).numpy(),
                               rtol=1e-6)
    const = np.full((2, 2, 2, 2), 3.0, np.float32)
    np.testing.assert_allclose(embedder_input(x, const)[:, 3:], 3.0 * FLOW_SCALE, rtol=1e-6)
    np.testing.assert_allclose(avg_pool_flow(lo, 2), avg_pool_flow(flow, 8), rtol=1e-5,
                               atol=1e-6)


def test_finetune_with_a_flow_input_per_factor():
    """Each factor's own embedder input (frame 1 + its pooled flow): the embedder runs
    once per distinct input array (twice here, once when both factors share one), its
    guide's colours are the input's first 3 channels, and a few steps lower the loss."""
    images, instances, flow = scenes("train", 4, 16)
    x = (images.transpose(0, 3, 1, 2) / 255.0 - 0.5).astype(np.float32)
    lo = {f: avg_pool_flow(flow, f) for f in (4, 8)}
    inputs = {f: embedder_input(x, lo[f]) for f in lo}
    net = pretrain_embedder(np.concatenate([inputs[4], inputs[8]]), np.tile(instances, (2, 1, 1)),
                            steps=2, batch_size=4, seed=0, widths=(4, 4, 4))
    assert net.in_channels == 5
    calls = []
    forward = net.forward
    net.forward = lambda t: calls.append(t.shape) or forward(t)
    models = {4: JointUpsampler(4, lam_init=1.0), 8: JointUpsampler(8, lam_init=1.0)}
    losses = finetune(net, models, {4: 0.5, 8: 0.0}, inputs, lo, flow, steps=12, iterations=1,
                      batch_size=4, seed=0, lr=0.05)
    assert len(calls) == 2 * 12 and all(c == (4, 5, 16, 16) for c in calls)
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    calls.clear()
    finetune(net, models, {4: 0.5, 8: 0.0}, {4: inputs[8], 8: inputs[8]}, lo, flow, steps=3,
             iterations=1, batch_size=4, seed=0)
    assert len(calls) == 3
