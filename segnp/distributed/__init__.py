"""Data-parallel training across processes and machines, on MPI and NCCL (as ChainerMN
and Horovod do it)::

    import segnp.distributed as dist

    dist.init()                          # MPI world; NCCL too when the backend is CuPy
    dist.rank(), dist.size()
    dist.broadcast_parameters(model)     # rank 0's parameters and buffers everywhere
    opt = dist.DistributedOptimizer(optim.SGD(model.parameters(), lr=0.01))
    loader = DataLoader(dataset, batch_size=8, shuffle=True, seed=0,
                        shard=(dist.rank(), dist.size()))

run as ``mpiexec -n 4 python train.py``.  mpi4py carries the start-up and host arrays
(:mod:`.job`, :class:`.transport.MpiTransport`); NCCL, through CuPy, reduces GPU arrays
(:class:`.transport.NcclTransport`).  Without mpi4py, or run as one plain process,
``size() == 1`` and everything here is a no-op.  docs/distributed.md has the set-up, a
system MPI, and what to expect of scaling.
"""
from .parallel import (BUCKET_BYTES, DistributedOptimizer, GradientAveraging,
                       average_gradients, broadcast_parameters, data_parallel)
from .transport import MpiTransport, NcclTransport
from .job import (World, barrier, broadcast_object, init, launched, mean_over_ranks, rank,
                    script_setup, size, world)

__all__ = ["init", "launched", "rank", "size", "world", "World", "barrier",
           "broadcast_object", "mean_over_ranks", "script_setup", "broadcast_parameters",
           "average_gradients", "DistributedOptimizer", "GradientAveraging",
           "data_parallel", "BUCKET_BYTES", "MpiTransport", "NcclTransport"]
