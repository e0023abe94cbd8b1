"""Launchers of the embedding-loss kernels (Eqs. 1-2, Sec. 3.1), one dilation per call;
kernels in ``pairs.cu``.

Pairs are (centre pixel, tap) of a ksize x ksize window at stride 1 with "same"
padding; a pair is not counted when the tap is the centre, falls outside the image,
or either label is ``ignore_index``.  Shapes: e (N, D, H, W), labels (N, H, W) of any
integer dtype, K = ksize**2.
"""
import numpy as np

from ...window import Window
from ..._validate import NORMS, check_int, check_ndim, check_norm
from ._common import contiguous, grid_1d, int32, launch_flat, plane_limit, real

__all__ = ["same_label_pairs", "embedding_pair_loss", "embedding_pair_loss_backward"]


def _labels(rt, fn, labels, ksize, dilation):
    """labels as contiguous int32 (N, H, W), and the checked (ksize, dilation)."""
    check_int(fn, "labels", labels)
    check_ndim(fn, "labels", labels, "(N, H, W)")
    N, H, W = labels.shape
    plane_limit(fn, "H*W", H * W)
    win = Window.segaware(fn, H, W, ksize, 1, None, dilation)
    if win.DH != win.DW:
        raise ValueError(f"{fn}: dilation must be one int; got {dilation!r}")
    return rt.xp.ascontiguousarray(labels, dtype=np.int32), win.KS, win.DH


def _embeddings(rt, fn, e, labels):
    """e contiguous, checked to match labels (N, H, W): the kernels index both alike."""
    if (e.shape[0],) + e.shape[2:] != tuple(labels.shape):
        raise ValueError(f"{fn}: labels must be (N, H, W) = {(e.shape[0],) + e.shape[2:]} "
                         f"to match e {tuple(e.shape)}; got {tuple(labels.shape)}")
    return contiguous(rt, e)[0]


def same_label_pairs(rt, labels, ksize, dilation=1, ignore_index=255):
    """The paper's "im2parity": labels (N, H, W) -> int8 (N, K, H, W), 1 where the centre
    and tap k share a label, 0 where they differ, -1 where the pair is not counted."""
    fn = "same_label_pairs"
    lab, KS, dil = _labels(rt, fn, labels, ksize, dilation)
    N, H, W = lab.shape
    pairs = rt.xp.empty((N, KS * KS, H, W), dtype=np.int8)
    launch_flat(rt, "pairs.cu", "im2parity", np.int8, pairs.size,
                (lab, pairs, *int32(N, H, W, KS, dil, ignore_index)))
    return pairs


def embedding_pair_loss(rt, e, labels, ksize=3, dilation=1, alpha=0.5, beta=2.0, norm="l1",
                        ignore_index=255):
    """Eqs. 1-2 for one dilation: (sum of the pair losses, number of pairs), both 0-d
    arrays on the device (the count int64): reading the count on the host would make
    every call wait for the GPU.

    Each block sums its pixels' pairs in shared memory; the block sums are added on
    the device in a fixed order, so the result does not change from run to run.
    """
    fn = "embedding_pair_loss"
    check_norm(fn, norm)
    lab, KS, dil = _labels(rt, fn, labels, ksize, dilation)
    e = _embeddings(rt, fn, e, lab)
    N, D, H, W = e.shape
    grid = grid_1d(rt, N * H * W)
    part_loss = rt.xp.empty(grid, dtype=e.dtype)
    part_count = rt.xp.empty(grid, dtype=np.int32)
    k = rt.kernel("pairs.cu", "pair_loss_fwd", e.dtype)
    k(grid, (rt.threads,),
      (e, lab, part_loss, part_count, *int32(N, D, H, W, KS, dil, NORMS.index(norm)),
       *real(e.dtype, alpha, beta), *int32(ignore_index)))
    return part_loss.sum(), rt.xp.asarray(part_count.sum(dtype=np.int64))


def embedding_pair_loss_backward(rt, e, labels, gloss, ksize=3, dilation=1, alpha=0.5,
                                 beta=2.0, norm="l1", ignore_index=255):
    """ge (N, D, H, W): the gradient of :func:`embedding_pair_loss`'s sum, times ``gloss``.

    One thread per pixel gathers its pairs' terms (see pair_loss_bwd: by the symmetry of
    the window it needs only its own taps).  ``gloss`` (a number or a 0-d array) stays
    on the device.
    """
    fn = "embedding_pair_loss_backward"
    check_norm(fn, norm)
    lab, KS, dil = _labels(rt, fn, labels, ksize, dilation)
    e = _embeddings(rt, fn, e, lab)
    N, D, H, W = e.shape
    g = rt.xp.asarray(gloss, dtype=e.dtype).reshape(1)
    ge = rt.xp.empty_like(e)
    launch_flat(rt, "pairs.cu", "pair_loss_bwd", e.dtype, N * H * W,
                (e, lab, g, ge, *int32(N, D, H, W, KS, dil, NORMS.index(norm)),
                 *real(e.dtype, alpha, beta), *int32(ignore_index)))
    return ge
