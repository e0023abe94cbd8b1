"""The segmentation-aware CRF of Sec. 3.3: mean-field inference built from the
segmentation-aware operators, differentiable in every input.

A dense CRF (Eq. 5) with the pairwise kernel of Eq. 6 smooths the label posteriors with
an appearance (bilateral) term and a smoothness (spatial Gaussian) term.  Sec. 3.3
swaps the colour in the appearance term for the learned embeddings, which makes a small
window enough, so each term is one normalised filter of Eq. 4:

- B: the segmentation-aware bilateral filter, mask ``exp(-lam ||e_i - e_j||)`` (Eq. 3),
  times Eq. 6's position Gaussian ``exp(-|i - j|^2 / (2 sigma_b^2))`` when a bilateral
  bandwidth sigma_b is given (theta_alpha of Eq. 6; the embedding term replaces the
  colour term theta_beta);
- S: a Gaussian of the pixel distance, ``exp(-|i - j|^2 / (2 sigma^2))``, which is Eq. 3
  with the pixel coordinates as embeddings, the 'l2sq' norm and lam = 1 / (2 sigma^2)
  (the Gaussian special case of Sec. 3.2).

Both exclude the centre tap (a pixel sends no message to itself) and, being normalised,
ignore taps outside the image.  Each mask is computed once and reused by every
iteration, as it depends on e, lam and sigma but not on the posteriors.
"""
import numbers

from ..autograd import Tensor, as_tensor
from ..backends import get_backend
from .._validate import (check_float, check_ndim, check_norm, check_same_dtype, int_at_least,
                         odd_size)
from ..window import Window
from . import activation
from .segaware import Bilateral, segaware_mask

__all__ = ["segaware_crf"]


def _pixel_coordinates(xp, N, H, W, dtype):
    """(N, 2, H, W) array of (row, column) pixel coordinates: the embeddings whose
    'l2sq' distance is the squared pixel distance of Eq. 6's spatial term."""
    rows = xp.arange(H, dtype=dtype)[:, None] + xp.zeros((1, W), dtype=dtype)
    cols = xp.arange(W, dtype=dtype)[None, :] + xp.zeros((H, 1), dtype=dtype)
    grid = xp.stack([rows, cols])[None]
    return xp.ascontiguousarray(xp.broadcast_to(grid, (N, 2, H, W)))


def _scalar(fn, name, value, dtype, positive=True):
    """A float, or a 0-d float Tensor of U's dtype (then it gets a gradient); finite and
    > 0 (``positive``) or >= 0."""
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise ValueError(f"{fn}: {name} must be a float or a 0-d Tensor; got a Tensor "
                             f"of shape {value.shape}")
        check_float(fn, name, value.data)
        if value.dtype != dtype:
            raise TypeError(f"{fn}: {name} must have U's dtype {dtype}; got {value.dtype}")
        number = float(value.item())
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a float or a 0-d Tensor; "
                        f"got {type(value).__name__}")
    else:
        number = value = float(value)
    if not (0 < number if positive else 0 <= number) or number == float("inf"):
        rule = "finite" if number == float("inf") else f"{'>' if positive else '>='} 0"
        raise ValueError(f"{fn}: {name}{_MEANING.get(name, '')} must be {rule}; got {number}")
    return value


def _matrix(fn, name, value, L, dtype):
    """An (L, L) finite float array or Tensor of U's dtype, as a Tensor (it gets a
    gradient when it requires one)."""
    value = as_tensor(value)
    check_float(fn, name, value.data)
    if value.shape != (L, L):
        raise ValueError(f"{fn}: {name} must be (L, L) = ({L}, {L}); got shape {value.shape}")
    if value.dtype != dtype:
        raise TypeError(f"{fn}: {name} must have U's dtype {dtype}; got {value.dtype}")
    # as the scalar weights: a nan or inf entry would make every output nan
    if not bool(get_backend().xp.isfinite(value.data).all()):
        raise ValueError(f"{fn}: {name} must be finite; got non-finite entries")
    return value


def _filter_weight(fn, name, value, L, dtype, positive):
    """w_b or w_s: a scalar (float or 0-d Tensor, checked by :func:`_scalar`) or an
    (L, L) matrix (array or Tensor; Caffe's per-label filter weights), told apart by
    the number of dimensions."""
    ndim = getattr(value, "ndim", 0)
    if ndim == 2:
        return _matrix(fn, name, value, L, dtype)
    if ndim != 0:
        raise ValueError(f"{fn}: {name} must be a float, a 0-d Tensor or an (L, L) = "
                         f"({L}, {L}) matrix; got shape {tuple(value.shape)}")
    return _scalar(fn, name, value, dtype, positive)


def _weighted(w, Y):
    """w * Y for a scalar weight; for an (L, L) matrix, w applied to the label vector
    of every pixel of Y (N, L, H, W), as one batched GEMM.  Y and w are segnp Tensors,
    or torch tensors in ``segnp.torch``'s twin of the CRF."""
    if getattr(w, "ndim", 0) == 0:
        return w * Y
    N, L, H, W = Y.shape
    return (w @ Y.reshape(N, L, H * W)).reshape(N, L, H, W)


_MEANING = {"spatial_sigma": " (the Gaussian bandwidth in pixels)",
            "bilateral_sigma": " (the bilateral term's position bandwidth in pixels)",
            "w_b": " (the weight of the bilateral message, Eq. 6)",
            "w_s": " (the weight of the spatial message, Eq. 6)",
            "lam": " (the mask hardness of Eq. 3)"}


def segaware_crf(U, e, lam=1.0, w_b=1.0, w_s=1.0, spatial_sigma=1.0, compat=None,
                 bilateral_ksize=13, bilateral_dilation=9, spatial_ksize=5,
                 spatial_dilation=1, iterations=2, norm="l1", bilateral_sigma=None):
    """Mean-field inference of the segmentation-aware CRF (Sec. 3.3).

    U (N, L, H, W) unary logits, e (N, D, H, W) embeddings of U's N, H, W and dtype ->
    logits (N, L, H, W) after ``iterations`` updates (``iterations=0`` returns U)::

        Q      = softmax(logits)                        (over L; logits start at U)
        msg    = w_b * B(Q) + w_s * S(Q)                (Eq. 6, one filter per term)
        logits = U + compat @ msg                       (per pixel, compat (L, L))

    ``w_b`` and ``w_s`` may instead be (L, L) matrices, applied per pixel as compat is
    (``msg = w_b @ B(Q) + w_s @ S(Q)``): the per-label filter weights of the authors'
    Caffe layer (docs/caffe.md says which settings reproduce its released CRF).  A
    diagonal ``w I`` gives the scalar ``w``.

    B is :func:`segaware_bilateral`'s normalised filter (mask of Eq. 3 with ``lam`` and
    ``norm``, ``bilateral_ksize`` window at ``bilateral_dilation``), S the normalised
    Gaussian of bandwidth ``spatial_sigma`` pixels (``spatial_ksize`` window at
    ``spatial_dilation``); both exclude the centre tap and taps outside the image.
    ``bilateral_sigma`` (pixels; None: no position term) multiplies B's mask by the
    Gaussian of the pixel distance, as in Eq. 6's appearance kernel, so that far taps
    of the same region count less than near ones.

    Sign convention: logits are *negative* energies, so a positive ``compat[l, l']``
    makes a neighbour's belief in l' raise the logit of l.  ``compat=None`` is the
    identity: each label is favoured in proportion to how much the neighbours agree on
    it.  That is the Potts model, ``-sum_{l' != l} msg[l'] = msg[l] - sum_l' msg[l']``,
    up to the last term, which is the same for every label (the filters are normalised,
    so ``sum_l' msg[l'] = w_b + w_s`` up to NORM_EPS, for scalar weights) and cancels
    in the softmax.

    lam >= 0, spatial_sigma > 0 and bilateral_sigma > 0 (or None) are finite floats or
    0-d Tensors; w_b > 0 and w_s >= 0 (0: no spatial message) likewise, or (L, L)
    arrays or Tensors of any sign; compat is None or an (L, L) array or Tensor.
    Tensors that require grad get gradients, as do U and e.
    """
    fn = "segaware_crf"
    U, e = as_tensor(U), as_tensor(e)
    check_float(fn, "U", U.data)
    check_ndim(fn, "U", U, "(N, L, H, W)")
    check_float(fn, "e", e.data)
    N, L, H, W = U.shape
    if e.ndim != 4 or e.shape[0] != N or e.shape[2:] != (H, W):
        raise ValueError(f"{fn}: embeddings must be (N, D, H, W) with the N, H, W of U "
                         f"{U.shape}; got e of shape {e.shape}")
    check_same_dtype(fn, ("U", "e"), (U.data, e.data))
    check_norm(fn, norm)
    bk, sk = odd_size(fn, "bilateral_ksize", bilateral_ksize), odd_size(fn, "spatial_ksize",
                                                                spatial_ksize)
    bd = int_at_least(fn, "bilateral_dilation", bilateral_dilation, 1)
    sd = int_at_least(fn, "spatial_dilation", spatial_dilation, 1)
    int_at_least(fn, "iterations", iterations, 0)
    dtype = U.dtype
    lam = _scalar(fn, "lam", lam, dtype, positive=False)
    w_b = _filter_weight(fn, "w_b", w_b, L, dtype, positive=True)
    w_s = _filter_weight(fn, "w_s", w_s, L, dtype, positive=False)
    sigma = _scalar(fn, "spatial_sigma", spatial_sigma, dtype)
    if bilateral_sigma is not None:
        bilateral_sigma = _scalar(fn, "bilateral_sigma", bilateral_sigma, dtype)
    if compat is not None:
        compat = _matrix(fn, "compat", compat, L, dtype)
    if iterations == 0:
        return U

    m_b = segaware_mask(e, lam, bk, dilation=bd, norm=norm,
                        include_center=False)
    coords = Tensor._from_array(_pixel_coordinates(get_backend().xp, N, H, W, dtype))
    if bilateral_sigma is not None:
        m_b = m_b * segaware_mask(coords, 0.5 / (bilateral_sigma * bilateral_sigma), bk,
                                  dilation=bd, norm="l2sq", include_center=False)
    lam_s = 0.5 / (sigma * sigma)
    m_s = segaware_mask(coords, lam_s, sk, dilation=sd, norm="l2sq",
                        include_center=False)
    win_b = Window.segaware(fn, H, W, bk, 1, None, bd)
    win_s = Window.segaware(fn, H, W, sk, 1, None, sd)
    logits = U
    for _ in range(int(iterations)):
        Q = activation.softmax(logits, axis=1)
        msg = (_weighted(w_b, Bilateral(win_b)(Q, m_b))
               + _weighted(w_s, Bilateral(win_s)(Q, m_s)))
        if compat is not None:
            # (L, L) @ (N, L, H*W): one batched GEMM applies compat at every pixel.
            msg = (compat @ msg.reshape(N, L, H * W)).reshape(N, L, H, W)
        logits = U + msg
    return logits
