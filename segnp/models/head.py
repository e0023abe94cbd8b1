"""What SegNet and DeepLab-LargeFOV share: the FC6-FC8 head with Table 1's filters, and
how a layer of either body gets its embeddings.

Both networks are a body of 3x3 convolutions and pools, then FC6 (3x3, dilated), FC7 and
FC8 (1x1), the FC8 scores upsampled to the input size on the point grid of
:mod:`.grids`, and optionally the bilateral filter (Eq. 4) and the CRF (Sec. 3.3) on
those scores, both masked by the full-resolution embeddings.
"""
from .. import functions as F
from .. import nn
from .checks import check_images, resolve_embeddings
from .grids import subsample_point, upsample_point

__all__ = ["SegmentationHead"]


class SegmentationHead:
    """Mixin of a segmentation network with ``fc6``, ``fc7``, ``fc8``, ``bf``, ``crf``,
    ``segaware``, ``embedder``, ``dropout`` and ``in_channels``."""

    def _build_filters(self, num_classes, bf, crf, norm, bf_lam_init, crf_kwargs):
        """``bf=(n, ksize)``: the bilateral filter, n passes; ``crf``: the CRF."""
        self.bf = None if bf is None else nn.BilateralFilter(
            ksize=bf[1], dilation=1, norm=norm, repeat=bf[0], lam_init=bf_lam_init)
        self.crf = nn.SegAwareCRF(num_classes, **(crf_kwargs or {})) if crf else None

    @property
    def needs_embeddings(self):
        return self.segaware != "none" or self.bf is not None or self.crf is not None

    def _inputs(self, fn, x, e):
        """(x checked, (H, W), embeddings or None) for ``forward(x, e)``."""
        x = check_images(fn, x, self.in_channels, self.fc8.weight.dtype)
        e = resolve_embeddings(fn, x, e, self.embedder, self.needs_embeddings)
        return x, tuple(x.shape[2:]), e

    @staticmethod
    def _apply(layer, h, e, stride):
        """``layer(h)``; a segmentation-aware one gets the embeddings sampled at the
        stride of h."""
        if isinstance(layer, nn.SegAwareConv2d):
            return layer(h, subsample_point(e, stride))
        return layer(h)

    def _head(self, h, e, stride, size):
        """FC6-FC8 on the body's output h (at ``stride``), the scores upsampled to
        ``size`` = (H, W), then the filters."""
        h = F.dropout(F.relu(self._apply(self.fc6, h, e, stride)), self.dropout,
                      self.training)
        h = F.dropout(F.relu(self.fc7(h)), self.dropout, self.training)
        scores = upsample_point(self.fc8(h), stride, size)
        if self.bf is not None:
            scores = self.bf(scores, e)
        if self.crf is not None:
            scores = self.crf(scores, e)
        return scores
