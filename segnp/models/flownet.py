"""A small FlowNetSimple (Dosovitskiy et al., 2015) with the segmentation-aware head of
Sec. 5.2.

The two frames are concatenated on the channel axis.  A contracting part of 3x3
stride-2 convolutions (padding 1) reaches 1/16 resolution; an expanding part upsamples
(bilinear resize then a 3x3 convolution, in place of FlowNet's transposed convolutions),
concatenates the skip connection of the same scale and the upsampled coarser flow, and
predicts flow at 1/8 and finally 1/4 resolution.  Flow is predicted in input-resolution
pixels at every scale, so upsampling it needs no rescaling.  Any H, W work: the map at
stride s has ceil(H / s) rows, sample i on input row s i (a point grid, :mod:`.grids`),
and every resize between scales is done on that grid, without a shift.

With ``segaware=True`` the final prediction layer is a
:class:`~segnp.nn.SegAwareConv2d` and the upsampled flow goes through a
``bf_ksize`` x ``bf_ksize`` segmentation-aware bilateral filter, both with the
embeddings of frame 1.

``upsample`` chooses how the 1/4-resolution prediction reaches full resolution:
``"bilinear"`` (the default, :func:`.grids.upsample_point`) or ``"segaware"``, the
segmentation-aware bilinear upsampling of issue 22 (:class:`~segnp.nn.SegAwareUpsample`,
guided by the full-resolution embeddings of frame 1, so that a motion boundary is not
blurred across 4 pixels before any mask sees it); ``"segaware+decoder"`` also upsamples
the decoder's 1/16 and 1/8 predictions that way (guided by the embeddings' pixels at
1/8 and 1/4).  With ``segaware=True``, ``aware_decoder`` makes decoder convolutions
segmentation-aware too.  All of them equal the plain bilinear network at lam = 0 (the
default ``lam_init`` and ``up_lam_init``), so a network fine-tuned from a plain checkpoint
at those defaults starts where it was.
"""
import functools

from .. import functions as F
from .. import nn
from .checks import check_embeddings, check_images, check_positive, check_widths
from .grids import subsample_point, upsample_point

__all__ = ["FlowNetS"]


class FlowNetS(nn.Module):
    """Flow (N, 2, H, W) in pixels, (u, v), from frames (N, 6, H, W).

    ``forward(x, e=None)`` returns ``(flow, [flow4, flow3, flow2])``: the
    full-resolution flow and the predictions at 1/16, 1/8 and 1/4 resolution (for
    multi-scale losses), each (N, 2, ceil(H / s), ceil(W / s)), s in ``SCALE_STRIDES``.

    Args:
        widths: channels of the four contracting levels (strides 2, 4, 8, 16).
        segaware: make the final prediction layer a SegAwareConv2d (lam starting at
            ``lam_init``) followed by a ``bf_ksize`` x ``bf_ksize`` bilateral filter of
            the full-resolution flow (lam starting at ``bf_lam_init``), both masked by
            the embeddings of frame 1 (Sec. 5.2).
        embedder: maps frame 1 (N, 3, H, W) to ``(e, side_outputs)``; or pass ``e``.
        norm: the embedding distance of every mask (Eq. 3).
        in_channels: channels of the concatenated frames (6 for two RGB frames).
        bf_repeat: how many times the bilateral filter is applied, with one mask (the
            "x4" of Table 1).
        upsample: "bilinear", "segaware" or "segaware+decoder" (module docstring); the
            segmentation-aware ones need embeddings, like ``segaware``.
        up_lam_init: the initial lam of those upsamplings (0: bilinear).
        aware_decoder: names of decoder convolutions, of ``AWARE_DECODER``, that are
            also segmentation-aware with ``segaware`` (masked by the embeddings' pixels
            at their resolution; their lams are set like the prediction layer's).
            They are not normalised, so that at lam = 0 they equal the convolutions
            of the bilinear network also on the small maps' borders.
    """

    UPSAMPLE = ("bilinear", "segaware", "segaware+decoder")

    # The decoder's convolutions that ``aware_decoder`` may make segmentation-aware,
    # with the stride of the map each one runs on.
    AWARE_DECODER = {"up3": 8, "predict3": 8, "up2": 4}

    # The strides of the side predictions, in the order forward returns them.
    SCALE_STRIDES = (16, 8, 4)

    def __init__(self, widths=(16, 32, 64, 96), segaware=False, bf_ksize=9, embedder=None,
                 norm="l1", lam_init=0.0, bf_lam_init=1.0, in_channels=6, bf_repeat=1,
                 upsample="bilinear", up_lam_init=0.0, aware_decoder=()):
        super().__init__()
        w1, w2, w3, w4 = check_widths("FlowNetS", widths, 4)
        if min(w2, w3) < 2:
            raise ValueError(f"FlowNetS: widths[1] and widths[2] must be >= 2 (the expanding "
                             f"part uses half of them); got {widths!r}")
        self.in_channels = check_positive("FlowNetS", "in_channels", in_channels)
        if in_channels % 2:
            raise ValueError(f"FlowNetS: in_channels must be even (two frames "
                             f"concatenated); got {in_channels}")
        self.segaware = bool(segaware)
        if upsample not in self.UPSAMPLE:
            raise ValueError(f"FlowNetS: upsample must be one of {self.UPSAMPLE}; got "
                             f"{upsample!r}")
        self.upsample = upsample
        aware_decoder = tuple(aware_decoder)
        if not set(aware_decoder) <= set(self.AWARE_DECODER) or (aware_decoder
                                                                 and not segaware):
            raise ValueError(f"FlowNetS: aware_decoder must name layers of "
                             f"{tuple(self.AWARE_DECODER)}, with segaware=True; got "
                             f"{aware_decoder!r} (segaware={segaware!r})")
        self.aware_decoder = tuple(n for n in self.AWARE_DECODER if n in aware_decoder)

        def conv(name, cin, cout):
            if name in aware_decoder:
                return nn.SegAwareConv2d(cin, cout, 3, norm=norm, normalize=False,
                                         lam_init=lam_init)
            return nn.Conv2d(cin, cout, 3, padding=1)

        self.embedder = embedder
        self.conv1 = nn.Conv2d(in_channels, w1, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(w2, w3, 3, stride=2, padding=1)
        self.conv3_1 = nn.Conv2d(w3, w3, 3, padding=1)
        self.conv4 = nn.Conv2d(w3, w4, 3, stride=2, padding=1)
        self.conv4_1 = nn.Conv2d(w4, w4, 3, padding=1)
        self.predict4 = nn.Conv2d(w4, 2, 3, padding=1)
        self.up3 = conv("up3", w4, w3 // 2)
        self.predict3 = conv("predict3", w3 + w3 // 2 + 2, 2)
        self.up2 = conv("up2", w3 + w3 // 2 + 2, w2 // 2)
        cin2 = w2 + w2 // 2 + 2
        if segaware:
            self.predict2 = nn.SegAwareConv2d(cin2, 2, 3, norm=norm, lam_init=lam_init)
            self.bf = nn.BilateralFilter(ksize=bf_ksize, dilation=1, norm=norm,
                                         repeat=bf_repeat, lam_init=bf_lam_init)
        else:
            self.predict2 = nn.Conv2d(cin2, 2, 3, padding=1)
            self.bf = None
        # The flow upsamplings 1/16 -> 1/8 -> 1/4 -> 1: segmentation-aware, or None for
        # the bilinear upsample_point.
        decoder, final = upsample == "segaware+decoder", upsample != "bilinear"
        self.up_flow4 = self._aware_up(2, norm, up_lam_init) if decoder else None
        self.up_flow3 = self._aware_up(2, norm, up_lam_init) if decoder else None
        self.up_flow = self._aware_up(4, norm, up_lam_init) if final else None

    @staticmethod
    def _aware_up(factor, norm, lam_init):
        return nn.SegAwareUpsample(factor, "point", norm=norm, lam_init=lam_init)

    def segaware_layers(self):
        """[(name, SegAwareConv2d, stride of its input map)]: the prediction layer of
        the segmentation-aware variant, at 1/4 resolution, and the ``aware_decoder``
        layers; [] for the plain one."""
        if not self.segaware:
            return []
        return [(n, getattr(self, n), self.AWARE_DECODER[n]) for n in self.aware_decoder] + [
            ("predict2", self.predict2, 4)]

    def forward(self, x, e=None):
        """Flow for frame pairs x (N, 6, H, W); ``e`` (N, D, H, W) overrides the
        embeddings of frame 1."""
        fn = "FlowNetS"
        x = check_images(fn, x, self.in_channels, self.predict4.weight.dtype)
        H, W = x.shape[2:]
        if e is not None:
            e = check_embeddings(fn, e, x)
        elif self.segaware or self.upsample != "bilinear":
            if self.embedder is None:
                what = "segaware=True" if self.segaware else f"upsample={self.upsample!r}"
                raise ValueError(f"FlowNetS.forward: {what} needs embeddings; pass e or build "
                                 f"the network with an embedder")
            e, _ = self.embedder(x[:, :self.in_channels // 2])
        # the embeddings' pixels at a stride, sliced once per forward pass however many
        # layers read them: one slice, so one scatter of its gradient back into e
        at = functools.cache(lambda stride: subsample_point(e, stride))
        c1 = F.leaky_relu(self.conv1(x), 0.1)
        c2 = F.leaky_relu(self.conv2(c1), 0.1)
        c3 = F.leaky_relu(self.conv3_1(F.leaky_relu(self.conv3(c2), 0.1)), 0.1)
        c4 = F.leaky_relu(self.conv4_1(F.leaky_relu(self.conv4(c3), 0.1)), 0.1)
        flow4 = self.predict4(c4)
        s3, s2 = tuple(c3.shape[2:]), tuple(c2.shape[2:])
        u3 = F.leaky_relu(self._conv("up3", upsample_point(c4, 2, s3), at), 0.1)
        j3 = F.concat([c3, u3, self._up_flow(self.up_flow4, flow4, 2, s3, at, 8)], axis=1)
        flow3 = self._conv("predict3", j3, at)
        u2 = F.leaky_relu(self._conv("up2", upsample_point(j3, 2, s2), at), 0.1)
        j2 = F.concat([c2, u2, self._up_flow(self.up_flow3, flow3, 2, s2, at, 4)], axis=1)
        if self.segaware:
            flow2 = self.predict2(j2, at(4))
        else:
            flow2 = self.predict2(j2)
        flow = self._up_flow(self.up_flow, flow2, 4, (H, W), at, 1)
        if self.bf is not None:
            flow = self.bf(flow, e)
        return flow, [flow4, flow3, flow2]

    def _conv(self, name, x, at):
        """Decoder convolution ``name`` of x, masked by the embeddings' pixels at its
        stride (``at(stride)``) when it is one of ``aware_decoder``."""
        if name in self.aware_decoder:
            return getattr(self, name)(x, at(self.AWARE_DECODER[name]))
        return getattr(self, name)(x)

    @staticmethod
    def _up_flow(layer, flow, factor, size, at, e_stride):
        """``flow`` on the point grid, upsampled by ``factor`` to ``size``: bilinear, or
        by ``layer`` guided by the embeddings' pixels at the target stride."""
        if layer is None:
            return upsample_point(flow, factor, size)
        return layer(flow, at(e_stride))

