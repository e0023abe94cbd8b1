"""The embedding loss of Sec. 3.1 (Eqs. 1-2) on NumPy, one dilation per call.

Notation: e (N, D, H, W) embeddings, labels (N, H, W) integers, K = ksize**2 taps of a
ksize x ksize window (ksize odd) with stride 1 and the "same" padding
``dilation * (ksize // 2)``, so tap k = (i, j) of pixel p = (ph, pw) is pixel
``p + o_k`` with offset ``o_k = ((i - r) * dilation, (j - r) * dilation)``, r = ksize//2.

A pair (p, p + o_k) is *counted* unless the tap is the centre (k = K // 2), lies outside
the image, or either label equals ``ignore_index``.  Its loss (Eq. 1) is::

    max(d - alpha, 0)   when labels[p] == labels[p + o_k]   ("near" threshold alpha)
    max(beta - d, 0)    otherwise                           ("far" threshold beta)

with ``d = ||e[:, p] - e[:, p + o_k]||`` in the norm 'l1' (sum |delta|), 'l2'
(sqrt(sum delta**2)) or 'l2sq' (sum delta**2).  Eq. 2 sums over every pixel and every
counted tap; the caller divides by the count.

Every kernel loops over the K taps: for one tap the pixels whose tap lies inside the
image form a rectangle (``Window.taps``), so a tap costs a few array operations on
(N, D, h, w) slices and the K-fold pair array is never built (except by
:func:`same_label_pairs`, whose output it is).
"""
import numpy as np

from ...window import Window
from ..._validate import check_float, check_int, check_ndim, check_norm

__all__ = ["same_label_pairs", "embedding_pair_loss", "embedding_pair_loss_backward"]


def _window(fn, H, W, ksize, dilation):
    """The checked window: stride 1, the default padding, one dilation."""
    win = Window.segaware(fn, H, W, ksize, 1, None, dilation)
    if win.DH != win.DW:
        raise ValueError(f"{fn}: dilation must be one int; got {dilation!r}")
    return win


def _pair_taps(win):
    """Yield ``(k, centre, tap)`` for each off-centre tap that meets the image, where
    ``centre`` and ``tap`` are (rows, cols) slice pairs of equal shape: the pixels p
    whose tap k is inside the image, and those taps p + o_k (``Window.taps``: at
    stride 1 and the default padding output p is centred on pixel p)."""
    for k, _, tap, centre in win.taps():
        if tap is not None and k != win.K // 2:
            yield k, centre, tap


def _half_taps(win):
    """The taps of :func:`_pair_taps` before the centre (k < K // 2).  Tap k's offset is
    the negative of tap K - 1 - k's, so the pair (p, p + o_k) met at tap k is the pair
    (q, q - o_k) met at tap K - 1 - k from q = p + o_k: the same two pixels, labels and
    distance, inside the image together.  Visiting half the taps and counting each
    pair twice halves the work of the loss and its gradient."""
    for k, centre, tap in _pair_taps(win):
        if k < win.K // 2:
            yield k, centre, tap


def _check_labels(fn, labels, e=None):
    check_int(fn, "labels", labels)
    check_ndim(fn, "labels", labels, "(N, H, W)")
    if e is not None:
        check_float(fn, "e", e)
        check_ndim(fn, "e", e, "(N, D, H, W)")
        want = (e.shape[0],) + tuple(e.shape[2:])
        if tuple(labels.shape) != want:
            raise ValueError(f"{fn}: labels must be (N, H, W) = {want} to match e of "
                             f"shape {tuple(e.shape)}; got {tuple(labels.shape)}")


def _pair_codes(labels, centre, tap, ignore_index):
    """(same, counted) boolean (N, h, w) arrays for the pairs of one tap."""
    lc = labels[:, centre[0], centre[1]]
    lt = labels[:, tap[0], tap[1]]
    counted = (lc != ignore_index) & (lt != ignore_index)
    return lc == lt, counted


def _distance(delta, norm):
    """||delta|| over the channel axis: delta (N, D, h, w) -> (N, h, w)."""
    if norm == "l1":
        return np.abs(delta).sum(axis=1)
    dist = np.einsum("ndhw,ndhw->nhw", delta, delta)
    if norm == "l2":
        np.sqrt(dist, out=dist)
    return dist


def same_label_pairs(labels, ksize, dilation=1, ignore_index=255):
    """The paper's "im2parity": which (centre, tap) pairs share a label.

    labels (N, H, W) integers -> int8 (N, K, H, W) with ``pairs[n, k, p]`` = 1 when
    labels[n, p] == labels[n, p + o_k], 0 when they differ, and -1 when the pair is not
    counted: tap k is the centre or lies outside the image, or either label is
    ``ignore_index``.
    """
    fn = "same_label_pairs"
    _check_labels(fn, labels)
    N, H, W = labels.shape
    win = _window(fn, H, W, ksize, dilation)
    pairs = np.full((N, win.K, H, W), -1, dtype=np.int8)
    for k, centre, tap in _pair_taps(win):
        same, counted = _pair_codes(labels, centre, tap, ignore_index)
        code = same.astype(np.int8)
        code[~counted] = -1
        pairs[:, k, centre[0], centre[1]] = code
    return pairs


def embedding_pair_loss(e, labels, ksize=3, dilation=1, alpha=0.5, beta=2.0, norm="l1",
                        ignore_index=255):
    """Eqs. 1-2 for one dilation: the sum of the pair losses and the number of pairs.

    e (N, D, H, W), labels (N, H, W) -> (loss_sum, count): loss_sum a 0-d array of
    e's dtype, count a Python int.  Both ordered pairs (p, q) and (q, p) are counted,
    as each pixel is the centre of its own window.
    """
    fn = "embedding_pair_loss"
    check_norm(fn, norm)
    _check_labels(fn, labels, e)
    N, D, H, W = e.shape
    win = _window(fn, H, W, ksize, dilation)
    total = np.zeros((), dtype=e.dtype)
    count = 0
    for _, centre, tap in _half_taps(win):
        same, counted = _pair_codes(labels, centre, tap, ignore_index)
        d = _distance(e[:, :, centre[0], centre[1]] - e[:, :, tap[0], tap[1]], norm)
        loss = np.where(same, d - alpha, beta - d)
        np.maximum(loss, 0, out=loss)
        total += loss[counted].sum(dtype=e.dtype)
        count += int(np.count_nonzero(counted))
    # each unordered pair stands for its two ordered pairs (see _half_taps)
    total *= 2
    return total, 2 * count


def embedding_pair_loss_backward(e, labels, gloss, ksize=3, dilation=1, alpha=0.5,
                                 beta=2.0, norm="l1", ignore_index=255):
    """Gradient of :func:`embedding_pair_loss`'s loss_sum, scaled by ``gloss``.

    e (N, D, H, W), labels (N, H, W), gloss a number or 0-d array -> ge (N, D, H, W).

    Per pair, dloss/dd is +1 for a same-label pair with d > alpha, -1 for a
    different-label pair with d < beta, and 0 otherwise (the kinks d = alpha and
    d = beta included).  The pixel p collects from the pairs where it is the centre and
    those where it is the tap.  The window is symmetric and the pair loss too (the pair
    (p + o_k, p) is the pair (p, p + o_k') with o_k' = -o_k, counted under the same
    rules), so the two halves are equal and, gathering over p's own taps only::

        ge[:, p] = 2 * gloss * sum_k dloss/dd(p, k) * dnorm(e[:, p] - e[:, p + o_k])

    with dnorm = sign(delta) ('l1'), delta / ||delta|| ('l2', taken as 0 where
    delta = 0 so that coincident embeddings give no NaN) or 2 delta ('l2sq').
    Computed over half the taps (:func:`_half_taps`): each pair's term goes to its
    centre and, negated, to its tap pixel, which is where the opposite tap would have
    put it.
    """
    fn = "embedding_pair_loss_backward"
    check_norm(fn, norm)
    _check_labels(fn, labels, e)
    N, D, H, W = e.shape
    win = _window(fn, H, W, ksize, dilation)
    scale = 2 * np.asarray(gloss, dtype=e.dtype)
    ge = np.zeros_like(e)
    for _, centre, tap in _half_taps(win):
        same, counted = _pair_codes(labels, centre, tap, ignore_index)
        delta = e[:, :, centre[0], centre[1]] - e[:, :, tap[0], tap[1]]
        d = _distance(delta, norm)
        slope = ((same & (d > alpha)).astype(e.dtype)
                 - (~same & (d < beta)).astype(e.dtype))
        slope *= counted
        if norm == "l1":
            # into a new array: NumPy's sign in place ran 10x slower than into another
            # array (float32, 2.4.6): 4 taps x 1.15 ms of this function's 8.5 ms
            delta = np.sign(delta)
        elif norm == "l2sq":
            slope *= 2
        else:
            slope /= np.where(d > 0, d, np.inf)
        slope *= scale
        delta *= slope[:, None]
        ge[:, :, centre[0], centre[1]] += delta
        ge[:, :, tap[0], tap[1]] -= delta
    return ge
