"""A small DeepLab-LargeFOV-style segmentation network with the switches of Table 1.

Layout (output stride 8): three VGG-like blocks of two 3x3 convolutions, each followed by
DeepLab's 3x3 stride-2 max pool with padding 1; a fourth block at dilation 2; FC6 a 3x3
convolution at a large dilation (the "large field of view"); FC7 and FC8 1x1
convolutions; bilinear upsampling of the FC8 scores to the input size.  With
``output_stride=4`` the third pool is dropped and, as DeepLab does when it removes a
pool, the layers after it keep their field of view by doubling their dilation.  Any H, W work:
a map at stride s has ceil(H / s) rows, sample i centred on input row s i (a point
grid, :mod:`.grids`), so the scores are upsampled and the embeddings subsampled on
that grid, without the (s - 1) / 2 pixel shift of a half-pixel resize.

Switches (Sec. 4.1 and Table 1):

* ``segaware='fc6'`` or ``'all'``: FC6, or every 3x3 convolution, becomes a
  :class:`~segnp.nn.SegAwareConv2d` (Eq. 7).  The embeddings are resized to each layer's
  resolution (sampled on its grid), and lam starts at ``lam_init`` (0: the network
  starts as the baseline, up to Eq. 7's normalisation at the borders), one value for
  every layer or a dict by layer name (:meth:`SegNet.segaware_layers`);
  :func:`segnp.nn.calibrate_lams` sets them from embedding statistics.
* ``bf=(n, ksize)``: a segmentation-aware bilateral filter (Eq. 4) of the FC8 scores,
  applied n times.  It runs on the scores after upsampling, at the resolution of the
  embeddings, so that it can sharpen them at pixel level (the paper's Fig. 4).
* ``crf=True``: a :class:`~segnp.nn.SegAwareCRF` (Sec. 3.3) on the upsampled scores.

Any switch needs embeddings, which come from ``embedder`` (an
:class:`~segnp.models.EmbeddingNet`, pre-trained with the embedding loss and fine-tuned
end to end through this network), or are passed to ``forward`` directly.
"""
from .. import functions as F
from .. import nn
from .checks import check_positive, check_switches, check_widths
from .head import SegmentationHead

__all__ = ["SegNet"]

OUTPUT_STRIDES = (8, 4)
# the layers that can be segmentation-aware, by the names lam_init and calibration use
SEGAWARE_LAYERS = tuple(f"body.{i}" for i in range(8)) + ("fc6",)


class SegNet(SegmentationHead, nn.Module):
    """Scores (N, L, H, W) from images (N, 3, H, W).

    Args:
        num_classes: L.
        widths: channels of the four convolution blocks.
        fc_width: channels of FC6 and FC7.
        fc6_dilation: dilation of FC6 at output stride 8 (12 in DeepLab-LargeFOV at
            321x321 inputs; smaller here to suit small images).
        output_stride: 8 (three pools) or 4 (two; later dilations doubled).
        segaware: 'none', 'fc6' or 'all'.
        bf: None or (n, ksize) for the bilateral filter of the FC8 scores.
        crf: add the segmentation-aware CRF.
        embedder: a module mapping images to ``(e, side_outputs)`` (an EmbeddingNet),
            or None; it becomes part of this network and is fine-tuned with it.
        norm: the embedding distance of the segmentation-aware convolutions (Eq. 3).
        lam_init: their initial lam: a float >= 0, or a dict from layer name
            ('body.0' ... 'body.7', 'fc6') to float, absent names starting at 0.
        bf_lam_init: initial lam of the bilateral filter (it must be > 0 to filter
            selectively from the start; lam = 0 is a box filter).
        dropout: dropout probability after FC6 and FC7.
        in_channels: C of the input images.
        crf_kwargs: keyword arguments of :class:`~segnp.nn.SegAwareCRF` (window sizes,
            iterations, initial values).
    """

    def __init__(self, num_classes, widths=(16, 32, 48, 64), fc_width=128, fc6_dilation=4,
                 segaware="none", bf=None, crf=False, embedder=None, norm="l1",
                 lam_init=0.0, bf_lam_init=1.0, dropout=0.5, in_channels=3, crf_kwargs=None,
                 output_stride=8):
        super().__init__()
        check_switches("SegNet", segaware, bf)
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"SegNet: output_stride must be one of {OUTPUT_STRIDES}; got "
                             f"{output_stride!r}")
        names = list(SEGAWARE_LAYERS)
        if isinstance(lam_init, dict):
            unknown = sorted(set(lam_init) - set(names))
            if unknown:
                raise ValueError(f"SegNet: lam_init names layers {unknown}; the "
                                 f"segmentation-aware layers are {names}")
            lams = {n: lam_init.get(n, 0.0) for n in names}
        else:
            lams = dict.fromkeys(names, lam_init)
        self.num_classes = check_positive("SegNet", "num_classes", num_classes)
        self.in_channels = check_positive("SegNet", "in_channels", in_channels)
        widths = check_widths("SegNet", widths, 4)
        self.segaware = segaware
        self.dropout = dropout
        self.embedder = embedder
        w1, w2, w3, w4 = widths

        def conv(name, cin, cout, dilation=1, aware=False):
            if aware:
                return nn.SegAwareConv2d(cin, cout, 3, dilation=dilation, norm=norm,
                                         lam_init=lams[name])
            return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)

        every = segaware == "all"
        self.output_stride = output_stride
        # a dropped pool doubles the dilation of every later layer (DeepLab's rule)
        self.pool_after = (1, 3, 5) if output_stride == 8 else (1, 3)
        d4 = 2 * (8 // output_stride)
        cfg = [(in_channels, w1, 1), (w1, w1, 1), (w1, w2, 1), (w2, w2, 1),
               (w2, w3, 1), (w3, w3, 1), (w3, w4, d4), (w4, w4, d4)]
        self.body = nn.ModuleList([conv(f"body.{i}", cin, cout, d, aware=every)
                                   for i, (cin, cout, d) in enumerate(cfg)])
        fc6_d = fc6_dilation * (8 // output_stride)
        self.fc6 = conv("fc6", w4, fc_width, fc6_d, aware=segaware in ("fc6", "all"))
        self.fc7 = nn.Conv2d(fc_width, fc_width, 1)
        self.fc8 = nn.Conv2d(fc_width, num_classes, 1)
        self._build_filters(num_classes, bf, crf, norm, bf_lam_init, crf_kwargs)

    def segaware_layers(self):
        """[(name, SegAwareConv2d, stride of its input map)] in forward order."""
        out, stride = [], 1
        for i, layer in enumerate(self.body):
            if isinstance(layer, nn.SegAwareConv2d):
                out.append((f"body.{i}", layer, stride))
            if i in self.pool_after:
                stride *= 2
        if isinstance(self.fc6, nn.SegAwareConv2d):
            out.append(("fc6", self.fc6, stride))
        return out

    def forward(self, x, e=None):
        """Scores (N, L, H, W) for images x (N, C, H, W); ``e`` (N, D, H, W) overrides
        the embedder's embeddings."""
        x, size, e = self._inputs("SegNet", x, e)
        stride = 1
        h = x
        for i, layer in enumerate(self.body):
            h = F.relu(self._apply(layer, h, e, stride))
            if i in self.pool_after:
                h = F.max_pool2d(h, 3, stride=2, padding=1)
                stride *= 2
        return self._head(h, e, stride, size)
