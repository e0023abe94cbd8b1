"""Issue 10, cases 4, 6, 7 and the data tools: the backend option, output problems found
before the work, signals that leave no debris or blocked workers, inspect --count 0, and
the unknown value of .flo files."""
import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from data_tools import chairs_to_hdf5, inspect as inspect_tool, voc_to_hdf5
from segnp import backends
from segnp.data import SegmentationWriter
from segnp.experiments.cli import base_parser, setup
from segnp.io import read_flo, write_flo, write_png
from segnp.metrics import angular_error, end_point_error
from procs import alive, children

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)


def test_backend_option_defaults_to_the_library_choice(monkeypatch):
    p = base_parser("x")
    assert p.parse_args([]).backend is None
    with pytest.raises(SystemExit):
        p.parse_args(["--backend", "emulator"])
    assert p.parse_args(["--backend", "cuda-emulator"]).backend == "cuda-emulator"
    monkeypatch.setenv("SEGNP_BACKEND", "cuda-emulator")
    monkeypatch.setattr(backends, "_active", None)
    setup(p.parse_args([]))
    assert backends.get_backend() is backends.get_backend("cuda-emulator")


def test_converters_refuse_a_folder_as_out_before_converting(tmp_path, capsys):
    # The roots are empty: a check made after listing the samples would report them.
    assert voc_to_hdf5.main(["--voc-root", str(tmp_path / "none"), "--split", "train",
                             "--out", str(tmp_path)]) == 2
    assert "is a folder; expected a file name" in capsys.readouterr().err
    assert chairs_to_hdf5.main(["--root", str(tmp_path / "none"), "--split", "all",
                                "--out", str(tmp_path)]) == 2
    assert "is a folder; expected a file name" in capsys.readouterr().err


def test_errors_name_the_final_path_not_the_temporary_one(tmp_path):
    target = tmp_path / "missing" / "x.png"
    with pytest.raises(OSError) as err:
        write_png(target, np.zeros((2, 2, 3), np.uint8))
    assert ".tmp" not in str(err.value)
    target = tmp_path / "missing" / "f.flo"
    with pytest.raises(OSError) as err:
        write_flo(target, np.zeros((2, 2, 2), np.float32))
    assert ".tmp" not in str(err.value) and str(target) in str(err.value)


def _segmentation_file(path, count=3):
    with SegmentationWriter(path, count, (8, 8), ["bg", "a"]) as w:
        for _ in range(count):
            w.add(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))


def test_inspect_count_zero_is_a_one_line_error(tmp_path, capsys):
    path = str(tmp_path / "s.h5")
    _segmentation_file(path)
    with pytest.raises(SystemExit) as exc:
        inspect_tool.main([path, "--png", str(tmp_path / "g.png"), "--count", "0"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == ("python -m data_tools.inspect: error: argument --count: "
                                    "expected an integer >= 1; got 0 (see --help)")
    assert captured.out == ""


def test_flo_unknown_value_is_marked_and_left_out_of_the_error(tmp_path):
    flow = np.ones((3, 4, 2), np.float32)
    raw = flow.copy()
    raw[1, 2] = (1e10, 0.5)         # the Middlebury "unknown" value, as files store it
    path = tmp_path / "u.flo"
    with open(path, "wb") as f:
        f.write(np.array([202021.25], "<f4").tobytes() + np.array([4, 3], "<i4").tobytes()
                + raw.astype("<f4").tobytes())
    got = read_flo(path)
    assert np.isnan(got[1, 2]).all() and np.isfinite(np.delete(got.reshape(-1, 2), 6, 0)).all()
    gt = got.transpose(2, 0, 1)[None]
    pred = np.zeros_like(gt)
    assert end_point_error(pred, gt) == pytest.approx(np.sqrt(2))
    assert angular_error(np.nan_to_num(gt), gt) == pytest.approx(0, abs=1e-5)
    write_flo(tmp_path / "back.flo", got)       # written back as unknown
    np.testing.assert_array_equal(np.isnan(read_flo(tmp_path / "back.flo")), np.isnan(got))


def _wait_for(predicate, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_during_make_synthetic_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "fs"
    proc = subprocess.Popen([sys.executable, "-m", "data_tools.make_synthetic", "--out",
                             str(out), "--count", "5000", "--size", "32", "32"], cwd=REPO,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _wait_for(lambda: glob.glob(str(out / ".*tmp*")), 60), "no temporary file"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert os.listdir(out) == []


def test_sigterm_swallowed_in_a_callback_still_ends_the_process(tmp_path):
    # A SIGTERM handled inside a __del__ (as inside h5py's weakref callbacks) raises a
    # SystemExit that Python prints and drops; the fallback must still end the process
    # with 143 and remove the temporary file of the open atomic_path block.
    child = textwrap.dedent(f"""
        import os, signal, sys, time
        import segnp.atomic as atomic
        atomic.SIGTERM_GRACE_S = 0.5
        atomic.cleanup_on_sigterm()

        class KillsInDel:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGTERM)

        with atomic.atomic_path({str(tmp_path / "out.bin")!r}) as tmp:
            open(tmp, "w").close()
            KillsInDel()         # dropped at once: __del__ runs, the SystemExit is lost
            time.sleep(30)
        sys.exit(0)
    """)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert "SystemExit" in proc.stderr          # the exception really was swallowed
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert time.monotonic() - start < 20        # the fallback, not the end of the sleep
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_loader_workers_exit_when_the_parent_is_killed(tmp_path):
    parent = textwrap.dedent("""
        import sys, time
        import numpy as np
        from segnp.data import DataLoader
        data = [{"image": np.zeros((4, 4, 3), np.uint8)} for _ in range(64)]
        it = iter(DataLoader(data, batch_size=1, workers=2))
        next(it)
        print("ready", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, text=True)
    workers = []
    try:
        assert proc.stdout.readline().strip() == "ready"
        workers = [k for k in children(proc.pid) if alive(k)]
        assert workers
        proc.kill()
        proc.wait(30)
        assert _wait_for(lambda: not any(alive(w) for w in workers), 20), workers
    finally:
        proc.kill()
        for w in filter(alive, workers):   # a failed test leaves no orphans behind
            os.kill(w, signal.SIGKILL)


def test_sigint_prints_one_line(tmp_path):
    code = textwrap.dedent("""
        import signal
        import time
        from segnp.experiments.cli import run_script
        # a shell's background job starts with SIGINT ignored; a terminal user's does not
        signal.signal(signal.SIGINT, signal.default_int_handler)
        def main(argv):
            print("ready", flush=True)
            time.sleep(60)
        raise SystemExit(run_script(main))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["-c: interrupted"]
