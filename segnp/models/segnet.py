"""A small DeepLab-LargeFOV-style segmentation network with the switches of Table 1.

Layout (output stride 8): three VGG-like blocks of two 3x3 convolutions, each followed by
DeepLab's 3x3 stride-2 max pool with padding 1; a fourth block at dilation 2; FC6 a 3x3
convolution at a large dilation (the "large field of view"); FC7 and FC8 1x1
convolutions; bilinear upsampling of the FC8 scores to the input size.  Any H, W work:
a map at stride s has ceil(H / s) rows, sample i centred on input row s i (a point
grid, :mod:`.grids`), so the scores are upsampled and the embeddings subsampled on
that grid, without the (s - 1) / 2 pixel shift of a half-pixel resize.

Switches (Sec. 4.1 and Table 1):

* ``segaware='fc6'`` or ``'all'``: FC6, or every 3x3 convolution, becomes a
  :class:`~segnp.nn.SegAwareConv2d` (Eq. 7).  The embeddings are resized to each layer's
  resolution (sampled on its grid), and lam starts at ``lam_init`` (0: the network
  starts as the baseline, up to Eq. 7's normalisation at the borders).
* ``bf=(n, ksize)``: a segmentation-aware bilateral filter (Eq. 4) of the FC8 scores,
  applied n times.  It runs on the scores after upsampling, at the resolution of the
  embeddings, so that it can sharpen them at pixel level (the paper's Fig. 4).
* ``crf=True``: a :class:`~segnp.nn.SegAwareCRF` (Sec. 3.3) on the upsampled scores.

Any switch needs embeddings, which come from ``embedder`` (an
:class:`~segnp.models.EmbeddingNet`, pre-trained with the embedding loss and fine-tuned
end to end through this network), or are passed to ``forward`` directly.
"""
import numbers

from .. import functions as F
from .. import nn
from .checks import check_embeddings, check_images, check_positive, check_widths
from .grids import subsample_point, upsample_point

__all__ = ["SegNet"]

SEGAWARE_CHOICES = ("none", "fc6", "all")


class SegNet(nn.Module):
    """Scores (N, L, H, W) from images (N, 3, H, W).

    Args:
        num_classes: L.
        widths: channels of the four convolution blocks.
        fc_width: channels of FC6 and FC7.
        fc6_dilation: dilation of FC6 (12 in DeepLab-LargeFOV at 321x321 inputs; smaller
            here to suit small images).
        segaware: 'none', 'fc6' or 'all'.
        bf: None or (n, ksize) for the bilateral filter of the FC8 scores.
        crf: add the segmentation-aware CRF.
        embedder: a module mapping images to ``(e, side_outputs)`` (an EmbeddingNet),
            or None; it becomes part of this network and is fine-tuned with it.
        norm, lam_init: mask settings of the segmentation-aware convolutions (Eq. 3).
        bf_lam_init: initial lam of the bilateral filter (it must be > 0 to filter
            selectively from the start; lam = 0 is a box filter).
        dropout: dropout probability after FC6 and FC7.
        in_channels: C of the input images.
        crf_kwargs: keyword arguments of :class:`~segnp.nn.SegAwareCRF` (window sizes,
            iterations, initial values).
    """

    def __init__(self, num_classes, widths=(16, 32, 48, 64), fc_width=128, fc6_dilation=4,
                 segaware="none", bf=None, crf=False, embedder=None, norm="l1",
                 lam_init=0.0, bf_lam_init=1.0, dropout=0.5, in_channels=3, crf_kwargs=None):
        super().__init__()
        if segaware not in SEGAWARE_CHOICES:
            raise ValueError(f"SegNet: segaware must be one of {SEGAWARE_CHOICES}; "
                             f"got {segaware!r}")
        if bf is not None and not (
                isinstance(bf, (tuple, list)) and len(bf) == 2
                and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in bf)
                and bf[0] >= 1):
            raise ValueError(f"SegNet: bf must be None or (repeat >= 1, odd ksize); "
                             f"got {bf!r}")
        self.num_classes = check_positive("SegNet", "num_classes", num_classes)
        self.in_channels = check_positive("SegNet", "in_channels", in_channels)
        widths = check_widths("SegNet", widths, 4)
        self.segaware = segaware
        self.dropout = dropout
        self.embedder = embedder
        w1, w2, w3, w4 = widths

        def conv(cin, cout, dilation=1, aware=False):
            if aware:
                return nn.SegAwareConv2d(cin, cout, 3, dilation=dilation, norm=norm,
                                         lam_init=lam_init)
            return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)

        every = segaware == "all"
        # (layer name, module, pool after?) in order; names follow VGG/DeepLab.
        self.body = nn.ModuleList([
            conv(in_channels, w1, aware=every), conv(w1, w1, aware=every),
            conv(w1, w2, aware=every), conv(w2, w2, aware=every),
            conv(w2, w3, aware=every), conv(w3, w3, aware=every),
            conv(w3, w4, 2, aware=every), conv(w4, w4, 2, aware=every),
        ])
        self.pool_after = (1, 3, 5)
        self.fc6 = conv(w4, fc_width, fc6_dilation, aware=segaware in ("fc6", "all"))
        self.fc7 = nn.Conv2d(fc_width, fc_width, 1)
        self.fc8 = nn.Conv2d(fc_width, num_classes, 1)
        self.bf = None if bf is None else nn.BilateralFilter(
            ksize=bf[1], dilation=1, norm=norm, repeat=bf[0], lam_init=bf_lam_init)
        self.crf = nn.SegAwareCRF(num_classes, **(crf_kwargs or {})) if crf else None

    @property
    def needs_embeddings(self):
        return self.segaware != "none" or self.bf is not None or self.crf is not None

    def forward(self, x, e=None):
        """Scores (N, L, H, W) for images x (N, C, H, W); ``e`` (N, D, H, W) overrides
        the embedder's embeddings."""
        fn = "SegNet"
        x = check_images(fn, x, self.in_channels, self.fc8.weight.dtype)
        H, W = x.shape[2:]
        if e is not None:
            e = check_embeddings(fn, e, x)
        elif self.needs_embeddings:
            if self.embedder is None:
                raise ValueError("SegNet.forward: this configuration needs embeddings; pass "
                                 "e or build the network with an embedder")
            e, _ = self.embedder(x)
        stride = 1

        def apply(layer, h):
            if isinstance(layer, nn.SegAwareConv2d):
                return layer(h, subsample_point(e, stride))
            return layer(h)

        h = x
        for i, layer in enumerate(self.body):
            h = F.relu(apply(layer, h))
            if i in self.pool_after:
                h = F.max_pool2d(h, 3, stride=2, padding=1)
                stride *= 2
        h = F.dropout(F.relu(apply(self.fc6, h)), self.dropout, self.training)
        h = F.dropout(F.relu(self.fc7(h)), self.dropout, self.training)
        scores = upsample_point(self.fc8(h), stride, (H, W))
        if self.bf is not None:
            scores = self.bf(scores, e)
        if self.crf is not None:
            scores = self.crf(scores, e)
        return scores
