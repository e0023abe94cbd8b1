"""Issue 24, section 1: runs and files that are never lost.  A run folder is where the
run is (rows 1, 8); --overwrite checks everything first and replaces a run only once
its successor has a checkpoint (row 2); every user error of every script and data tool
is one line and exit 2, found before any work (rows 3-7)."""
import glob
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from data_tools import chairs_to_hdf5, inspect as inspect_tool, make_synthetic, voc_to_hdf5
from segnp import backends, serialization
from segnp.experiments import Trainer, cli
from segnp.experiments.cli import RunError, run_script
from procs import live_in_group

# the scripts, their small options and the generated-data cache of test_examples
from test_examples import COMMON, cache, script  # noqa: E402, F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ckpt(out):
    return os.path.join(out, "checkpoint.npz")


def _epoch(out):
    return serialization.read_checkpoint(_ckpt(out))["extra"]["epoch"]


def _files(folder):
    """{name: bytes} of every file under ``folder`` (hidden ones included)."""
    out = {}
    for base, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(base, n)
            out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


def _status(main, argv, capsys):
    """(exit status, stderr lines) of ``main(argv)`` run as a script."""
    try:
        code = run_script(main, argv)
    except SystemExit as exc:    # the parser's errors
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture(scope="module")
def emb_run(cache, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("emb") / "run")
    script("train_embeddings").main(COMMON + ["--out", out, "--epochs", "1"])
    return out


# ---- row 1: --resume takes the run folder where it is -----------------------------------
def test_resume_takes_the_folder_where_it_is(cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train = script("train_embeddings").main
    train(COMMON + ["--out", "runs/r1", "--epochs", "1"])
    train(COMMON + ["--out", "./runs/r1/", "--epochs", "2", "--resume"])
    assert _epoch("runs/r1") == 2
    shutil.move("runs/r1", "moved")
    train(COMMON + ["--out", "moved", "--epochs", "3", "--resume"])
    assert _epoch("moved") == 3


def test_resume_compares_input_files_by_contents(emb_run, cache, tmp_path):
    embedder = str(tmp_path / "emb.npz")
    shutil.copy(_ckpt(emb_run), embedder)
    out = str(tmp_path / "seg")
    train = script("train_segmentation").main
    args = COMMON + ["--out", out, "--variant", "fc6"]
    train(args + ["--embedder", embedder, "--epochs", "1"])
    moved = str(tmp_path / "elsewhere.npz")
    shutil.move(embedder, moved)
    train(args + ["--embedder", moved, "--epochs", "2", "--resume"])
    assert _epoch(out) == 2
    other = str(tmp_path / "other" / "run")   # another embedding run: other weights
    script("train_embeddings").main(COMMON + ["--out", other, "--epochs", "1",
                                              "--seed", "1"])
    with pytest.raises(RunError, match=r"--embedder '.*other/run/checkpoint\.npz' holds "
                                       r"other contents than the run's '.*elsewhere\.npz' did"):
        train(args + ["--embedder", _ckpt(other), "--epochs", "3", "--resume"])


# ---- row 2: --overwrite ------------------------------------------------------------------
@pytest.mark.parametrize("bad", [["--count", "0"], ["--lr", "-1"], ["--batch-size", "0"],
                                 ["--train-data", "BAD", "--test-data", "BAD"],
                                 ["--vgg16", "BAD"]])
def test_overwrite_checks_everything_before_touching_the_run(emb_run, tmp_path, capsys,
                                                             bad):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an HDF5 file" * 10)
    before = _files(emb_run)
    argv = COMMON + ["--out", emb_run, "--overwrite"] + [str(junk) if a == "BAD" else a
                                                           for a in bad]
    code, err = _status(script("train_embeddings").main, argv, capsys)
    assert code == 2 and len(err) == 1 and bad[0] in err[0], err
    assert _files(emb_run) == before


def test_overwrite_replaces_the_run_only_once_the_new_one_has_a_checkpoint(cache, tmp_path,
                                                                          caplog):
    out = str(tmp_path / "run")
    train = script("train_embeddings").main
    train(COMMON + ["--out", out, "--epochs", "2"])
    with open(os.path.join(out, "notes.txt"), "w") as f:   # the user's own file stays
        f.write("mine")
    before = _files(out)
    original = Trainer.run_epoch

    def dies_in(epoch):
        def run_epoch(self, e):
            if e == epoch:
                raise KeyboardInterrupt
            return original(self, e)
        return run_epoch
    Trainer.run_epoch = dies_in(0)          # stopped before its first checkpoint
    try:
        with caplog.at_level(logging.WARNING, logger="segnp"):
            with pytest.raises(KeyboardInterrupt):
                train(COMMON + ["--out", out, "--epochs", "3", "--overwrite"])
        assert _files(out) == before
        assert "is left as it was" in caplog.text
        Trainer.run_epoch = dies_in(1)      # stopped after its first checkpoint
        with pytest.raises(KeyboardInterrupt):
            train(COMMON + ["--out", out, "--epochs", "3", "--overwrite"])
    finally:
        Trainer.run_epoch = original
    assert _epoch(out) == 1
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "log.csv", "log.json", "notes.txt",
                                       "options.json"]
    assert len(json.load(open(os.path.join(out, "log.json")))) == 1


def test_a_run_set_aside_by_a_killed_overwrite_comes_back(emb_run, tmp_path):
    """A process killed outright (SIGKILL) between setting the old run aside and the new
    checkpoint: the next command finds the old run in place."""
    out = str(tmp_path / "run")
    shutil.copytree(emb_run, out)
    before = _files(out)
    aside = cli._set_aside(out)
    assert not os.path.exists(_ckpt(out)) and os.path.isdir(aside)
    with pytest.raises(RunError, match=r"already holds a run \(finished, 1 epochs done\)"):
        script("train_embeddings").main(COMMON + ["--out", out, "--epochs", "1"])
    assert _files(out) == before


# ---- row 3: --epochs 0 -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["train_embeddings", "train_segmentation", "train_flow"])
def test_epochs_zero_is_a_one_line_error(name, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = _status(script(name).main, COMMON + ["--out", str(out), "--epochs", "0"],
                        capsys)
    assert code == 2 and len(err) == 1
    assert "argument --epochs: expected an integer >= 1; got 0" in err[0]
    assert not out.exists()


# ---- row 4: evaluate's output is --metrics and never a file it did not write -----------------
def test_evaluate_never_writes_over_the_checkpoint(emb_run, capsys):
    evaluate = script("evaluate").main
    before = _files(emb_run)
    for option in ("--out", "--metrics"):    # --out is a folder in every other script
        code, err = _status(evaluate, [_ckpt(emb_run), option, _ckpt(emb_run)], capsys)
        assert code == 2 and len(err) == 1, err
    assert "is the checkpoint being evaluated" in err[0]
    code, err = _status(evaluate, [_ckpt(emb_run), "--metrics",
                                   os.path.join(emb_run, "log.json")], capsys)
    assert code == 2 and "is not a metrics file of evaluate.py" in err[0]
    assert _files(emb_run) == before
    metrics = os.path.join(emb_run, "m.json")
    for _ in range(2):        # its own metrics file is replaced
        evaluate([_ckpt(emb_run), "--metrics", metrics, "--no-progress"])
    assert json.load(open(metrics))["task"] == "embedding"


# ---- row 5: the data tools never replace a file without --overwrite ------------------------
def test_make_synthetic_refuses_to_replace_a_dataset(tmp_path, capsys):
    out = str(tmp_path / "fs")
    argv = ["--out", out, "--count", "2", "--size", "16", "16"]
    assert make_synthetic.main(argv) == 0
    before = _files(out)
    capsys.readouterr()
    assert make_synthetic.main(argv + ["--seed", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "segmentation.h5' exists; add --overwrite" in err[0]
    assert _files(out) == before
    assert make_synthetic.main(argv + ["--seed", "3", "--overwrite"]) == 0
    assert _files(out) != before


def test_converters_and_inspect_refuse_to_replace_a_file(tmp_path, capsys):
    existing = tmp_path / "precious.h5"
    existing.write_bytes(b"data")
    none = str(tmp_path / "none")
    for tool, argv in ((voc_to_hdf5, ["--voc-root", none, "--split", "train"]),
                       (chairs_to_hdf5, ["--root", none, "--split", "all"])):
        assert tool.main(argv + ["--out", str(existing)]) == 2
        assert "precious.h5' exists; add --overwrite" in capsys.readouterr().err
    data = str(tmp_path / "fs")
    make_synthetic.main(["--out", data, "--count", "2", "--size", "16", "16"])
    capsys.readouterr()
    assert inspect_tool.main([os.path.join(data, "flow.h5"), "--png", str(existing)]) == 2
    captured = capsys.readouterr()
    assert "--png" in captured.err and captured.out == ""    # before the summary
    assert existing.read_bytes() == b"data"


# ---- row 6: one line and exit 2, before any work ------------------------------------------
def test_data_tool_errors_exit_2_in_one_line(tmp_path, capsys):
    assert inspect_tool.main([str(tmp_path / "absent.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"inspect: error: no such file {str(tmp_path / 'absent.h5')!r}"]


def test_backend_without_a_gpu_is_a_one_line_error(monkeypatch):
    if "cupy" not in backends.available_backends():
        pytest.skip("CuPy is not installed")
    import cupy
    try:
        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("a GPU is present")
    except cupy.cuda.runtime.CUDARuntimeError:
        pass
    monkeypatch.setattr(backends, "_active", None)
    args = cli.base_parser("x").parse_args(["--backend", "cupy"])
    with pytest.raises(RunError, match=r"backend 'cupy' cannot run here \(.*\); choose "
                                       r"another with --backend"):
        cli.setup(args)


@pytest.mark.parametrize("content", [b"just text\n", None])
def test_a_bad_vgg16_file_is_refused_before_any_work(emb_run, tmp_path, content):
    weights = tmp_path / "vgg16.npz"
    if content is None:      # a truncated download of a real archive
        np.savez(weights, **{f"features.{i}.weight": np.zeros((2, 2, 3, 3), np.float32)
                             for i in (0, 2)})
        weights.write_bytes(weights.read_bytes()[:200])
    else:
        weights.write_bytes(content)
    out = tmp_path / "run"
    with pytest.raises(RunError, match=r"--vgg16: '.*vgg16\.npz' is not a readable VGG-16 "
                                       r"weights file"):
        script("train_embeddings").main(COMMON + ["--out", str(out), "--vgg16",
                                                  str(weights)])
    assert not out.exists()


def _run_reproduce(args, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", "reproduce.py")]
                          + args, capture_output=True, text=True, cwd=cwd, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))


@pytest.mark.parametrize("bad", [["--seeds", "-1"], ["--seeds", "0", "0"],
                                 ["--keep-all", "1.5"], ["--workers", "0"],
                                 ["--seed", "5"], ["--flow-epochs", "0"],
                                 ["--ft-lr", "0"]])
def test_reproduce_refuses_bad_options_at_once(tmp_path, bad):
    r = _run_reproduce(["--preset", "tiny", "--out", "res", "--cache", "cache"] + bad,
                       tmp_path)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and bad[0] in err[0], r.stderr
    assert os.listdir(tmp_path) == []


def test_reproduce_refuses_to_reuse_results_in_one_line(tmp_path):
    os.makedirs(tmp_path / "res" / "runs")
    r = _run_reproduce(["--preset", "tiny", "--out", "res"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "reproduce.py: error: 'res' already holds runs; pass --resume to reuse them or "
        "choose another --out"]


def _as_from_a_terminal():
    # A child inherits an ignored SIGINT across exec (a shell's background job is started
    # so); a command typed at a terminal is not, whatever the test process's disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_reproduce_ctrl_c_is_one_line_and_130(tmp_path):
    """Ctrl-C reaches the whole process group, the main process and its workers."""
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "reproduce.py"),
                          "--preset", "quick", "--out", "res", "--cache", "cache",
                          "--no-progress"], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env=dict(os.environ, PYTHONPATH=ROOT),
                         preexec_fn=_as_from_a_terminal)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "res").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
    assert p.returncode == 130
    assert err.strip().splitlines() == [
        "reproduce.py: interrupted; --resume reuses the finished runs"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_reproduce_workers_end_when_the_main_process_is_killed(tmp_path, sig):
    """A signal to the main process alone (a scheduler's timeout, ``kill PID``) ends the
    workers too, instead of leaving them to finish their jobs orphaned and write into
    the run folder after the command has gone: on SIGTERM the main process stops them,
    on SIGKILL each sees its parent gone.  No temporary file is left behind."""
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "reproduce.py"),
                          "--preset", "quick", "--out", "res", "--cache", "cache",
                          "--no-progress"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        seed0 = tmp_path / "res" / "runs" / "seed0"  # a worker makes its job's folder
        deadline = time.monotonic() + 240
        while not (seed0.is_dir() and any(seed0.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert seed0.is_dir() and any(seed0.iterdir()), "no job started in 240 s"
        time.sleep(2.0)
        workers = live_in_group(p.pid, parent=p.pid)
        assert workers
        p.send_signal(sig)
        p.wait(timeout=60)
        assert p.returncode == (128 + sig if sig == signal.SIGTERM else -sig)
        if sig == signal.SIGTERM:
            # the main process stopped and joined its workers before it exited (their own
            # watch on it, polling every second, would end them only after it had gone)
            assert not set(workers) & set(live_in_group(p.pid))
        deadline = time.monotonic() + 30
        while live_in_group(p.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert live_in_group(p.pid) == [], "a worker outlived the main process by 30 s"
        assert glob.glob(str(tmp_path / "res" / "**" / ".*.tmp*"), recursive=True) == []
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


# ---- row 7: numbers that used to be accepted ------------------------------------------------
@pytest.mark.parametrize("name,bad,expected", [
    ("train_segmentation", ["--lam-mult", "-1"], "a finite number >= 0; got -1"),
    ("train_flow", ["--embedder-mult", "-1"], "a finite number >= 0; got -1"),
    ("train_segmentation", ["--lr", "inf"], "a finite number > 0; got inf"),
    ("train_embeddings", ["--lr", "nan"], "a finite number > 0; got nan"),
    ("train_embeddings", ["--seed", "-2"], "an integer >= 0; got -2"),
    ("train_embeddings", ["--size", "1.5"], "an integer >= 1; got '1.5'"),
    ("evaluate", ["CKPT", "--widths", "-1"], "an integer >= 1; got -1"),
    ("quickstart", ["--batch", "0"], "an integer >= 1; got 0"),
    ("quickstart", ["--checkpoint", "CKPT/"], "is a folder; expected a file name"),
    ("train_embeddings", ["--epoch", "3"], "unrecognized arguments: --epoch 3")])
def test_bad_numbers_are_refused_in_one_line(name, bad, expected, tmp_path, capsys):
    argv = [a.replace("CKPT", str(tmp_path / "c.npz")) for a in bad]
    if name.startswith("train_"):
        argv += ["--out", str(tmp_path / "run")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # --lr inf gave four RuntimeWarnings first
        code, err = _status(script(name).main, argv, capsys)
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert os.listdir(tmp_path) == []


# ---- row 8: what the logs and messages say, and evaluate's defaults -------------------------
def test_the_main_groups_lr_is_logged(emb_run, cache, tmp_path):
    out = str(tmp_path / "seg")
    script("train_segmentation").main(COMMON + ["--out", out, "--variant", "fc6",
                                                "--embedder", _ckpt(emb_run),
                                                "--lr", "0.003", "--epochs", "1"])
    log = json.load(open(os.path.join(out, "log.json")))
    assert log[0]["lr"] == pytest.approx(0.003)   # not the embedder's 0.0003


def test_resume_with_fewer_epochs_says_nothing_is_trained(cache, tmp_path, caplog):
    out = str(tmp_path / "run")
    train = script("train_embeddings").main
    train(COMMON + ["--out", out, "--epochs", "2"])
    before = _files(out)
    with caplog.at_level(logging.INFO, logger="segnp"):
        train(COMMON + ["--out", out, "--epochs", "1", "--resume"])
    assert "has done 2 epochs (finished); --epochs 1 asks for no more, so nothing is " \
           "trained" in caplog.text
    assert "schedule now spans" not in caplog.text
    assert _files(out)["checkpoint.npz"] == before["checkpoint.npz"]


def test_evaluate_defaults_to_the_runs_own_data(emb_run, cache, tmp_path):
    out = str(tmp_path / "seg")
    hist = script("train_segmentation").main(COMMON + ["--out", out, "--epochs", "1"])
    ev = script("evaluate").main([_ckpt(out), "--no-progress"])    # no --size, --test-count
    assert ev["samples"] == 4
    assert ev["miou"] == pytest.approx(hist[-1]["miou"])


def _sigint_handler_name(deps):
    return signal.getsignal(signal.SIGINT).__name__


def test_reproduce_workers_listen_to_ctrl_c_only_after_their_bootstrap():
    """The workers are born with SIGINT ignored (no traceback from a Ctrl-C while they
    import) and their initializer turns Ctrl-C back into KeyboardInterrupt for the job;
    the parent's own handler is restored after each submit."""
    from segnp.experiments.schedule import Job, run_jobs
    before = signal.getsignal(signal.SIGINT)
    out = run_jobs([Job("a", _sigint_handler_name, {}, ()),
                    Job("b", _sigint_handler_name, {}, ())], workers=2, log=lambda _: None)
    assert out == {"a": "default_int_handler", "b": "default_int_handler"}
    assert signal.getsignal(signal.SIGINT) is before


def test_make_synthetic_refuses_a_file_as_out_before_any_work(tmp_path, capsys):
    # --out names a folder: an existing file there is one line naming --out, before a
    # scene is drawn (it was '[Errno 17] File exists' after the progress bar started)
    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    assert make_synthetic.main(["--out", str(out), "--count", "2", "--size", "16", "16"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "not a folder" in err[0]
    assert "FlyingShapes" not in captured.err + captured.out
    assert out.read_text() == "keep me"


def _sleepy(deps):
    time.sleep(2.0)
    return "finished"


def test_a_ctrl_c_that_python_swallowed_still_stops_the_run():
    """A KeyboardInterrupt raised inside a weakref callback is dropped by Python
    ("Exception ignored in ..."); the remembered Ctrl-C stops the wait all the same."""
    from concurrent.futures import ThreadPoolExecutor
    from segnp.experiments import schedule
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(KeyboardInterrupt):
            schedule._run_graph(pool, 1, [schedule.Job("a", _sleepy, {}, ())], {}, {}, {},
                                lambda _: None, interrupted=[signal.SIGINT])
