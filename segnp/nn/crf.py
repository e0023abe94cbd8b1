"""The segmentation-aware CRF of Sec. 3.3 as a module with learnable parameters."""
import numbers

import numpy as np

from .. import functions as F
from ..autograd import Parameter
from .._validate import check_norm, int_at_least, odd_size, positive_int
from .module import Module
from .segaware import clip_nonnegative

__all__ = ["SegAwareCRF"]

# The smallest spatial bandwidth, in pixels.  At sigma = 0.1 the nearest neighbour's
# weight is exp(-50), so the spatial term has already faded away; the floor only keeps
# lam_s = 1 / (2 sigma^2) finite.
SIGMA_MIN = 0.1


def clip_sigma(a):
    """The constraint of the spatial bandwidth: sigma >= SIGMA_MIN."""
    return a.clip(SIGMA_MIN, None)


class SegAwareCRF(Module):
    """Mean-field inference of the segmentation-aware CRF (Sec. 3.3):
    ``forward(U, e)`` -> ``F.segaware_crf(U, e, lam, w_b, w_s, spatial_sigma, compat,
    ...)``, refined logits (N, L, H, W) from unary logits U (N, L, H, W) and embeddings
    e (N, D, H, W).  See :func:`segnp.functions.segaware_crf` for the update and the
    sign convention of ``compat``.

    Parameters (all learnable, registered in this order):

    - ``lam`` (): the hardness of the embedding mask (Eq. 3), init ``lam_init``;
    - ``w_b``, ``w_s`` (): the weights of the bilateral and spatial terms of Eq. 6
      (w^1 and w^2), init ``w_b_init``, ``w_s_init``; with ``filter_weights="matrix"``
      they are (L, L) matrices instead, init ``w_b_init`` and ``w_s_init`` times the
      identity: the per-label filter weights of the authors' Caffe CRF, where each
      filtered posterior is mixed across labels before compat (docs/caffe.md gives the
      settings that reproduce the released CRF);
    - ``spatial_sigma`` (): the bandwidth theta_gamma of Eq. 6's spatial Gaussian, in
      pixels, init ``spatial_sigma_init``;
    - ``compat`` (L, L): the label compatibility, init the identity (Potts up to a
      constant);
    - ``bilateral_sigma`` (), only when ``bilateral_sigma_init`` is given: the position
      bandwidth theta_alpha of Eq. 6's appearance term, in pixels (None: the bilateral
      mask has no position term).

    Constraints, applied by the optimizers after each step (projected gradient): lam is
    clipped at 0 (its gradient does not vanish at 0, so it can grow back), and
    spatial_sigma and bilateral_sigma at ``SIGMA_MIN`` = 0.1 pixel.
    """

    def __init__(self, num_classes, bilateral_ksize=13, bilateral_dilation=9,
                 spatial_ksize=5, iterations=2, spatial_dilation=1, norm="l1",
                 lam_init=1.0, w_b_init=1.0, w_s_init=1.0, spatial_sigma_init=1.0,
                 dtype=np.float32, bilateral_sigma_init=None, filter_weights="scalar"):
        super().__init__()
        fn = "SegAwareCRF"
        self.num_classes = positive_int(fn, "num_classes", num_classes)
        self.bilateral_ksize = odd_size(fn, "bilateral_ksize", bilateral_ksize)
        self.spatial_ksize = odd_size(fn, "spatial_ksize", spatial_ksize)
        self.bilateral_dilation = int_at_least(fn, "bilateral_dilation", bilateral_dilation, 1)
        self.spatial_dilation = int_at_least(fn, "spatial_dilation", spatial_dilation, 1)
        self.iterations = int_at_least(fn, "iterations", iterations, 0)
        self.norm = check_norm(fn, norm)
        if filter_weights not in ("scalar", "matrix"):
            raise ValueError(f"{fn}: filter_weights must be 'scalar' (w_b, w_s numbers) or "
                             f"'matrix' ((L, L) per-label weights, as in the authors' Caffe "
                             f"CRF); got {filter_weights!r}")
        self.filter_weights = filter_weights
        inits = [("lam_init", lam_init, 0.0), ("w_b_init", w_b_init, None),
                 ("w_s_init", w_s_init, None),
                 ("spatial_sigma_init", spatial_sigma_init, SIGMA_MIN)]
        if bilateral_sigma_init is not None:
            inits.append(("bilateral_sigma_init", bilateral_sigma_init, SIGMA_MIN))
        for name, v, lo in inits:
            if isinstance(v, bool) or not isinstance(v, numbers.Real) \
                    or (lo is not None and not v >= lo):
                raise ValueError(f"{fn}: {name} must be a float"
                                 + (f" >= {lo}" if lo is not None else "") + f"; got {v!r}")
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"{fn}: dtype must be floating (float32 or float64); got {dtype}")
        self.lam = Parameter(np.asarray(lam_init, dtype), constraint=clip_nonnegative)
        # A scalar w, or the matrix w I: the same filter weights at the start.
        unit = np.eye(self.num_classes, dtype=dtype) if filter_weights == "matrix" else 1
        self.w_b = Parameter(np.asarray(w_b_init * unit, dtype))
        self.w_s = Parameter(np.asarray(w_s_init * unit, dtype))
        self.spatial_sigma = Parameter(np.asarray(spatial_sigma_init, dtype),
                                       constraint=clip_sigma)
        self.compat = Parameter(np.eye(self.num_classes, dtype=dtype))
        self.bilateral_sigma = None
        if bilateral_sigma_init is not None:
            self.bilateral_sigma = Parameter(np.asarray(bilateral_sigma_init, dtype),
                                             constraint=clip_sigma)

    def forward(self, U, e):
        if U.ndim == 4 and U.shape[1] != self.num_classes:
            raise ValueError(f"SegAwareCRF: U must be (N, L, H, W) with L = num_classes = "
                             f"{self.num_classes}; got shape {tuple(U.shape)}")
        return F.segaware_crf(U, e, self.lam, self.w_b, self.w_s, self.spatial_sigma,
                              self.compat, self.bilateral_ksize, self.bilateral_dilation,
                              self.spatial_ksize, self.spatial_dilation, self.iterations,
                              self.norm, self.bilateral_sigma)

    def extra_repr(self):
        return (f"{self.num_classes}, bilateral_ksize={self.bilateral_ksize}, "
                f"bilateral_dilation={self.bilateral_dilation}, "
                f"spatial_ksize={self.spatial_ksize}, "
                f"spatial_dilation={self.spatial_dilation}, iterations={self.iterations}, "
                f"norm={self.norm!r}"
                + (", filter_weights='matrix'" if self.filter_weights == "matrix" else ""))
