"""segnp's segmentation-aware operators as PyTorch functions, differentiable by
PyTorch's autograd.

Each operator runs segnp's own array-level ``Function`` objects
(``segnp/functions/segaware.py``: ``SegAwareMask``, ``MaskedConv2d``, ``Bilateral``,
``BilateralRepeat``, ``Im2Dist``) inside one ``torch.autograd.Function``,
:class:`SegnpFunction`; their ``forward`` and ``backward`` call the backend kernels on
arrays that share the tensors' memory (``_device.py``).  segnp's tape is not involved.
The arguments are checked by segnp's own checks (``segnp.functions.segaware.*_args``,
which also build the ``Window``), so every error reads as segnp's does.

``segaware_crf`` is a composition: the masks and the filters of Eq. 4 run as
:class:`SegnpFunction` calls, and softmax, the weights and ``compat`` are PyTorch ops.
"""
import numbers

import torch
from torch.autograd.function import once_differentiable

from .._validate import int_at_least
from ..autograd import Tensor
from ..functions import crf as _crf
from ..functions import segaware as _sa
from ..functions import segaware_transpose as _sat
from ..window import Window
from ._device import place_of

__all__ = ["SegnpFunction", "im2dist", "segaware_mask", "segaware_bilateral",
           "segaware_conv2d", "segaware_conv_transpose2d", "segaware_crf"]


class SegnpFunction(torch.autograd.Function):
    """``SegnpFunction.apply(place, op, *tensors)``: segnp's Function ``op`` (one call
    of it) on ``tensors`` (or None), at ``place``.

    ``op.needs_input_grad`` is PyTorch's, so ``op`` keeps for backward only what the
    requested gradients need.  The tensors whose memory ``op`` kept go through
    ``ctx.save_for_backward``, so PyTorch refuses a backward after they were changed
    in place, as it does for its own ops.  Double backward is not supported."""

    @staticmethod
    def forward(ctx, place, op, *inputs):
        with place.on() as backend:
            op.backend, op.xp = backend, backend.xp
            op.needs_input_grad = tuple(ctx.needs_input_grad[2:])
            arrays = [place.array(backend, t) for t in inputs]
            outputs = op.forward(*arrays)
            single = not isinstance(outputs, tuple)
            outputs = (outputs,) if single else outputs
            results = tuple(place.tensor(y) for y in outputs)
        kept = {id(v) for v in vars(op).values()}
        ctx.save_for_backward(*(t for t, a in zip(inputs + results, arrays + list(outputs))
                                if t is not None and id(a) in kept))
        ctx.place, ctx.op = place, op
        return results[0] if single else results

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        ctx.saved_tensors  # noqa: B018  PyTorch's check that none changed in place
        place, op = ctx.place, ctx.op
        with place.on() as backend:
            gxs = op.backward(*(place.array(backend, g) for g in grads))
            gxs = gxs if isinstance(gxs, tuple) else (gxs,)
            return (None, None) + tuple(place.tensor(g) for g in gxs)


# ---- arguments --------------------------------------------------------------------------
_NO_LAM = object()  # im2dist has no lam


def _checked(fn, check, named, lam, *args):
    """Check the tensors in ``named`` and lam for the bridge, then run segnp's ``check``
    (``segaware.*_args``: its arguments are ``named``'s, lam, ``*args``) on segnp
    Tensors that share their memory.  Returns the place, lam as a 0-d tensor and the
    Window that the check built.  A float lam becomes a tensor of the first tensor's
    dtype (as segnp does); a tensor lam stays itself and gets a gradient if it
    requires one."""
    if lam is _NO_LAM:
        place = place_of(fn, named)
    elif isinstance(lam, torch.Tensor):
        place = place_of(fn, dict(named, lam=lam))
    else:
        if isinstance(lam, bool) or not isinstance(lam, numbers.Real):
            raise TypeError(f"{fn}: lam must be a float or a 0-d tensor; got "
                            f"{type(lam).__name__}")
        place = place_of(fn, named)
        first = next(iter(named.values()))
        lam = torch.tensor(float(lam), dtype=first.dtype, device=first.device)
    with place.on() as backend:
        wrapped = [None if t is None else Tensor._from_array(place.array(backend, t))
                   for t in list(named.values()) + ([] if lam is _NO_LAM else [lam])]
        win = check(*wrapped, *args, fn=fn)[-1]
    return place, lam, win


# ---- the operators ----------------------------------------------------------------------
def im2dist(e, ksize, stride=1, padding=None, dilation=1, norm="l1"):
    """:func:`segnp.functions.im2dist` on a tensor: e (N, D, H, W) -> d (N, K, OH, OW),
    the embedding distances of every window (Sec. 4.2).  Gradients flow to e."""
    fn = "im2dist"
    place, _, win = _checked(fn, _sa.im2dist_args, {"e": e}, _NO_LAM, ksize, stride,
                             padding, dilation, norm)
    return SegnpFunction.apply(place, _sa.Im2Dist(win, norm), e)


def segaware_mask(e, lam, ksize, stride=1, padding=None, dilation=1, norm="l1",
                  include_center=True):
    """:func:`segnp.functions.segaware_mask` on tensors: the mask of Eq. 3,
    m (N, K, OH, OW) = exp(-lam * d) * valid.  lam >= 0 is a float or a 0-d tensor;
    gradients flow to e and lam."""
    fn = "segaware_mask"
    place, lam, win = _checked(fn, _sa.segaware_mask_args, {"e": e}, lam, ksize, stride,
                               padding, dilation, norm)
    return SegnpFunction.apply(place, _sa.SegAwareMask(win, norm, include_center), e, lam)


def segaware_bilateral(x, e, lam, ksize=9, dilation=1, norm="l1", repeat=1,
                       include_center=True):
    """:func:`segnp.functions.segaware_bilateral` on tensors: the segmentation-aware
    bilateral filter of Eq. 4, ``repeat`` times with one mask.  x (N, C, H, W),
    e (N, D, H, W) -> y (N, C, H, W); gradients flow to x, e and lam."""
    fn = "segaware_bilateral"
    place, lam, win = _checked(fn, _sa.segaware_bilateral_args, {"x": x, "e": e}, lam,
                               ksize, dilation, norm, repeat)
    m = SegnpFunction.apply(place, _sa.SegAwareMask(win, norm, include_center), e, lam)
    return SegnpFunction.apply(place, _sa.BilateralRepeat(win, int(repeat)), x, m)


def segaware_conv2d(x, e, W, b=None, lam=0.0, stride=1, padding=None, dilation=1,
                    norm="l1", normalize=True):
    """:func:`segnp.functions.segaware_conv2d` on tensors: the segmentation-aware
    convolution of Eq. 7.  x (N, C, H, W), e (N, D, H, W), W (F, C, k, k) with k odd,
    b (F,) or None -> y (N, F, OH, OW); gradients flow to x, e, W, b and lam."""
    fn = "segaware_conv2d"
    place, lam, win = _checked(fn, _sa.segaware_conv2d_args,
                               {"x": x, "e": e, "W": W, "b": b}, lam, stride, padding,
                               dilation, norm)
    m = SegnpFunction.apply(place, _sa.SegAwareMask(win, norm, True), e, lam)
    return SegnpFunction.apply(place, _sa.MaskedConv2d(win, normalize), x, m, W, b)


def segaware_conv_transpose2d(x, e, W, b=None, lam=0.0, stride=1, padding=0,
                              output_padding=0, dilation=1, norm="l1", normalize=True):
    """:func:`segnp.functions.segaware_conv_transpose2d` on tensors: the
    segmentation-aware transposed convolution (joint upsampling).  x (N, C, H, W),
    e (N, D, OH, OW) at the output's resolution, W (C, F, k, k) with k odd, b (F,) or
    None -> y (N, F, OH, OW); gradients flow to x, e, W, b and lam."""
    fn = "segaware_conv_transpose2d"
    place, lam, win = _checked(fn, _sat.segaware_conv_transpose2d_args,
                               {"x": x, "e": e, "W": W, "b": b}, lam, stride, padding,
                               output_padding, dilation, norm)
    m = SegnpFunction.apply(place, _sa.SegAwareMask(win, norm, True), e, lam)
    return SegnpFunction.apply(place, _sat.MaskedConvTranspose2d(win, normalize), x, m, W, b)


def segaware_crf(U, e, lam=1.0, w_b=1.0, w_s=1.0, spatial_sigma=1.0, compat=None,
                 bilateral_ksize=13, bilateral_dilation=9, spatial_ksize=5,
                 spatial_dilation=1, iterations=2, norm="l1", bilateral_sigma=None):
    """:func:`segnp.functions.segaware_crf` on tensors: mean-field inference of the
    segmentation-aware CRF (Sec. 3.3), U (N, L, H, W) unary logits, e (N, D, H, W) ->
    logits (N, L, H, W).  The scalars are floats or 0-d tensors of U's dtype; w_b and w_s
    may also be (L, L) tensors (Caffe's per-label filter weights), compat None or
    (L, L); every tensor that requires grad gets one."""
    fn = "segaware_crf"
    int_at_least(fn, "iterations", iterations, 0)
    scalars = {"lam": lam, "w_b": w_b, "w_s": w_s, "spatial_sigma": spatial_sigma,
               "bilateral_sigma": bilateral_sigma}
    named = {"U": U, "e": e, "compat": compat}
    named.update((k, v) for k, v in scalars.items() if isinstance(v, torch.Tensor))
    place = place_of(fn, named)
    with place.on() as backend:
        s = {k: Tensor._from_array(place.array(backend, v)) if isinstance(v, torch.Tensor)
             else v for k, v in dict(named, **scalars).items()}
        # segaware_crf checks every argument before it computes anything; with
        # iterations=0 that is all it does.
        _crf.segaware_crf(s["U"], s["e"], s["lam"], s["w_b"], s["w_s"], s["spatial_sigma"],
                          s["compat"], bilateral_ksize, bilateral_dilation, spatial_ksize,
                          spatial_dilation, 0, norm, s["bilateral_sigma"])
        N, L, H, W = U.shape
        coords = place.tensor(_crf._pixel_coordinates(backend.xp, N, H, W,
                                                      s["U"].data.dtype))
    if iterations == 0:
        return U
    bk, bd, sk, sd = bilateral_ksize, bilateral_dilation, spatial_ksize, spatial_dilation
    m_b = segaware_mask(e, lam, bk, dilation=bd, norm=norm, include_center=False)
    if bilateral_sigma is not None:
        m_b = m_b * segaware_mask(coords, 0.5 / (bilateral_sigma * bilateral_sigma), bk,
                                  dilation=bd, norm="l2sq", include_center=False)
    m_s = segaware_mask(coords, 0.5 / (spatial_sigma * spatial_sigma), sk, dilation=sd,
                        norm="l2sq", include_center=False)
    win_b = Window.segaware(fn, H, W, bk, 1, None, bd)
    win_s = Window.segaware(fn, H, W, sk, 1, None, sd)
    logits = U
    for _ in range(int(iterations)):
        Q = torch.softmax(logits, dim=1)
        filtered_b = SegnpFunction.apply(place, _sa.Bilateral(win_b), Q, m_b)
        filtered_s = SegnpFunction.apply(place, _sa.Bilateral(win_s), Q, m_s)
        msg = _crf._weighted(w_b, filtered_b) + _crf._weighted(w_s, filtered_s)
        if compat is not None:
            msg = _crf._weighted(compat, msg)
        logits = U + msg
    return logits
