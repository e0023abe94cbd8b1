"""Data parallelism: every rank holds the whole model, trains on its own shard of each
batch, and before each update the gradients are averaged over the ranks, so that every
rank takes the same step as one process would on the whole batch.

Notation: P ranks, each with a batch of B / P samples; the loss of a batch is the mean
of its per-sample losses, so the mean over the ranks of their gradients is the gradient
of the whole batch of B (exactly, up to float round-off; losses that average over valid
pixels only, like the ignore label of segmentation, weight the ranks equally instead).
"""
import zlib

import numpy as np

from ..backends import get_backend
from ..optim.optimizer import Optimizer
from .job import rank, size, world

__all__ = ["BUCKET_BYTES", "broadcast_parameters", "average_gradients",
           "DistributedOptimizer", "GradientAveraging", "data_parallel"]

# The most bytes summed in one reduction.  Few large reductions keep the per-call latency
# small; the cap bounds the extra memory of the flat copy.
BUCKET_BYTES = 64 << 20


def _buckets(arrays, bucket_bytes):
    """Split the indices of ``arrays`` into lists of one dtype, each covering at most
    ``bucket_bytes`` (an array larger than that goes alone), in order within a dtype."""
    by_dtype = {}
    for i, a in enumerate(arrays):
        by_dtype.setdefault(a.dtype, []).append(i)
    for same in by_dtype.values():
        bucket, nbytes = [], 0
        for i in same:
            if bucket and nbytes + arrays[i].nbytes > bucket_bytes:
                yield bucket
                bucket, nbytes = [], 0
            bucket.append(i)
            nbytes += arrays[i].nbytes
        if bucket:
            yield bucket


def _flat(arrays):
    return get_backend().xp.concatenate([a.ravel() for a in arrays])


def _unflat(flat, arrays):
    """Views of ``flat`` shaped like ``arrays``."""
    out, offset = [], 0
    for a in arrays:
        out.append(flat[offset:offset + a.size].reshape(a.shape))
        offset += a.size
    return out


def broadcast_parameters(model, root=0, bucket_bytes=BUCKET_BYTES):
    """Copy rank ``root``'s parameters and buffers into every rank's ``model``, in place
    (start every rank from the same weights, whatever seed each used)."""
    w = world()
    if w.size == 1:
        return
    arrays = [p.data for p in model.parameters()] + list(model.buffers())
    for bucket in _buckets(arrays, bucket_bytes):
        parts = [arrays[i] for i in bucket]
        flat = _flat(parts)
        w.transport.broadcast(flat, root)
        for a, new in zip(parts, _unflat(flat, parts)):
            a[...] = new


def _check_same_parameters(w, index):
    # A rank whose backward left other gradients at None would pack different buckets,
    # and mismatched reductions hang or mix up values; comparing a checksum costs one
    # tiny collective, and every rank sees the same answer, so every rank raises.
    sums = w.comm.allgather(zlib.crc32(np.asarray(index, np.int64).tobytes()))
    if len(set(sums)) > 1:
        raise RuntimeError("average_gradients: the ranks have gradients for different "
                           "parameters (grad is None on some ranks only); every rank must "
                           "run the same forward and backward")


def average_gradients(params, bucket_bytes=BUCKET_BYTES):
    """Replace each ``p.grad`` of ``params`` by its mean over the ranks, summing few
    large flat buckets (at most ``bucket_bytes`` each).  Parameters that do not
    require grad or have no gradient are skipped.  Returns the number of reductions."""
    w = world()
    if w.size == 1:
        return 0
    params = list(params)
    index = [i for i, p in enumerate(params) if p.requires_grad and p.grad is not None]
    _check_same_parameters(w, [(i, params[i].grad.size) for i in index])
    live = [params[i] for i in index]
    grads = [p.grad for p in live]
    count = 0
    for bucket in _buckets(grads, bucket_bytes):
        parts = [grads[i] for i in bucket]
        flat = _flat(parts)
        w.transport.allreduce_sum(flat)
        flat /= w.size
        for i, mean in zip(bucket, _unflat(flat, parts)):
            live[i].grad = mean
        count += 1
    return count


class GradientAveraging:
    """What :func:`DistributedOptimizer` adds to an optimizer's class: ``step()``
    averages the gradients over the ranks, then updates as the class does.  A frozen
    parameter (``requires_grad`` False) is neither averaged nor updated, even if it holds
    a gradient: updated from its own rank's gradient, it would drift apart across ranks."""

    bucket_bytes = BUCKET_BYTES

    def step(self):
        params = self._all_params()
        for p in params:
            if not p.requires_grad:
                p.grad = None
        average_gradients(params, self.bucket_bytes)
        super().step()


_AVERAGING_CLASSES = {}


def DistributedOptimizer(optimizer, bucket_bytes=BUCKET_BYTES):
    """Make ``optimizer`` average the gradients over the ranks before each step; returns
    it.

    The optimizer is changed in place, as Horovod does: its class becomes a subclass
    with :class:`GradientAveraging` first and the same name, so its groups, state,
    schedulers and checkpoints (``state_dict``, ``segnp.serialization``) work as before,
    and a checkpoint written on P ranks resumes on one and back.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"DistributedOptimizer: expected a segnp.optim.Optimizer; got "
                        f"{type(optimizer).__name__}")
    if int(bucket_bytes) < 1:
        raise ValueError(f"DistributedOptimizer: bucket_bytes must be >= 1; got "
                         f"{bucket_bytes}")
    base = type(optimizer)
    if not isinstance(optimizer, GradientAveraging):
        cls = _AVERAGING_CLASSES.get(base)
        if cls is None:
            cls = type(base.__name__, (GradientAveraging, base),
                       {"__module__": base.__module__, "__doc__": base.__doc__})
            _AVERAGING_CLASSES[base] = cls
        optimizer.__class__ = cls
    optimizer.bucket_bytes = int(bucket_bytes)
    return optimizer


def data_parallel(model, optimizer, loader):
    """Turn a one-process training set-up into this rank's part of a data-parallel one:
    rank 0's weights on every rank, the loader's batch size (the global batch) split
    over the ranks with one shard each, and gradients averaged at every step.  Returns
    the optimizer (changed in place, :func:`DistributedOptimizer`); with one process
    nothing changes."""
    n = size()
    if n == 1:
        return optimizer
    if loader.batch_size % n:
        raise ValueError(f"data_parallel: the batch size {loader.batch_size} is the global "
                         f"batch and must be a multiple of the {n} processes")
    broadcast_parameters(model)
    loader.set_shard((rank(), n))
    loader.batch_size //= n
    return DistributedOptimizer(optimizer)
