"""Run folders through the example scripts (issue 10, cases 1-3, 8, 9): a run is never
replaced or misused silently, --resume --epochs extends a run, checkpoints of the wrong
kind or in a bad state are named in one line, and user errors exit with status 2."""
import json
import logging
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from segnp import serialization
from segnp.experiments import transfer_weights
from segnp.experiments.cli import RunError, run_script
from segnp.models import EmbeddingNet

# the scripts, their small options and the generated-data cache of test_examples
from test_examples import COMMON, cache, script  # noqa: E402, F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ckpt(out):
    return os.path.join(out, "checkpoint.npz")


def _epoch(out):
    return serialization.read_checkpoint(_ckpt(out))["extra"]["epoch"]


@pytest.fixture(scope="module")
def emb_run(cache, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("emb") / "run")
    script("train_embeddings").main(COMMON + ["--out", out, "--epochs", "2"])
    return out


def test_a_finished_run_is_not_replaced(emb_run):
    before = open(_ckpt(emb_run), "rb").read()
    with pytest.raises(RunError, match=r"already holds a run \(finished, 2 epochs done\); "
                                       r"add --resume .* or --overwrite"):
        script("train_embeddings").main(COMMON + ["--out", emb_run, "--epochs", "1"])
    assert open(_ckpt(emb_run), "rb").read() == before


def test_overwrite_starts_over(cache, tmp_path):
    out = str(tmp_path / "run")
    script("train_embeddings").main(COMMON + ["--out", out, "--epochs", "2"])
    script("train_embeddings").main(COMMON + ["--out", out, "--epochs", "1", "--overwrite"])
    assert _epoch(out) == 1
    assert len(json.load(open(os.path.join(out, "log.json")))) == 1


def test_resume_with_more_epochs_keeps_training(cache, tmp_path):
    """The poly schedule of a 1-epoch run ends at lr 0; extended to 3 epochs it is
    stretched, so epochs 2 and 3 train at lr > 0 and change the parameters."""
    out = str(tmp_path / "run")
    script("train_embeddings").main(COMMON + ["--out", out, "--epochs", "1"])
    first = serialization.read_checkpoint(_ckpt(out))["model"]
    script("train_embeddings").main(COMMON + ["--out", out, "--epochs", "3", "--resume"])
    assert _epoch(out) == 3
    log = json.load(open(os.path.join(out, "log.json")))
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert log[0]["lr"] == pytest.approx(5e-3)      # the default --lr, at the first step
    assert 0 < log[2]["lr"] < log[1]["lr"] < 5e-3
    last = serialization.read_checkpoint(_ckpt(out))["model"]
    assert any(not np.array_equal(first[k], last[k]) for k in first)


def test_resume_refuses_other_options_and_lists_them(emb_run):
    with pytest.raises(RunError) as err:
        script("train_embeddings").main(
            ["--count", "8", "--test-count", "4", "--size", "40", "--batch-size", "4",
             "--lr", "0.1", "--no-progress", "--out", emb_run, "--resume"])
    msg = str(err.value)
    assert "--lr 0.005 in the run, 0.1 now" in msg and "--size 32 in the run, 40 now" in msg
    assert "--batch-size" not in msg


def test_resume_without_checkpoint_says_it_starts_fresh(cache, tmp_path, caplog):
    out = str(tmp_path / "new")
    with caplog.at_level(logging.INFO, logger="segnp"):
        script("train_embeddings").main(COMMON + ["--out", out, "--epochs", "1", "--resume"])
    assert "no checkpoint in" in caplog.text and "starting a fresh run" in caplog.text
    assert _epoch(out) == 1


def test_no_progress_logs_one_line_per_epoch(emb_run, tmp_path, caplog):
    out = str(tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="segnp"):
        script("train_embeddings").main(COMMON + ["--out", out, "--epochs", "2"])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("embedding ")]
    assert [m.split(":")[0] for m in lines] == ["embedding 1/2", "embedding 2/2"]
    assert "loss" in lines[0] and "lr 0.005" in lines[0]


def test_wrong_embedder_and_init_are_named(emb_run, cache, tmp_path):
    seg = str(tmp_path / "seg")
    with pytest.raises(RunError, match=r"--init: .*checkpoint\.npz' holds a 'embedding' run; "
                                       r"expected a checkpoint of the task 'segmentation'"):
        script("train_segmentation").main(COMMON + ["--out", seg, "--init", _ckpt(emb_run)])
    script("train_segmentation").main(COMMON + ["--out", seg, "--epochs", "1"])
    with pytest.raises(RunError, match=r"--embedder: .*seg.*holds a 'segmentation' run; "
                                       r"expected a checkpoint of train_embeddings\.py"):
        script("train_segmentation").main(COMMON + ["--out", str(tmp_path / "x"),
                                                    "--variant", "fc6", "--embedder",
                                                    _ckpt(seg)])
    with pytest.raises(RunError, match="--embedder: no such file"):
        script("train_flow").main(COMMON + ["--out", str(tmp_path / "y"), "--segaware",
                                            "--embedder", str(tmp_path / "none.npz")])


def test_transfer_weights_reports_and_refuses_no_match(caplog):
    net = EmbeddingNet(widths=(4, 4, 4), embed_dim=4, side_dim=2)
    state = net.state_dict()
    with caplog.at_level(logging.INFO, logger="segnp"):
        names = transfer_weights(EmbeddingNet(widths=(4, 4, 4), embed_dim=4, side_dim=2),
                                 dict(state, extra=np.zeros(2)))
    assert len(names) == len(state)
    assert f"{len(state)} tensors transferred, 1 skipped (extra)" in caplog.text
    with pytest.raises(ValueError, match="none of the 2 tensors matches"):
        transfer_weights(net, {"fc8.weight": np.zeros(3), "fc8.bias": np.zeros(3)})


def test_bad_checkpoints_name_the_file(tmp_path):
    good = tmp_path / "good.npz"
    serialization.save(good, EmbeddingNet(widths=(4, 4, 4), embed_dim=4, side_dim=2))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"'.*cut\.npz' is truncated or corrupt"):
        serialization.read_checkpoint(cut)
    noise = tmp_path / "noise.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ValueError, match=r"noise\.npz' is not a readable segnp checkpoint") \
            as err:
        serialization.read_checkpoint(noise)
    assert "allow_pickle" not in str(err.value)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at '.*none\.npz'"):
        serialization.read_checkpoint(tmp_path / "none.npz")
    with pytest.raises(FileNotFoundError) as err:   # the final name, not the temporary one
        serialization.save(tmp_path / "absent" / "c.npz", EmbeddingNet(widths=(4, 4, 4)))
    assert "absent/c.npz'" in str(err.value) and ".tmp" not in str(err.value)


def test_user_errors_print_one_line_and_exit_2(emb_run, tmp_path, capsys):
    evaluate = script("evaluate").main
    handler = signal.getsignal(signal.SIGTERM)
    code = run_script(evaluate, [str(tmp_path / "missing.npz")])
    assert signal.getsignal(signal.SIGTERM) is handler   # restored for the caller
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "missing.npz" in err[0] and "error:" in err[0]
    code = run_script(script("train_embeddings").main,
                      COMMON + ["--out", emb_run, "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--resume" in err[0]

    def interrupted(argv):
        raise KeyboardInterrupt
    assert run_script(interrupted, [], hint="; --resume continues") == 130
    assert capsys.readouterr().err.strip().endswith("interrupted; --resume continues")


def test_out_that_cannot_be_written_fails_before_training(cache, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunError, match="--out: cannot write to"):
        script("train_embeddings").main(COMMON + ["--out", str(blocker / "run")])
    with pytest.raises(RunError, match="is a folder; expected a file name"):
        script("evaluate").main([str(tmp_path / "x.npz"), "--metrics", str(tmp_path)])


def test_train_data_needs_test_data_and_the_same_classes(emb_run, cache, tmp_path):
    from segnp.data import SegmentationWriter
    files = {}
    for name, classes in (("a", ["bg", "cat"]), ("b", ["bg", "dog"])):
        files[name] = str(tmp_path / f"{name}.h5")
        with SegmentationWriter(files[name], 2, (32, 32), classes) as w:
            for _ in range(2):
                w.add(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8))
    out = str(tmp_path / "run")
    with pytest.raises(RunError, match="--train-data needs --test-data"):
        script("train_embeddings").main(COMMON + ["--out", out, "--train-data", files["a"]])
    with pytest.raises(RunError, match=r"classes \['bg', 'dog'\], but the model was trained "
                                       r"on \['bg', 'cat'\]"):
        script("train_embeddings").main(COMMON + ["--out", out, "--train-data", files["a"],
                                                  "--test-data", files["b"], "--overwrite"])
    script("train_embeddings").main(COMMON + ["--out", out, "--train-data", files["a"],
                                              "--test-data", files["a"], "--epochs", "1",
                                              "--overwrite"])
    # evaluate's test data default to the run's own
    assert script("evaluate").main([_ckpt(out)])["samples"] == 2
    opts = json.load(open(os.path.join(out, "options.json")))
    del opts["test_data"]
    json.dump(opts, open(os.path.join(out, "options.json"), "w"))
    with pytest.raises(RunError, match="was trained on .*a.h5'; give --test-data"):
        script("evaluate").main([_ckpt(out)])
    with pytest.raises(RunError, match="the model was trained on"):
        script("evaluate").main([_ckpt(out), "--test-data", files["b"]])


def test_help_is_fast_and_plain():
    """--help does not import scipy.stats (a second), and says each default once."""
    path = os.path.join(ROOT, "examples", "train_segmentation.py")
    code = (f"import sys, runpy; sys.argv = [{path!r}, '--help']\n"
            "try:\n runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print('HEAVY', [m for m in ('scipy.stats',) if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), check=True).stdout
    assert "HEAVY []" in out
    entries = [" ".join(e.split()) for e in out.split("\n  -")]
    assert all(e.count("default") <= 1 for e in entries), entries
    assert "(default: None)" not in out
    helps = {e.split()[0]: e for e in entries}
    assert "epochs in all" in helps["-epochs"] and "samples per" in helps["-batch-size"]
    assert "test scenes" in helps["-test-count"] and "cuda-emulator" in helps["-backend"]
