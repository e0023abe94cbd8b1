"""Two ways to sum and broadcast one flat array across the ranks, both on existing
engines: MPI (mpi4py) on host memory, and NCCL (CuPy's binding) on GPU memory.

A transport works in place on a contiguous 1-D array of the active backend:
``allreduce_sum(buf)`` leaves the element-wise sum over the ranks in every rank's
``buf``; ``broadcast(buf, root)`` leaves rank ``root``'s ``buf`` in every rank's.
"""
__all__ = ["MpiTransport", "NcclTransport", "NCCL_TYPES"]

# dtype name -> the name of the matching NCCL data type in cupy.cuda.nccl; bool travels
# as bytes (broadcast only: a sum of bools is not asked for).
NCCL_TYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32",
              "float64": "NCCL_FLOAT64", "int8": "NCCL_INT8", "uint8": "NCCL_UINT8",
              "int32": "NCCL_INT32", "int64": "NCCL_INT64", "bool": "NCCL_UINT8"}


class MpiTransport:
    """MPI collectives on host arrays.  Device arrays (CuPy without the NCCL library)
    are copied to the host and back; NumPy arrays are reduced where they lie."""

    def __init__(self, comm, backend):
        from mpi4py import MPI
        self.comm, self.backend = comm, backend
        self._in_place, self._sum = MPI.IN_PLACE, MPI.SUM

    def allreduce_sum(self, buf):
        host = self.backend.to_numpy(buf)
        self.comm.Allreduce(self._in_place, host, op=self._sum)
        if host is not buf:
            buf[...] = self.backend.asarray(host)

    def broadcast(self, buf, root):
        host = self.backend.to_numpy(buf)
        self.comm.Bcast(host, root=root)
        if host is not buf:
            buf[...] = self.backend.asarray(host)


class NcclTransport:
    """NCCL collectives on device arrays, enqueued on the current CUDA stream (so the
    kernels that follow see the result without a host synchronisation).

    Args:
        comm: the MPI communicator; only the start-up goes through it (rank 0 draws the
            NCCL unique id and broadcasts it).
        nccl: the module ``cupy.cuda.nccl``.
        stream: ``stream() -> int``, the handle of the stream to enqueue on.
        pointer: ``pointer(array) -> int``, the device address of an array's data.
    """

    def __init__(self, comm, nccl, stream, pointer):
        self.nccl, self.stream, self.pointer = nccl, stream, pointer
        rank = comm.Get_rank()
        uid = comm.bcast(nccl.get_unique_id() if rank == 0 else None, root=0)
        self.comm = nccl.NcclCommunicator(comm.Get_size(), uid, rank)

    def _type(self, buf, fn):
        name = NCCL_TYPES.get(buf.dtype.name)
        if name is None:
            raise TypeError(f"NcclTransport.{fn}: NCCL carries {sorted(NCCL_TYPES)}; got "
                            f"an array of {buf.dtype}")
        return getattr(self.nccl, name)

    def allreduce_sum(self, buf):
        ptr = self.pointer(buf)
        self.comm.allReduce(ptr, ptr, buf.size, self._type(buf, "allreduce_sum"),
                            self.nccl.NCCL_SUM, self.stream())

    def broadcast(self, buf, root):
        self.comm.bcast(self.pointer(buf), buf.size, self._type(buf, "broadcast"), root,
                        self.stream())
