"""The job as one process sees it: its rank, the number of processes, the MPI
communicator and the transport that sums and broadcasts arrays of the active backend.

``init()`` joins the MPI world (``mpi4py.MPI.COMM_WORLD``) and, when the backend is CuPy,
puts each process on its own GPU and opens an NCCL communicator whose unique id rank 0
draws and broadcasts over MPI.  Without mpi4py there is one process: ``size() == 1`` and
every collective is a no-op, so data-parallel code runs anywhere unchanged.

``rank()`` and ``size()`` do not start MPI on their own in a plain ``python script.py``
(MPI's start-up costs time and needs nothing here); they call ``init()`` when an MPI
launcher started this process (its environment says so, :func:`launched`).
"""
import os
import sys

import numpy as np

from ..backends import get_backend
from .transport import MpiTransport, NcclTransport

__all__ = ["World", "init", "launched", "rank", "size", "world", "barrier",
           "broadcast_object", "mean_over_ranks", "script_setup"]

# What mpiexec (MPICH/Hydra, Intel MPI, Open MPI, MVAPICH) or srun set to the number of
# processes of the job.
_LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                       "SLURM_STEP_NUM_TASKS")


class World:
    """``comm``: an mpi4py communicator, or None for a lone process; ``transport``: an
    object with ``allreduce_sum(buf)`` and ``broadcast(buf, root)`` (in place on a
    contiguous 1-D array of the backend), or None when ``size == 1``."""

    def __init__(self, comm=None, transport=None):
        self.comm, self.transport = comm, transport
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1

    def __repr__(self):
        kind = type(self.transport).__name__ if self.transport else "no transport"
        return f"<segnp World rank {self.rank} of {self.size}, {kind}>"


_LONE = World()
_world = None


def launched():
    """The number of processes an MPI launcher says this job has (1 when started
    without one)."""
    for var in _LAUNCHER_SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


def init():
    """Join the MPI world (idempotent); returns the :class:`World`.

    Call it after choosing the backend and before building the model: with CuPy it
    selects this process's GPU (its rank on the node modulo the GPUs there).  On more
    than one process, an uncaught exception on any rank aborts the whole job (MPI
    Abort), so that no rank waits forever in a collective for one that died.
    """
    global _world
    if _world is not None:
        return _world
    try:
        from mpi4py import MPI
    except ImportError:
        n = launched()
        if n > 1:
            raise RuntimeError(f"segnp.distributed.init: this is one of {n} processes "
                               f"started by an MPI launcher, but mpi4py is not installed "
                               f"(pip install 'segnp[mpi]')") from None
        _world = _LONE
        return _world
    comm = MPI.COMM_WORLD
    if comm.Get_size() > 1:
        _abort_on_uncaught_exception(comm)
    _world = World(comm, _transport(comm, MPI))
    return _world


def _transport(comm, MPI):
    backend = get_backend()
    if backend.name != "cupy":
        return MpiTransport(comm, backend)
    import cupy
    from cupy.cuda import nccl
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    cupy.cuda.Device(local.Get_rank() % cupy.cuda.runtime.getDeviceCount()).use()
    local.Free()
    if not nccl.available:
        # CuPy without the NCCL library: reduce on the host, one copy each way
        return MpiTransport(comm, backend)
    return NcclTransport(comm, nccl, stream=lambda: cupy.cuda.get_current_stream().ptr,
                         pointer=lambda a: a.data.ptr)


def _abort_on_uncaught_exception(comm):
    previous = sys.excepthook

    def abort(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        comm.Abort(1)

    sys.excepthook = abort


def world():
    """The :class:`World`: the one ``init()`` made, else (started by an MPI launcher)
    a new one, else a lone process's."""
    if _world is not None:
        return _world
    return init() if launched() > 1 else _LONE


def rank():
    """This process's rank, 0 .. size() - 1."""
    return world().rank


def size():
    """The number of processes training together."""
    return world().size


def barrier():
    """Wait until every rank has got here."""
    w = world()
    if w.size > 1:
        w.comm.Barrier()


def broadcast_object(obj, root=0):
    """``obj`` of rank ``root`` on every rank (any picklable object)."""
    w = world()
    return obj if w.size == 1 else w.comm.bcast(obj, root=root)


def mean_over_ranks(values):
    """``{name: float}`` averaged over the ranks (every rank passes the same names)."""
    w = world()
    if w.size == 1:
        return dict(values)
    names = list(values)
    total = np.array([float(values[k]) for k in names], np.float64)
    total = np.sum(w.comm.allgather(total), axis=0)
    return {k: float(v) / w.size for k, v in zip(names, total)}


def script_setup(args):
    """For the example scripts: join the MPI world when started by ``mpiexec``; then on
    ranks other than 0 hide the progress bars (``args.no_progress``) and the printed
    summary, since rank 0 reports for the whole job."""
    if launched() > 1:
        init()
    if rank() != 0:
        args.no_progress = True
        sys.stdout = open(os.devnull, "w")
