"""segnp.distributed on two MPI processes (``mpiexec -n 2`` from the mpich wheel of the
'test' extra, on the CPU): two ranks with half a batch each end where one process on
the whole batch ends (SGD with momentum, Adam); broadcast_parameters gives every rank
rank 0's values; an error on one rank ends the whole job within seconds; the training
scripts run, write from rank 0 only and resume exactly.

This file is also the program the ranks run: ``python tests/test_distributed.py
SCENARIO OUT``.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import segnp.functions as F
from segnp import distributed as dist
from segnp import Tensor, nn, serialization
from segnp.data import DataLoader
from segnp.optim import SGD, Adam
from segnp.random import get_rng, manual_seed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, STEPS_PER_EPOCH, EPOCHS = 8, 2, 3   # 8 samples, global batch 4: 6 steps


# ---- the model and data both sides train ----------------------------------------------
class TinyNet(nn.Module):
    """Two convolutions to 3 class scores, plus what data parallelism must skip or
    carry: a frozen layer (requires_grad False), a layer never called (grad None) and a
    buffer."""

    def __init__(self, dtype):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1, dtype=dtype)
        self.conv2 = nn.Conv2d(5, 3, 1, dtype=dtype)
        self.frozen = nn.Conv2d(3, 3, 1, dtype=dtype)
        self.unused = nn.Conv2d(3, 3, 1, dtype=dtype)
        self.register_buffer("gain", get_rng().uniform(1, 2, 3).astype(dtype))

    def forward(self, x):
        x = x + self.frozen(x)
        return self.conv2(F.relu(self.conv1(x)))


class Scenes:
    """N random images with labels of 3 classes."""

    def __init__(self):
        rng = np.random.default_rng(5)
        self.samples = [{"image": rng.uniform(0, 255, (6, 7, 3)).astype(np.uint8),
                         "label": rng.integers(0, 3, (6, 7)).astype(np.uint8)}
                        for _ in range(N)]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def train(optimizer, dtype, shard=None, seed=0):
    """Final parameters of EPOCHS epochs on :class:`Scenes`, global batch 4: the whole
    batch in one process, or (shard given) this rank's half with averaged gradients."""
    manual_seed(seed)
    model = TinyNet(dtype)
    params = list(model.parameters())
    opt = (SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3) if optimizer == "sgd"
           else Adam(params, lr=0.01))
    model.frozen.weight.requires_grad = False
    model.frozen.bias.requires_grad = False
    loader = DataLoader(Scenes(), batch_size=4, shuffle=True, seed=1)
    if shard is not None:
        dist.broadcast_parameters(model)
        loader = DataLoader(Scenes(), batch_size=4 // shard[1], shuffle=True, seed=1,
                            shard=shard)
        opt = dist.DistributedOptimizer(opt)
    assert len(loader) == STEPS_PER_EPOCH
    for _ in range(EPOCHS):
        for images, labels in loader:
            loss = F.softmax_cross_entropy(model(Tensor((images.astype(dtype) - 128) / 64)),
                                           labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.state_dict()


# ---- what each rank runs ----------------------------------------------------------------
def _gather_states(state):
    return dist.world().comm.gather(state, root=0)


def scenario_train(out):
    """Equivalence runs and the broadcast check, in one launch."""
    r, p = dist.rank(), dist.size()
    results = {}
    for optimizer in ("sgd", "adam"):
        for dtype in (np.float32, np.float64):
            states = _gather_states(train(optimizer, dtype, shard=(r, p)))
            if r == 0:
                for k, v in states[0].items():
                    results[f"{optimizer}-{np.dtype(dtype).name}/{k}"] = v
                    results[f"{optimizer}-{np.dtype(dtype).name}/rank1/{k}"] = states[1][k]
    manual_seed(10 + r)   # ranks start from different weights and buffers
    model = TinyNet(np.float32)
    before = _gather_states(model.state_dict())
    dist.broadcast_parameters(model)
    after = _gather_states(model.state_dict())
    if r == 0:
        for rank_ in range(p):
            for k in before[0]:
                results[f"before{rank_}/{k}"] = before[rank_][k]
                results[f"after{rank_}/{k}"] = after[rank_][k]
        np.savez(out, **results)


def _stderr_to_file(out):
    """Send this rank's stderr (fd 2) to OUT/rankR.err.  mpiexec forwards a rank's stderr
    only as far as it gets before MPI_Abort kills it, so the test reads the files."""
    path = os.path.join(out, f"rank{dist.rank()}.err")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def scenario_raise(out):
    """Rank 1 fails at once while rank 0 waits in a collective."""
    _stderr_to_file(out)
    if dist.rank() == 1:
        raise ValueError("rank 1 fails on purpose")
    dist.barrier()


def scenario_mismatch(out):
    """Rank 1's backward leaves a gradient at None that rank 0 has."""
    _stderr_to_file(out)
    manual_seed(0)
    model = TinyNet(np.float32)
    opt = dist.DistributedOptimizer(SGD(model.parameters(), lr=0.1))
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    if dist.rank() == 1:
        model.conv1.bias.grad = None
    opt.step()


SCENARIOS = {"train": scenario_train, "raise": scenario_raise,
             "mismatch": scenario_mismatch}


# ---- launching ----------------------------------------------------------------------------
def _mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(
    _mpiexec() is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs mpi4py and mpiexec (pip install '.[mpi]')")


def mpirun(args, timeout=120, n=2, env=None):
    """``mpiexec -n 2 python ARGS`` from the repository root; (returncode, stdout,
    stderr, seconds).  The timeouts are far above the few seconds each run takes: they
    only turn a deadlock into a failure."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               SEGNP_BACKEND="numpy", OMP_NUM_THREADS="1", **(env or {}))
    t0 = time.perf_counter()
    proc = subprocess.run([_mpiexec(), "-n", str(n), sys.executable] + args, cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("dist") / "train.npz")
    rc, _, err, _ = mpirun([os.path.abspath(__file__), "train", out])
    assert rc == 0, err[-3000:]
    with np.load(out) as f:
        return dict(f)


@needs_mpi
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_two_ranks_with_half_batches_end_where_one_process_ends(two_rank_results,
                                                                optimizer, dtype, rtol):
    reference = train(optimizer, dtype)
    tag = f"{optimizer}-{np.dtype(dtype).name}"
    for k, want in reference.items():
        got = two_rank_results[f"{tag}/{k}"]
        np.testing.assert_array_equal(got, two_rank_results[f"{tag}/rank1/{k}"], err_msg=k)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max(),
                                   err_msg=k)
    # the frozen and the unused layers kept their initial weights on both sides
    manual_seed(0)
    initial = TinyNet(dtype).state_dict()
    for k in ("frozen.weight", "unused.weight"):
        np.testing.assert_array_equal(reference[k], initial[k])
        np.testing.assert_array_equal(two_rank_results[f"{tag}/{k}"], initial[k])
    assert not np.allclose(reference["conv1.weight"], initial["conv1.weight"])


@needs_mpi
def test_broadcast_gives_every_rank_rank0_values(two_rank_results):
    r = two_rank_results
    names = [k[len("before0/"):] for k in r if k.startswith("before0/")]
    assert "gain" in names and "conv1.weight" in names
    for k in names:
        assert not np.array_equal(r[f"before0/{k}"], r[f"before1/{k}"]) or "bias" in k, k
        np.testing.assert_array_equal(r[f"after0/{k}"], r[f"before0/{k}"], err_msg=k)
        np.testing.assert_array_equal(r[f"after1/{k}"], r[f"before0/{k}"], err_msg=k)


@needs_mpi
@pytest.mark.parametrize("scenario, message", [
    ("raise", "rank 1 fails on purpose"),
    ("mismatch", "different parameters")])
def test_an_error_on_one_rank_ends_every_rank(tmp_path, scenario, message):
    rc, _, err, seconds = mpirun([os.path.abspath(__file__), scenario, str(tmp_path)],
                                 timeout=120)
    assert rc != 0, err[-3000:]
    # each rank's own stderr, written before it called MPI_Abort
    ranks = [(tmp_path / f"rank{r}.err").read_text() for r in range(2)
             if (tmp_path / f"rank{r}.err").exists()]
    assert any(message in text for text in ranks), (ranks, err[-3000:])
    assert seconds < 30, seconds      # about 1 s: Python's start-up, then MPI_Abort


# ---- the scripts ---------------------------------------------------------------------------
SCRIPT_ARGS = ["--count", "8", "--test-count", "4", "--size", "32", "--batch-size", "4"]


def scenario_full_and_interrupted(out):
    """train_segmentation.py ARGS into OUT/full; then again into OUT/part, stopped on
    every rank as its last epoch starts (as a killed job), when rank 0 has written the
    checkpoint of the epoch before."""
    from segnp.experiments import Trainer
    spec = importlib.util.spec_from_file_location(
        "train_segmentation", os.path.join(ROOT, "examples", "train_segmentation.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = sys.argv[3:]
    script.main(args + ["--out", os.path.join(out, "full")])
    original = Trainer.run_epoch

    def dies_in_last_epoch(self, epoch):
        if epoch == self.epochs - 1:
            raise SystemExit(3)
        return original(self, epoch)
    Trainer.run_epoch = dies_in_last_epoch
    script.main(args + ["--out", os.path.join(out, "part"), "--no-progress"])


SCENARIOS["full_and_interrupted"] = scenario_full_and_interrupted


def _run(program, cache, rc=0):
    code, stdout, err, _ = mpirun(program, timeout=300, env={"SEGNP_CACHE": cache})
    assert code == rc, err[-3000:]
    return stdout, err


def _final(out):
    return serialization.read_checkpoint(os.path.join(out, "checkpoint.npz"))["model"]


@needs_mpi
def test_segmentation_script_on_two_ranks_resumes_exactly(tmp_path):
    cache, full, part = (str(tmp_path / d) for d in ("cache", "full", "part"))
    stdout, err = _run([os.path.abspath(__file__), "full_and_interrupted", str(tmp_path)] +
                       SCRIPT_ARGS + ["--epochs", "2"], cache, rc=3)
    # rank 0 alone reports and draws bars (each bar's first frame appears once)
    assert stdout.count("baseline, epoch 2") == 1, stdout
    assert err.count("FlyingShapes:   0%|          | 0/8 [") == 1, err[-3000:]
    assert err.count("segmentation 1/2:   0%|          | 0/2 [00:00<?, ?it/s]") == 1
    assert serialization.read_checkpoint(os.path.join(part, "checkpoint.npz"))[
        "extra"]["epoch"] == 1
    assert sorted(os.listdir(part)) == ["checkpoint.npz", "log.csv", "log.json", "options.json"]
    _run([os.path.join("examples", "train_segmentation.py")] + SCRIPT_ARGS +
         ["--epochs", "2", "--no-progress", "--resume", "--out", part], cache)
    a, b = _final(full), _final(part)
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    log = json.load(open(os.path.join(part, "log.json")))
    assert [r["epoch"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) for r in log)


@needs_mpi
@pytest.mark.parametrize("name", ["train_embeddings", "train_flow"])
def test_embedding_and_flow_scripts_on_two_ranks(tmp_path, name):
    out = str(tmp_path / "run")
    stdout, _ = _run([os.path.join("examples", f"{name}.py")] + SCRIPT_ARGS +
                     ["--epochs", "1", "--no-progress", "--out", out], str(tmp_path / "cache"))
    lines = stdout.strip().splitlines()
    assert lines and len(set(lines)) == len(lines), stdout    # rank 0 alone reports
    written = sorted(os.listdir(out))
    assert {"checkpoint.npz", "log.json", "log.csv"} <= set(written), written
    assert not [f for f in written if f.startswith(".")], written   # no leftover temp


if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](sys.argv[2])
