"""A small FlowNetSimple (Dosovitskiy et al., 2015) with the segmentation-aware head of
Sec. 5.2.

The two frames are concatenated on the channel axis.  A contracting part of stride-2
convolutions reaches 1/16 resolution; an expanding part upsamples (bilinear resize then
a 3x3 convolution, in place of FlowNet's transposed convolutions), concatenates the
skip connection of the same scale and the upsampled coarser flow, and predicts flow at
1/8 and finally 1/4 resolution.  Flow is predicted in input-resolution pixels at every
scale, so upsampling it needs no rescaling.

With ``segaware=True`` the final prediction layer is a
:class:`~segnp.nn.SegAwareConv2d` and the upsampled flow goes through a
``bf_ksize`` x ``bf_ksize`` segmentation-aware bilateral filter, both with the
embeddings of frame 1.
"""
from .. import functions as F
from .. import nn

__all__ = ["FlowNetS"]


class FlowNetS(nn.Module):
    """Flow (N, 2, H, W) in pixels, (u, v), from frames (N, 6, H, W).

    ``forward`` returns ``(flow, [flow4, flow3, flow2])``: the full-resolution flow and
    the predictions at 1/16, 1/8 and 1/4 resolution (for multi-scale losses).
    """

    def __init__(self, widths=(16, 32, 64, 96), segaware=False, bf_ksize=9, embedder=None,
                 norm="l1", lam_init=0.0, bf_lam_init=1.0, in_channels=6):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.segaware = segaware
        self.embedder = embedder
        self.conv1 = nn.Conv2d(in_channels, w1, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(w2, w3, 3, stride=2, padding=1)
        self.conv3_1 = nn.Conv2d(w3, w3, 3, padding=1)
        self.conv4 = nn.Conv2d(w3, w4, 3, stride=2, padding=1)
        self.conv4_1 = nn.Conv2d(w4, w4, 3, padding=1)
        self.predict4 = nn.Conv2d(w4, 2, 3, padding=1)
        self.up3 = nn.Conv2d(w4, w3 // 2, 3, padding=1)
        self.predict3 = nn.Conv2d(w3 + w3 // 2 + 2, 2, 3, padding=1)
        self.up2 = nn.Conv2d(w3 + w3 // 2 + 2, w2 // 2, 3, padding=1)
        cin2 = w2 + w2 // 2 + 2
        if segaware:
            self.predict2 = nn.SegAwareConv2d(cin2, 2, 3, norm=norm, lam_init=lam_init)
            self.bf = nn.BilateralFilter(ksize=bf_ksize, dilation=1, norm=norm, repeat=1,
                                         lam_init=bf_lam_init)
        else:
            self.predict2 = nn.Conv2d(cin2, 2, 3, padding=1)
            self.bf = None

    def forward(self, x, e=None):
        """Flow for frame pairs ``x``; ``e`` overrides the embeddings of frame 1."""
        H, W = x.shape[2:]
        if self.segaware and e is None:
            if self.embedder is None:
                raise ValueError("FlowNetS.forward: segaware=True needs embeddings; pass e or "
                                 "build the network with an embedder")
            e, _ = self.embedder(x[:, :3])
        c1 = F.leaky_relu(self.conv1(x), 0.1)
        c2 = F.leaky_relu(self.conv2(c1), 0.1)
        c3 = F.leaky_relu(self.conv3_1(F.leaky_relu(self.conv3(c2), 0.1)), 0.1)
        c4 = F.leaky_relu(self.conv4_1(F.leaky_relu(self.conv4(c3), 0.1)), 0.1)
        flow4 = self.predict4(c4)
        s3, s2 = tuple(c3.shape[2:]), tuple(c2.shape[2:])
        u3 = F.leaky_relu(self.up3(F.resize_bilinear(c4, s3)), 0.1)
        j3 = F.concat([c3, u3, F.resize_bilinear(flow4, s3)], axis=1)
        flow3 = self.predict3(j3)
        u2 = F.leaky_relu(self.up2(F.resize_bilinear(j3, s2)), 0.1)
        j2 = F.concat([c2, u2, F.resize_bilinear(flow3, s2)], axis=1)
        if self.segaware:
            flow2 = self.predict2(j2, F.resize_bilinear(e, s2))
        else:
            flow2 = self.predict2(j2)
        flow = F.resize_bilinear(flow2, (H, W))
        if self.bf is not None:
            flow = self.bf(flow, e)
        return flow, [flow4, flow3, flow2]
