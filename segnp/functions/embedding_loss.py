"""The embedding loss of Sec. 3.1 (Eqs. 1-2), differentiable with respect to e.

Pixel pairs with the same label are pulled to within ``alpha`` of each other, pairs with
different labels pushed at least ``beta`` apart (Eq. 1).  The pairs are each pixel and
the off-centre taps of a ``ksize`` x ``ksize`` window, at several dilations (the paper
uses three overlapping 3x3 neighbourhoods at dilations 1, 2 and 5; Eq. 2).  The kernels
(``embedding_pair_loss[_backward]``, one dilation per call) live in each backend.
"""
import numbers

from ..autograd import Function, as_tensor
from .._validate import check_float, check_int, check_ndim, check_norm, is_int

__all__ = ["embedding_loss"]


class EmbeddingLoss(Function):
    """(e (N, D, H, W), labels (N, H, W)) -> the 0-d loss of Eqs. 1-2, of e's dtype.

    loss = sum over dilations of (sum of that dilation's pair losses) / (its number of
    counted pairs); a dilation without a counted pair contributes 0.
    """

    def __init__(self, ksize, dilations, alpha, beta, norm, ignore_index):
        self.ksize, self.dilations = ksize, tuple(dilations)
        self.kw = dict(alpha=alpha, beta=beta, norm=norm, ignore_index=ignore_index)

    def forward(self, e, labels):
        xp = self.xp
        total = xp.zeros((), dtype=e.dtype)
        self.counts = []
        for dilation in self.dilations:
            loss_sum, count = self.backend.embedding_pair_loss(
                e, labels, self.ksize, dilation, **self.kw)
            # The count may be a device array: never read it on the host (a GPU stall).
            # Without pairs loss_sum is 0, so dividing by max(count, 1) gives the 0.
            count = xp.maximum(xp.asarray(count, dtype=e.dtype), 1)
            self.counts.append(count)
            total = total + loss_sum / count
        if self.needs_input_grad[0]:
            self.e, self.labels = e, labels
        return xp.asarray(total, dtype=e.dtype)

    def backward(self, gloss):
        ge = None
        for dilation, count in zip(self.dilations, self.counts):
            # A dilation without pairs gives a zero gradient here, as it should.
            g = self.backend.embedding_pair_loss_backward(
                self.e, self.labels, gloss / count, self.ksize, dilation, **self.kw)
            ge = g if ge is None else ge + g
        return ge, None


def _check_number(fn, name, value, minimum=0.0, minimum_name=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not minimum <= value < float("inf"):
        bound = f"{minimum_name} = {minimum}" if minimum_name else minimum
        raise ValueError(f"{fn}: {name} must be a finite number >= {bound}; got {value!r}")
    return float(value)


def embedding_loss(e, labels, ksize=3, dilations=(1, 2, 5), alpha=0.5, beta=2.0, norm="l1",
                   ignore_index=255):
    """The embedding loss of Eqs. 1-2: a 0-d Tensor of e's dtype.

    e (N, D, H, W) float embeddings, labels (N, H, W) integers (array or Tensor).  For
    each dilation the pairs are (pixel p, tap k of p's ``ksize`` x ``ksize`` window at
    that dilation), excluding the centre tap, taps outside the image and pairs where
    either label is ``ignore_index``.  A pair costs ``max(d - alpha, 0)`` if its labels
    agree and ``max(beta - d, 0)`` if not, with d the ``norm`` ('l1', 'l2' or 'l2sq') of
    the embedding difference.  The loss is the sum over ``dilations`` of the mean over
    that dilation's pairs (0 for a dilation without pairs).  Gradients flow to e.
    Labels must be >= 0 or equal to ``ignore_index``.
    """
    fn = "embedding_loss"
    e, labels = as_tensor(e), as_tensor(labels)
    check_float(fn, "e", e.data)
    check_ndim(fn, "e", e, "(N, D, H, W)")
    check_int(fn, "labels", labels.data)
    check_ndim(fn, "labels", labels, "(N, H, W)")
    want = (e.shape[0],) + e.shape[2:]
    if labels.shape != want:
        raise ValueError(f"{fn}: labels must be (N, H, W) = {want} to match e of shape "
                         f"{e.shape}; got {labels.shape}")
    check_norm(fn, norm)
    if not is_int(ksize) or ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"{fn}: ksize must be an odd int >= 1 (the window needs a centre "
                         f"tap); got {ksize!r}")
    if isinstance(dilations, numbers.Integral):
        dilations = (dilations,)
    dilations = tuple(dilations)
    if not dilations or any(not is_int(d) or d < 1 for d in dilations):
        raise ValueError(f"{fn}: dilations must be a non-empty sequence of ints >= 1; "
                         f"got {dilations!r}")
    alpha = _check_number(fn, "alpha", alpha)
    beta = _check_number(fn, "beta", beta, alpha, "alpha")
    if not is_int(ignore_index):
        raise TypeError(f"{fn}: ignore_index must be an int; got {ignore_index!r}")
    lab = labels.data
    bad = (lab < 0) & (lab != ignore_index)
    if bool(bad.any()):
        raise ValueError(f"{fn}: labels must be >= 0 or equal to ignore_index "
                         f"({ignore_index}); got the label {int(lab[bad].min())}")
    return EmbeddingLoss(int(ksize), tuple(int(d) for d in dilations), alpha, beta, norm,
                         int(ignore_index))(e, labels)
