"""The embedding network (Sec. 4.1, Fig. 5).

Seven 3x3 convolutions laid out as VGG-16's first layers (conv1_1, conv1_2, pool,
conv2_1, conv2_2, pool, conv3_1, conv3_2, conv3_3), so three scales.  Each scale ends
in an intermediate embedding (a 1x1 convolution) that gets its own embedding loss; the
intermediate embeddings are upsampled to full resolution, concatenated with the RGB
input, and a 1x1 convolution makes the final D-dimensional embedding.

The pools are VGG's 2x2, stride 2, in ceil mode (any H, W works; a partial last block
is pooled as it is), so the side outputs lie on block grids (see :mod:`.grids`) and are
upsampled without a shift.
"""
from .. import functions as F
from .. import nn
from .checks import check_images, check_positive, check_widths
from .grids import upsample_block

__all__ = ["EmbeddingNet", "embedding_vgg16"]

VGG_WIDTHS = (64, 128, 256)


class EmbeddingNet(nn.Module):
    """Pixel embeddings e (N, D, H, W) from an image x (N, 3, H, W).

    Args:
        widths: channels of the three VGG blocks; VGG-16 has (64, 128, 256), the default
            is small so that training runs on a CPU.
        embed_dim: D of the final embedding (the paper uses 64).
        side_dim: channels of each intermediate embedding.
        in_channels: input channels (3 for RGB).

    ``forward(x)`` returns ``(e, [e1, e2, e3])``: the final embedding (N, D, H, W) and
    the three intermediate ones (N, side_dim, ceil(H / s), ceil(W / s)) at s = 1, 2, 4
    (the side outputs that the embedding loss, Eq. 1, supervises).

    :meth:`load_vgg16` copies VGG-16's conv1_1 ... conv3_3 from a weights file.
    """

    def __init__(self, widths=(16, 32, 64), embed_dim=64, side_dim=16, in_channels=3):
        super().__init__()
        w1, w2, w3 = self.widths = check_widths("EmbeddingNet", widths, 3)
        self.embed_dim = check_positive("EmbeddingNet", "embed_dim", embed_dim)
        self.in_channels = check_positive("EmbeddingNet", "in_channels", in_channels)
        self.conv1_1 = nn.Conv2d(in_channels, w1, 3, padding=1)
        self.conv1_2 = nn.Conv2d(w1, w1, 3, padding=1)
        self.conv2_1 = nn.Conv2d(w1, w2, 3, padding=1)
        self.conv2_2 = nn.Conv2d(w2, w2, 3, padding=1)
        self.conv3_1 = nn.Conv2d(w2, w3, 3, padding=1)
        self.conv3_2 = nn.Conv2d(w3, w3, 3, padding=1)
        self.conv3_3 = nn.Conv2d(w3, w3, 3, padding=1)
        self.side1 = nn.Conv2d(w1, side_dim, 1)
        self.side2 = nn.Conv2d(w2, side_dim, 1)
        self.side3 = nn.Conv2d(w3, side_dim, 1)
        self.fuse = nn.Conv2d(3 * side_dim + in_channels, embed_dim, 1)

    def forward(self, x):
        x = check_images("EmbeddingNet", x, self.in_channels, self.conv1_1.weight.dtype)
        H, W = x.shape[2:]
        h = F.relu(self.conv1_2(F.relu(self.conv1_1(x))))
        e1 = self.side1(h)
        h = F.max_pool2d(h, 2, ceil_mode=True)
        h = F.relu(self.conv2_2(F.relu(self.conv2_1(h))))
        e2 = self.side2(h)
        h = F.max_pool2d(h, 2, ceil_mode=True)
        h = F.relu(self.conv3_3(F.relu(self.conv3_2(F.relu(self.conv3_1(h))))))
        e3 = self.side3(h)
        up2 = upsample_block(e2, 2, (H, W))
        up3 = upsample_block(e3, 4, (H, W))
        e = self.fuse(F.concat([e1, up2, up3, x], axis=1))
        return e, [e1, e2, e3]

    def vgg_layers(self):
        """The seven convolutions that mirror VGG-16, in order (for :func:`load_vgg16`)."""
        return [self.conv1_1, self.conv1_2, self.conv2_1, self.conv2_2,
                self.conv3_1, self.conv3_2, self.conv3_3]

    def load_vgg16(self, path, rgb=True):
        """Initialise the seven VGG layers from ``path`` (see :func:`~segnp.models.load_vgg16`)."""
        from .vgg import load_vgg16
        return load_vgg16(path, self, rgb=rgb)


def embedding_vgg16(vgg16=None, rgb=True, **options):
    """The embedding network at the paper's scale (Sec. 4.1): VGG-16's widths
    (64, 128, 256), D = 64 final and intermediate embedding channels.

    ``options`` override :class:`EmbeddingNet`'s arguments; ``vgg16`` is a VGG-16
    weights file that initialises the seven VGG convolutions (see
    :func:`~segnp.models.load_vgg16`), ``rgb`` the channel order of the input.
    """
    net = EmbeddingNet(**{"widths": VGG_WIDTHS, "embed_dim": 64, "side_dim": 64, **options})
    if vgg16 is not None:
        net.load_vgg16(vgg16, rgb=rgb)
    return net


def auto_embedder(fn, embedder, needed, vgg16=None, rgb=True):
    """What a paper-scale builder (``fn``) gives its network as embedder: for 'auto',
    :func:`embedding_vgg16` (from ``vgg16``) when the switches ``needed`` one, else
    None; a module or None as given."""
    if not isinstance(embedder, str):
        return embedder
    if embedder != "auto":
        raise ValueError(f"{fn}: embedder must be 'auto', None or a module; got {embedder!r}")
    return embedding_vgg16(vgg16=vgg16, rgb=rgb) if needed else None
