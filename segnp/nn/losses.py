"""Loss modules: thin holders of a loss function's hyper-parameters."""
from .. import functions as F
from .module import Module

__all__ = ["EmbeddingLoss"]


class EmbeddingLoss(Module):
    """The embedding loss of Sec. 3.1 (Eqs. 1-2): ``forward(e, labels)`` ->
    ``F.embedding_loss(e, labels, ksize, dilations, alpha, beta, norm, ignore_index)``.

    e (N, D, H, W) embeddings, labels (N, H, W) integers -> a 0-d loss.  Same-label
    pixel pairs are pulled within ``alpha``, different-label pairs pushed ``beta`` apart;
    the pairs are each pixel's ``ksize`` x ``ksize`` neighbours at each dilation (the
    paper: 3x3 at dilations 1, 2 and 5, alpha = 0.5, beta = 2, the L1 norm).  No
    parameters.
    """

    def __init__(self, ksize=3, dilations=(1, 2, 5), alpha=0.5, beta=2.0, norm="l1",
                 ignore_index=255):
        super().__init__()
        self.ksize = ksize
        self.dilations = tuple(dilations) if isinstance(dilations, list) else dilations
        self.alpha, self.beta, self.norm, self.ignore_index = alpha, beta, norm, ignore_index

    def forward(self, e, labels):
        return F.embedding_loss(e, labels, self.ksize, self.dilations, self.alpha,
                                self.beta, self.norm, self.ignore_index)

    def extra_repr(self):
        return (f"ksize={self.ksize}, dilations={self.dilations}, alpha={self.alpha}, "
                f"beta={self.beta}, norm={self.norm!r}, ignore_index={self.ignore_index}")
