"""DeepLab-LargeFOV on VGG-16 (Chen et al., ICLR 2015), the base network of Sec. 5.1 and
Table 1, with the segmentation-aware switches of Table 1.

Layout (output stride 8), as DeepLab's released ``train.prototxt``:

* VGG-16's 13 3x3 convolutions in five blocks (2, 2, 3, 3, 3 convolutions of 64, 128,
  256, 512, 512 channels), each followed by a ReLU;
* after each block a 3x3 max pool with padding 1, at stride 2 after blocks 1-3 and at
  stride 1 after blocks 4 and 5 (so the output stride stays 8);
* block 5 at dilation 2, to see what VGG's stride-16 conv5 saw;
* FC6: 1,024 channels, 3x3 at dilation 12 (the "large field of view"); FC7: 1,024
  channels, 1x1; each followed by a ReLU and dropout 0.5; FC8: 1x1 to the classes;
* the FC8 scores are upsampled bilinearly to the input size.

About 20.5 M parameters at 21 classes (14.7 M of them VGG-16's convolutions).  Any
H, W work: a map at stride s has ceil(H / s) rows, sample i on input row s i (a point
grid, :mod:`.grids`); scores are upsampled and embeddings subsampled on that grid.

Switches (Table 1), as in :class:`~segnp.models.SegNet`: ``segaware='fc6'`` or
``'all'`` makes FC6, or every 3x3 convolution, a :class:`~segnp.nn.SegAwareConv2d`
(Eq. 7); ``bf=(n, k)`` applies a k x k segmentation-aware bilateral filter (Eq. 4) n
times to the upsampled scores; ``crf=True`` adds the segmentation-aware CRF of
Sec. 3.3 (13x13 at dilation 9, 5x5 spatial, 2 iterations, by default).  The
embeddings come from ``embedder`` or are passed to ``forward``.
"""
from .. import functions as F
from .. import nn
from .checks import check_positive, check_switches, check_widths
from .embedding import auto_embedder
from .head import SegmentationHead

__all__ = ["DeepLabLargeFOV", "deeplab_largefov", "VGG16_WIDTHS"]

VGG16_WIDTHS = (64, 128, 256, 512, 512)
BLOCK_DEPTHS = (2, 2, 3, 3, 3)
POOL_STRIDES = (2, 2, 2, 1, 1)
BLOCK_DILATIONS = (1, 1, 1, 1, 2)


class DeepLabLargeFOV(SegmentationHead, nn.Module):
    """Scores (N, L, H, W) from images (N, 3, H, W).

    Args:
        num_classes: L (21 for PASCAL VOC).
        widths: channels of the five VGG blocks (VGG-16's by default; small ones make
            fast tests).
        fc_width: channels of FC6 and FC7 (1,024).
        fc6_dilation: dilation of FC6 (12).
        segaware: 'none', 'fc6' or 'all'.
        bf: None or (n, ksize): the bilateral filter of the upsampled scores.
        crf: add the segmentation-aware CRF.
        embedder: a module mapping images to ``(e, side_outputs)``, or None.
        norm, lam_init: mask settings of the segmentation-aware convolutions (Eq. 3).
        bf_lam_init: initial lam of the bilateral filter.
        dropout: dropout probability after FC6 and FC7 (0.5).
        in_channels: C of the input images.
        crf_kwargs: keyword arguments of :class:`~segnp.nn.SegAwareCRF`.

    ``features`` holds the 13 convolutions in VGG's order (conv1_1, conv1_2, conv2_1 ...
    conv5_3), which :meth:`load_vgg16` fills from VGG-16.
    """

    def __init__(self, num_classes=21, widths=VGG16_WIDTHS, fc_width=1024, fc6_dilation=12,
                 segaware="none", bf=None, crf=False, embedder=None, norm="l1",
                 lam_init=0.0, bf_lam_init=1.0, dropout=0.5, in_channels=3, crf_kwargs=None):
        super().__init__()
        fn = "DeepLabLargeFOV"
        check_switches(fn, segaware, bf)
        self.num_classes = check_positive(fn, "num_classes", num_classes)
        self.in_channels = check_positive(fn, "in_channels", in_channels)
        widths = check_widths(fn, widths, len(BLOCK_DEPTHS))
        fc_width = check_positive(fn, "fc_width", fc_width)
        self.segaware = segaware
        self.dropout = dropout
        self.embedder = embedder

        def conv(cin, cout, dilation, aware):
            if aware:
                return nn.SegAwareConv2d(cin, cout, 3, dilation=dilation, norm=norm,
                                         lam_init=lam_init)
            return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)

        layers, cin = [], in_channels
        for width, depth, dilation in zip(widths, BLOCK_DEPTHS, BLOCK_DILATIONS):
            for _ in range(depth):
                layers.append(conv(cin, width, dilation, segaware == "all"))
                cin = width
        self.features = nn.ModuleList(layers)
        self.fc6 = conv(cin, fc_width, check_positive(fn, "fc6_dilation", fc6_dilation),
                        segaware in ("fc6", "all"))
        self.fc7 = nn.Conv2d(fc_width, fc_width, 1)
        self.fc8 = nn.Conv2d(fc_width, num_classes, 1)
        self._build_filters(num_classes, bf, crf, norm, bf_lam_init, crf_kwargs)

    def forward(self, x, e=None):
        """Scores (N, L, H, W) for images x (N, C, H, W); ``e`` (N, D, H, W) overrides
        the embedder's embeddings."""
        x, size, e = self._inputs("DeepLabLargeFOV", x, e)
        stride = 1
        h, layers = x, iter(self.features)
        for depth, pool_stride in zip(BLOCK_DEPTHS, POOL_STRIDES):
            for _ in range(depth):
                h = F.relu(self._apply(next(layers), h, e, stride))
            h = F.max_pool2d(h, 3, stride=pool_stride, padding=1)
            stride *= pool_stride
        return self._head(h, e, stride, size)

    def vgg_layers(self):
        """The 13 convolutions conv1_1 ... conv5_3, in VGG-16's order."""
        return list(self.features)

    def load_vgg16(self, path, rgb=True):
        """Initialise the 13 VGG convolutions from ``path`` (see
        :func:`~segnp.models.load_vgg16`); FC6-FC8 keep their initialisation."""
        from .vgg import load_vgg16
        return load_vgg16(path, self, rgb=rgb)


def deeplab_largefov(num_classes=21, vgg16=None, rgb=True, embedder="auto", **switches):
    """DeepLab-LargeFOV at the paper's scale (Sec. 5.1), like torchvision's builders.

    ``switches`` are :class:`DeepLabLargeFOV`'s keyword arguments (``segaware``,
    ``bf``, ``crf``, ...).  ``embedder='auto'`` adds :func:`embedding_vgg16` when a
    switch needs embeddings (None: pass ``e`` to forward instead; or give a module).
    ``vgg16``: a VGG-16 weights file (see :func:`~segnp.models.load_vgg16`) that
    initialises the 13 convolutions, and the embedder's seven when it is built here;
    ``rgb`` names the channel order of the input.
    """
    net = DeepLabLargeFOV(num_classes, embedder=None, **switches)
    net.embedder = auto_embedder("deeplab_largefov", embedder, net.needs_embeddings, vgg16, rgb)
    if vgg16 is not None:
        net.load_vgg16(vgg16, rgb=rgb)
    return net
