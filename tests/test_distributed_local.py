"""segnp.distributed inside one process: a lone process (no launcher, or no mpi4py) is
a world of one where everything is a no-op; DistributedOptimizer keeps the optimizer's
class, state and checkpoints; the buckets; the DataLoader's shards; and the NCCL path,
its calls checked against a stand-in for ``cupy.cuda.nccl`` (and on a GPU when one is
present)."""
import ctypes
import sys
import types

import numpy as np
import pytest

from segnp import Parameter, distributed as dist, serialization
from segnp.data import DataLoader
from segnp.distributed import job as world_mod, parallel
from segnp.distributed.transport import NCCL_TYPES, NcclTransport
from segnp.optim import SGD, Adam

LAUNCHER_VARS = world_mod._LAUNCHER_SIZE_VARS


@pytest.fixture
def fresh_world(monkeypatch):
    """No world made yet, and no launcher in the environment."""
    monkeypatch.setattr(world_mod, "_world", None)
    for var in LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


# ---- one process -----------------------------------------------------------------------
def test_a_plain_process_is_a_world_of_one_without_starting_mpi(fresh_world):
    assert dist.launched() == 1
    assert (dist.rank(), dist.size()) == (0, 1)
    assert world_mod._world is None          # rank() and size() did not start MPI
    dist.barrier()
    assert dist.broadcast_object({"a": 1}) == {"a": 1}
    assert dist.mean_over_ranks({"loss": 2.5}) == {"loss": 2.5}


def test_without_mpi4py_init_gives_one_process_or_names_the_fix(fresh_world):
    fresh_world.setitem(sys.modules, "mpi4py", None)      # import mpi4py fails
    w = dist.init()
    assert (w.rank, w.size, w.comm, w.transport) == (0, 1, None, None)
    fresh_world.setattr(world_mod, "_world", None)
    fresh_world.setenv("PMI_SIZE", "4")
    assert dist.launched() == 4
    with pytest.raises(RuntimeError, match=r"one of 4 processes.*mpi4py is not installed"):
        dist.init()


def _params(rng, shapes=((3, 2), (4,), (2, 2, 2))):
    return [Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes]


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: Adam(p, lr=0.01)])
def test_distributed_optimizer_on_one_process_steps_as_the_optimizer(fresh_world, make):
    rng = np.random.default_rng(0)
    a, b = _params(rng), _params(np.random.default_rng(0))
    plain, wrapped = make(a), dist.DistributedOptimizer(make(b))
    assert type(wrapped).__name__ == type(plain).__name__
    assert isinstance(wrapped, type(plain)) and isinstance(wrapped, dist.GradientAveraging)
    for _ in range(3):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in a]
        for p, q, g in zip(a, b, grads):
            p.grad, q.grad = g, g.copy()
        plain.step()
        wrapped.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)
    assert dist.DistributedOptimizer(wrapped) is wrapped        # wrapping twice: once


def test_distributed_optimizer_checkpoints_load_into_the_plain_optimizer(fresh_world,
                                                                         tmp_path):
    from segnp import nn
    model = nn.Conv2d(2, 3, 3)
    opt = dist.DistributedOptimizer(Adam(model.parameters(), lr=0.01))
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    opt.step()
    path = str(tmp_path / "c.npz")
    serialization.save(path, model, opt)
    plain = Adam(model.parameters(), lr=0.01)
    serialization.load(path, model, plain)
    np.testing.assert_array_equal(plain.state_dict()["state"][0]["exp_avg"],
                                  opt.state_dict()["state"][0]["exp_avg"])


def test_distributed_optimizer_rejects_what_is_not_an_optimizer():
    with pytest.raises(TypeError, match="DistributedOptimizer: expected a segnp.optim"):
        dist.DistributedOptimizer([Parameter(np.zeros(2, np.float32))])
    with pytest.raises(ValueError, match="bucket_bytes must be >= 1"):
        dist.DistributedOptimizer(SGD([Parameter(np.zeros(2, np.float32))], lr=1),
                                  bucket_bytes=0)


def test_data_parallel_changes_nothing_on_one_process(fresh_world):
    from segnp import nn
    model = nn.Conv2d(1, 1, 1)
    opt = SGD(model.parameters(), lr=0.1)
    loader = DataLoader(list(range(6)), batch_size=3)
    assert dist.data_parallel(model, opt, loader) is opt
    assert type(opt) is SGD and loader.batch_size == 3 and loader.shard is None


# ---- buckets ------------------------------------------------------------------------------
def test_buckets_keep_one_dtype_order_and_the_size_cap():
    arrays = [np.zeros(10, np.float32), np.zeros(3, np.float64), np.zeros(20, np.float32),
              np.zeros(100, np.float32), np.zeros(5, np.float32), np.zeros(2, np.float64)]
    got = list(parallel._buckets(arrays, bucket_bytes=120))
    # 40 + 80 bytes fit in 120; the 400-byte array goes alone; float64 on its own
    assert got == [[0, 2], [3], [4], [1, 5]]
    assert list(parallel._buckets(arrays, bucket_bytes=1 << 20)) == [[0, 2, 3, 4], [1, 5]]


# ---- the DataLoader's shards ----------------------------------------------------------------
class Numbered:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"image": np.full((2, 2, 3), i, np.uint8), "label": np.zeros((2, 2), np.uint8)}


def _ids(loader):
    return [b[0][:, 0, 0, 0].astype(int).tolist() for b in loader]


@pytest.mark.parametrize("n, size", [(12, 2), (13, 3), (10, 4)])
def test_shards_are_disjoint_equal_and_make_up_the_global_batches(n, size):
    B = 2 * size
    whole = DataLoader(Numbered(n), batch_size=B, shuffle=True, seed=4, drop_last=True)
    shards = [DataLoader(Numbered(n), batch_size=B // size, shuffle=True, seed=4,
                         drop_last=True, shard=(r, size)) for r in range(size)]
    for epoch in range(2):
        per_rank = [_ids(s) for s in shards]
        flat = [sum(batches, []) for batches in per_rank]
        assert len({len(b) for b in per_rank}) == 1                  # same step count
        assert len(set(sum(flat, []))) == sum(len(f) for f in flat)   # disjoint
        assert all(len(f) == (n // size) // (B // size) * (B // size) for f in flat)
        # the k-th batches of the shards together are the k-th global batch
        for k, batch in enumerate(_ids(whole)):
            if k < len(per_rank[0]):
                assert sorted(sum((p[k] for p in per_rank), [])) == sorted(batch)
        again = DataLoader(Numbered(n), batch_size=B // size, shuffle=True, seed=4,
                           drop_last=True, shard=(1, size), start_epoch=epoch)
        assert _ids(again) == per_rank[1]                            # same for a seed


def test_shard_bad_input():
    for bad in [(2, 2), (-1, 2), (0, 0), "0/2", (0.0, 2), (True, 2), (0, 2, 1)]:
        with pytest.raises(ValueError, match="DataLoader: shard must be"):
            DataLoader(Numbered(4), shard=bad)
    with pytest.raises(ValueError, match="5 shards of a dataset of 4 samples"):
        DataLoader(Numbered(4), shard=(0, 5))


# ---- the NCCL path against a stand-in -------------------------------------------------------
class StandInMpi:
    """What the NCCL start-up and the checks use of an mpi4py communicator."""

    def __init__(self, rank, size):
        self.rank, self.size, self.bcasts = rank, size, []

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def bcast(self, obj, root=0):
        self.bcasts.append((obj, root))
        return tuple(range(128)) if obj is None else obj     # rank 0's unique id

    def allgather(self, obj):
        return [obj] * self.size


def stand_in_nccl(peer_factor):
    """A ``cupy.cuda.nccl`` whose communicator reads and writes host memory at the given
    addresses: allReduce adds a peer whose buffer is ``peer_factor`` times ours, and
    bcast writes 0, 1, 2, ... (the root's buffer)."""
    ctype = {1: ctypes.c_float, 2: ctypes.c_double}
    calls = []

    def view(ptr, count, dtype):
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctype[dtype])),
                                     (count,))

    class NcclCommunicator:
        def __init__(self, ndev, uid, rank):
            assert len(uid) == 128
            calls.append(("init", ndev, rank))

        def allReduce(self, send, recv, count, dtype, op, stream):
            calls.append(("allReduce", count, dtype, op, stream))
            assert send == recv
            buf = view(recv, count, dtype)
            buf += peer_factor * buf

        def bcast(self, ptr, count, dtype, root, stream):
            calls.append(("bcast", count, dtype, root, stream))
            view(ptr, count, dtype)[...] = np.arange(count)

    ns = types.SimpleNamespace(NcclCommunicator=NcclCommunicator, NCCL_SUM=7,
                               get_unique_id=lambda: tuple(range(128)), calls=calls)
    for i, name in enumerate(sorted(set(NCCL_TYPES.values()))):
        setattr(ns, name, {"NCCL_FLOAT32": 1, "NCCL_FLOAT64": 2}.get(name, 10 + i))
    return ns


@pytest.fixture
def nccl_world(monkeypatch):
    """A world of 2 whose rank here (rank 1) talks NCCL through the stand-in."""
    mpi = StandInMpi(rank=1, size=2)
    nccl = stand_in_nccl(peer_factor=3.0)
    transport = NcclTransport(mpi, nccl, stream=lambda: 1234, pointer=lambda a: a.ctypes.data)
    monkeypatch.setattr(world_mod, "_world", dist.World(mpi, transport))
    return mpi, nccl


def test_nccl_start_up_shares_rank0_unique_id(nccl_world):
    mpi, nccl = nccl_world
    assert mpi.bcasts == [(None, 0)]                # rank 1 receives the id from rank 0
    assert nccl.calls == [("init", 2, 1)]
    assert (dist.rank(), dist.size()) == (1, 2)


def test_nccl_averages_gradients_in_few_buckets(nccl_world):
    _, nccl = nccl_world
    rng = np.random.default_rng(1)
    params = _params(rng) + [Parameter(rng.standard_normal(5))]        # one float64
    frozen, idle = _params(rng, ((2,), (3,)))
    opt = dist.DistributedOptimizer(SGD(params + [frozen, idle], lr=1.0), bucket_bytes=64)
    frozen.requires_grad = False
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    for p, g in zip(params, grads):
        p.grad = g.copy()
    frozen.grad = np.ones(2, np.float32)
    before = [p.data.copy() for p in params + [frozen]]
    opt.step()
    # the peer holds 3x our gradients: the mean is 2x ours, and SGD at lr 1 subtracts it
    for p, b, g in zip(params, before, grads):
        np.testing.assert_allclose(p.data, b - 2 * g, rtol=1e-6)
    np.testing.assert_array_equal(frozen.data, before[-1])
    reduces = [c for c in nccl.calls if c[0] == "allReduce"]
    # float32: 6 + 4 elements (40 bytes) fill a bucket, then 8; float64: 5
    assert reduces == [("allReduce", 10, 1, 7, 1234), ("allReduce", 8, 1, 7, 1234),
                       ("allReduce", 5, 2, 7, 1234)]


def test_nccl_broadcast_writes_every_parameter_and_buffer(nccl_world):
    from segnp import nn
    _, nccl = nccl_world
    model = nn.Conv2d(2, 3, 1)
    model.register_buffer("scale", np.zeros(4, np.float64))
    dist.broadcast_parameters(model)
    flat = np.concatenate([model.weight.data.ravel(), model.bias.data.ravel()])
    np.testing.assert_array_equal(flat, np.arange(9))
    np.testing.assert_array_equal(model.scale, np.arange(4))
    assert [c for c in nccl.calls if c[0] == "bcast"] == [("bcast", 9, 1, 0, 1234),
                                                          ("bcast", 4, 2, 0, 1234)]


def test_nccl_names_an_unsupported_dtype(nccl_world):
    with pytest.raises(TypeError, match="NcclTransport.allreduce_sum: NCCL carries"):
        dist.world().transport.allreduce_sum(np.zeros(3, np.complex64))


@pytest.mark.gpu
def test_nccl_on_a_gpu():
    """A real one-rank NCCL communicator over CuPy arrays: the sum over one rank and the
    broadcast from it leave the values, in float32 and float64."""
    cupy = pytest.importorskip("cupy")
    if not cupy.is_available():
        pytest.skip("no CUDA device")
    from cupy.cuda import nccl
    if not nccl.available:
        pytest.skip("CuPy has no NCCL library")
    t = NcclTransport(StandInMpi(0, 1), nccl, stream=lambda: cupy.cuda.get_current_stream().ptr,
                      pointer=lambda a: a.data.ptr)
    for dtype in (cupy.float32, cupy.float64):
        x = cupy.arange(1000, dtype=dtype)
        t.allreduce_sum(x)
        t.broadcast(x, 0)
        np.testing.assert_array_equal(cupy.asnumpy(x), np.arange(1000))


def test_cupy_backend_picks_the_gpu_by_node_rank_and_opens_nccl(monkeypatch):
    """init()'s choice for the CuPy backend, with stand-ins for MPI and CuPy: rank 3 on
    its node with 2 GPUs takes GPU 1, and reduces through NCCL on CuPy's current
    stream; without the NCCL library it falls back to MPI on the host."""
    used = []

    class Local:
        def Get_rank(self):
            return 3

        def Free(self):
            used.append("freed")

    mpi = StandInMpi(rank=1, size=2)
    mpi.Split_type = lambda kind: Local() if kind == "shared" else None
    MPI = types.SimpleNamespace(COMM_TYPE_SHARED="shared", IN_PLACE="in place", SUM="sum")
    nccl = stand_in_nccl(peer_factor=1.0)
    nccl.available = True
    cuda = types.SimpleNamespace(
        Device=lambda i: types.SimpleNamespace(use=lambda: used.append(i)),
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 2),
        get_current_stream=lambda: types.SimpleNamespace(ptr=99), nccl=nccl)
    fake_cupy = types.SimpleNamespace(cuda=cuda)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", nccl)
    monkeypatch.setitem(sys.modules, "mpi4py", types.SimpleNamespace(MPI=MPI))
    monkeypatch.setattr(world_mod, "get_backend", lambda: types.SimpleNamespace(name="cupy"))
    t = world_mod._transport(mpi, MPI)
    assert used == [1, "freed"] and isinstance(t, NcclTransport)
    assert t.stream() == 99 and t.pointer(types.SimpleNamespace(
        data=types.SimpleNamespace(ptr=1234))) == 1234
    nccl.available = False
    assert type(world_mod._transport(mpi, MPI)).__name__ == "MpiTransport"
