"""The full FlowNetSimple (Dosovitskiy et al., ICCV 2015), the baseline of Sec. 5.2 and
Table 3, with its segmentation-aware variant.

The two frames are concatenated on the channel axis (N, 6, H, W).

* **Contracting part** (every convolution followed by a leaky ReLU, slope 0.1):
  conv1 7x7 and conv2, conv3 5x5, all at stride 2; conv3_1 3x3; then conv4, conv5,
  conv6 3x3 at stride 2, each followed by a 3x3 convolution (conv4_1, conv5_1,
  conv6_1).  Widths 64, 128, 256, 512, 512, 1024: conv6_1 sees the input at 1/64.
* **Refinement**: at each scale s = 64, 32, 16, 8 a 3x3 convolution predicts flow
  (predict_flow6 ... predict_flow3); a 4x4 stride-2 transposed convolution of the
  features (deconv5 ... deconv2, with a leaky ReLU) and another of the flow (upflow,
  no bias) bring both to the next finer scale, where they are concatenated with the
  contracting part's map of that scale (conv5_1, conv4_1, conv3_1, conv2).
  predict_flow2 makes the last prediction, at 1/4, which is upsampled bilinearly to
  the input size.

About 38.7 M parameters, as the released FlowNetS.  Every strided, padded convolution
keeps the point grid (:mod:`.grids`; the map at stride s has ceil(H / s) rows), so any
H, W work: a transposed convolution gives twice its input's size, which is cropped to
the finer map's (only when H or W is not a multiple of 64).  As in
:class:`~segnp.models.FlowNetS`, flow is predicted in input-resolution pixels at every
scale (the losses compare it with the target sampled on that scale's grid).

Segmentation-aware variant (Sec. 5.2, Table 3): ``segaware=True`` makes predict_flow2
a :class:`~segnp.nn.SegAwareConv2d` and adds a ``bf_ksize`` x ``bf_ksize``
segmentation-aware bilateral filter of the full-resolution flow, both with the
embeddings of frame 1.
"""
from .. import functions as F
from .. import nn
from .checks import check_images, check_positive, check_widths, resolve_embeddings
from .embedding import auto_embedder
from .grids import subsample_point, upsample_point

__all__ = ["FlowNetSimple", "flownet_simple", "FLOWNET_WIDTHS"]

FLOWNET_WIDTHS = (64, 128, 256, 512, 512, 1024)
SLOPE = 0.1


def _crop(x, like):
    """x cropped to the rows and columns of ``like`` (a 2x upsampling overshoots by one
    where the finer map has an odd size)."""
    h, w = like.shape[2:]
    return x if tuple(x.shape[2:]) == (h, w) else x[:, :, :h, :w]


class FlowNetSimple(nn.Module):
    """Flow (N, 2, H, W) in pixels, (u, v), from frames (N, 6, H, W).

    ``forward(x, e=None)`` returns ``(flow, [flow6, flow5, flow4, flow3, flow2])``: the
    full-resolution flow and the predictions at strides ``SCALE_STRIDES`` (64, 32, 16,
    8, 4), each (N, 2, ceil(H / s), ceil(W / s)), for FlowNet's multi-scale loss.

    Args:
        widths: channels of conv1, conv2, conv3, conv4, conv5, conv6 (FlowNet's by
            default; small ones make fast tests).  The deconvolutions into scales 32,
            16, 8, 4 have widths[4], widths[2], widths[1], widths[0] channels.
        segaware: the segmentation-aware variant (see the module docstring), with
            lam starting at ``lam_init`` (predict_flow2) and ``bf_lam_init`` (filter).
        bf_ksize: window of the bilateral filter (9).
        embedder: maps frame 1 (N, 3, H, W) to ``(e, side_outputs)``; or pass ``e``.
        norm: the embedding distance of both masks (Eq. 3).
        in_channels: channels of the concatenated frames (6).

    Layers: conv1 ... conv6_1; ``predict[k]``, ``deconv[k]`` and ``upflow[k]`` for
    k = 0 ... 3 are FlowNet's predict_flow6 ... predict_flow3, deconv5 ... deconv2 and
    upsample_flow6to5 ... upsample_flow3to2; ``predict_flow2`` makes the last prediction.
    """

    SCALE_STRIDES = (64, 32, 16, 8, 4)

    def __init__(self, widths=FLOWNET_WIDTHS, segaware=False, bf_ksize=9, embedder=None,
                 norm="l1", lam_init=0.0, bf_lam_init=1.0, in_channels=6):
        super().__init__()
        fn = "FlowNetSimple"
        w1, w2, w3, w4, w5, w6 = check_widths(fn, widths, 6)
        self.in_channels = check_positive(fn, "in_channels", in_channels)
        if in_channels % 2:
            raise ValueError(f"{fn}: in_channels must be even (two frames concatenated); "
                             f"got {in_channels}")
        self.segaware = bool(segaware)
        self.embedder = embedder

        def conv(cin, cout, k, stride):
            return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)

        self.conv1 = conv(in_channels, w1, 7, 2)
        self.conv2 = conv(w1, w2, 5, 2)
        self.conv3 = conv(w2, w3, 5, 2)
        self.conv3_1 = conv(w3, w3, 3, 1)
        self.conv4 = conv(w3, w4, 3, 2)
        self.conv4_1 = conv(w4, w4, 3, 1)
        self.conv5 = conv(w4, w5, 3, 2)
        self.conv5_1 = conv(w5, w5, 3, 1)
        self.conv6 = conv(w5, w6, 3, 2)
        self.conv6_1 = conv(w6, w6, 3, 1)
        # (skip channels, deconvolution channels) at scales 32, 16, 8, 4
        skips, ups = (w5, w4, w3, w2), (w5, w3, w2, w1)
        cins = [w6]
        for skip, up in zip(skips, ups):
            cins.append(skip + up + 2)
        self.predict = nn.ModuleList([conv(c, 2, 3, 1) for c in cins[:-1]])
        self.deconv = nn.ModuleList([nn.ConvTranspose2d(c, up, 4, stride=2, padding=1)
                                     for c, up in zip(cins, ups)])
        self.upflow = nn.ModuleList([nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1,
                                                        bias=False) for _ in ups])
        if self.segaware:
            self.predict_flow2 = nn.SegAwareConv2d(cins[-1], 2, 3, norm=norm,
                                                   lam_init=lam_init)
            self.bf = nn.BilateralFilter(ksize=bf_ksize, dilation=1, norm=norm, repeat=1,
                                         lam_init=bf_lam_init)
        else:
            self.predict_flow2 = conv(cins[-1], 2, 3, 1)
            self.bf = None

    def forward(self, x, e=None):
        """Flow for frame pairs x (N, 6, H, W); ``e`` (N, D, H, W) overrides the
        embeddings of frame 1."""
        fn = "FlowNetSimple"
        x = check_images(fn, x, self.in_channels, self.conv1.weight.dtype)
        H, W = x.shape[2:]
        e = resolve_embeddings(fn, x, e, self.embedder, self.segaware,
                               image=x[:, :self.in_channels // 2])

        def act(layer, h):
            return F.leaky_relu(layer(h), SLOPE)

        c2 = act(self.conv2, act(self.conv1, x))
        c3 = act(self.conv3_1, act(self.conv3, c2))
        c4 = act(self.conv4_1, act(self.conv4, c3))
        c5 = act(self.conv5_1, act(self.conv5, c4))
        h = act(self.conv6_1, act(self.conv6, c5))
        flows = []
        for k, skip in enumerate((c5, c4, c3, c2)):
            flow = self.predict[k](h)
            flows.append(flow)
            h = F.concat([skip, _crop(act(self.deconv[k], h), skip),
                          _crop(self.upflow[k](flow), skip)], axis=1)
        if self.segaware:
            flow2 = self.predict_flow2(h, subsample_point(e, 4))
        else:
            flow2 = self.predict_flow2(h)
        flows.append(flow2)
        flow = upsample_point(flow2, 4, (H, W))
        if self.bf is not None:
            flow = self.bf(flow, e)
        return flow, flows


def flownet_simple(vgg16=None, rgb=True, embedder="auto", **switches):
    """FlowNetSimple at the paper's scale (Sec. 5.2), like torchvision's builders.

    ``switches`` are :class:`FlowNetSimple`'s keyword arguments (``segaware``,
    ``bf_ksize``, ...).  ``embedder='auto'`` adds :func:`embedding_vgg16` (initialised
    from the VGG-16 file ``vgg16`` when given) with ``segaware=True`` (None: pass ``e``
    to forward instead; or give a module, e.g. one trained on PASCAL VOC as in the
    paper).  FlowNet itself starts from random weights.
    """
    net = FlowNetSimple(embedder=None, **switches)
    net.embedder = auto_embedder("flownet_simple", embedder, net.segaware, vgg16, rgb)
    return net
