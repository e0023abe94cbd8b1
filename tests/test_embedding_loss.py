"""The embedding loss (Sec. 3.1, Eqs. 1-2): kernels against per-pixel loops, gradients,
its special cases, a small optimisation, and bad input.

The loops below are written straight from the equations: every pixel p, every tap k of
p's window, the pair (p, tap) counted unless the tap is the centre or outside the image
or a label is ignored; the pair loss is Eq. 1; the loss of a dilation is Eq. 2 divided
by its number of pairs.  The gradient loop scatters each pair's derivative to both of
its pixels, whereas the kernel gathers, so the two are independent derivations.
"""
import itertools

import numpy as np
import pytest

import segnp.functions as F
from segnp import nn
from segnp.autograd import Parameter, Tensor
from segnp.backends import get_backend
from segnp.gradcheck import check_grad
from segnp.optim import Adam
from naive_ops import norm_of

B = get_backend("numpy")
NORMS = ["l1", "l2", "l2sq"]
IGNORE = 255


# ---- the loops ---------------------------------------------------------------------
def pairs_of(H, W, ksize, dilation):
    """Yield (ph, pw, k, th, tw, inside) over every pixel and every tap."""
    r = ksize // 2
    for ph, pw in itertools.product(range(H), range(W)):
        for i, j in itertools.product(range(ksize), range(ksize)):
            th, tw = ph + (i - r) * dilation, pw + (j - r) * dilation
            yield ph, pw, i * ksize + j, th, tw, 0 <= th < H and 0 <= tw < W


def naive_same_label_pairs(labels, ksize, dilation, ignore=IGNORE):
    N, H, W = labels.shape
    out = np.empty((N, ksize * ksize, H, W), dtype=np.int8)
    for n in range(N):
        for ph, pw, k, th, tw, inside in pairs_of(H, W, ksize, dilation):
            if k == ksize * ksize // 2 or not inside \
                    or labels[n, ph, pw] == ignore or labels[n, th, tw] == ignore:
                out[n, k, ph, pw] = -1
            else:
                out[n, k, ph, pw] = int(labels[n, ph, pw] == labels[n, th, tw])
    return out


def dnorm_of(delta, norm):
    if norm == "l1":
        return np.sign(delta)
    if norm == "l2sq":
        return 2 * delta
    n = np.sqrt((delta ** 2).sum())
    return delta / n if n > 0 else np.zeros_like(delta)


def naive_loss(e, labels, ksize, dilation, alpha, beta, norm, ignore=IGNORE, grad=False):
    """(sum of Eq. 1 over the counted pairs, their count[, d sum / d e])."""
    N, D, H, W = e.shape
    total, count, ge = 0.0, 0, np.zeros_like(e)
    for n in range(N):
        for ph, pw, k, th, tw, inside in pairs_of(H, W, ksize, dilation):
            lp = labels[n, ph, pw]
            if k == ksize * ksize // 2 or not inside or lp == ignore \
                    or labels[n, th, tw] == ignore:
                continue
            delta = e[n, :, ph, pw] - e[n, :, th, tw]
            d = norm_of(delta, norm)
            same = lp == labels[n, th, tw]
            total += max(d - alpha, 0.0) if same else max(beta - d, 0.0)
            count += 1
            slope = (1.0 if d > alpha else 0.0) if same else (-1.0 if d < beta else 0.0)
            g = slope * dnorm_of(delta, norm)
            ge[n, :, ph, pw] += g
            ge[n, :, th, tw] -= g
    return (total, count, ge) if grad else (total, count)


def naive_embedding_loss(e, labels, ksize, dilations, alpha, beta, norm, ignore=IGNORE):
    out = 0.0
    for dl in dilations:
        s, c = naive_loss(e, labels, ksize, dl, alpha, beta, norm, ignore)
        out += s / c if c else 0.0
    return out


def random_labels(rng, shape, classes=3, ignore_frac=0.15):
    labels = rng.integers(0, classes, size=shape)
    labels[rng.random(shape) < ignore_frac] = IGNORE
    return labels


# (N, D, H, W, ksize, dilation): odd sizes, dilations up to past the image size.
CASES = [
    (2, 3, 7, 9, 3, 1),
    (1, 4, 5, 6, 3, 2),
    (2, 2, 9, 7, 3, 5),
    (1, 3, 6, 5, 5, 1),
    (1, 2, 8, 11, 5, 3),
    (1, 2, 5, 6, 3, 7),   # dilation beyond the height: only row-0 taps remain
    (1, 1, 1, 1, 3, 1),   # one pixel: no pair at all
]


# ---- kernels ------------------------------------------------------------------------
@pytest.mark.parametrize("N,D,H,W,ksize,dilation", CASES)
def test_same_label_pairs_matches_loop(N, D, H, W, ksize, dilation):
    rng = np.random.default_rng(H * 31 + W)
    labels = random_labels(rng, (N, H, W))
    got = B.same_label_pairs(labels, ksize, dilation)
    assert got.dtype == np.int8 and got.shape == (N, ksize * ksize, H, W)
    np.testing.assert_array_equal(got, naive_same_label_pairs(labels, ksize, dilation))


def test_same_label_pairs_other_ignore_index_and_dtypes():
    rng = np.random.default_rng(1)
    labels = rng.integers(-1, 2, size=(2, 6, 7)).astype(np.uint8).astype(np.int16)
    labels[labels > 1] = -1
    for lab in (labels, labels.astype(np.int64)):
        got = B.same_label_pairs(lab, 3, 2, ignore_index=-1)
        np.testing.assert_array_equal(got, naive_same_label_pairs(lab, 3, 2, ignore=-1))


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("N,D,H,W,ksize,dilation", CASES)
def test_pair_loss_matches_loop(N, D, H, W, ksize, dilation, norm):
    rng = np.random.default_rng(N + 7 * D + 13 * H + W)
    e = rng.normal(size=(N, D, H, W))
    labels = random_labels(rng, (N, H, W))
    alpha, beta = 0.4, 1.7
    s, c = B.embedding_pair_loss(e, labels, ksize, dilation, alpha, beta, norm)
    ref_s, ref_c, ref_g = naive_loss(e, labels, ksize, dilation, alpha, beta, norm, grad=True)
    assert isinstance(c, int) and c == ref_c
    assert isinstance(s, np.ndarray) and s.shape == () and s.dtype == np.float64
    np.testing.assert_allclose(s, ref_s, rtol=1e-12, atol=1e-12)
    ge = B.embedding_pair_loss_backward(e, labels, 1.0, ksize, dilation, alpha, beta, norm)
    assert ge.shape == e.shape and ge.dtype == e.dtype
    np.testing.assert_allclose(ge, ref_g, rtol=1e-12, atol=1e-12)
    # gloss scales the gradient, whether a number or a 0-d array.
    ge3 = B.embedding_pair_loss_backward(e, labels, np.asarray(-2.5), ksize, dilation,
                                         alpha, beta, norm)
    np.testing.assert_allclose(ge3, -2.5 * ref_g, rtol=1e-12, atol=1e-12)


def test_pair_loss_float32_keeps_dtype():
    rng = np.random.default_rng(3)
    e = rng.normal(size=(2, 5, 9, 7)).astype(np.float32)
    labels = random_labels(rng, (2, 9, 7)).astype(np.int32)
    s, c = B.embedding_pair_loss(e, labels, 3, 2)
    assert s.dtype == np.float32 and s.shape == ()
    ref_s, ref_c = naive_loss(e.astype(np.float64), labels, 3, 2, 0.5, 2.0, "l1")
    assert c == ref_c
    np.testing.assert_allclose(float(s), ref_s, rtol=1e-5)
    ge = B.embedding_pair_loss_backward(e, labels, np.float32(1), 3, 2)
    assert ge.dtype == np.float32


def test_embedding_loss_matches_loop():
    rng = np.random.default_rng(5)
    e = rng.normal(size=(2, 3, 9, 11))
    labels = random_labels(rng, (2, 9, 11))
    for norm, dilations in (("l1", (1, 2, 5)), ("l2", (1, 3)), ("l2sq", (2,))):
        got = F.embedding_loss(e, labels, 3, dilations, 0.5, 2.0, norm)
        assert got.shape == () and got.dtype == np.float64
        ref = naive_embedding_loss(e, labels, 3, dilations, 0.5, 2.0, norm)
        np.testing.assert_allclose(got.item(), ref, rtol=1e-12)
    # Dilation 20 has no pair in a 9 x 11 image: it adds 0, not NaN.
    got = F.embedding_loss(e, labels, 3, (1, 20))
    np.testing.assert_allclose(got.item(), naive_embedding_loss(e, labels, 3, (1,), 0.5,
                                                                2.0, "l1"), rtol=1e-12)


# ---- gradients -----------------------------------------------------------------------
@pytest.mark.parametrize("norm", NORMS)
def test_gradcheck_embeddings(norm):
    rng = np.random.default_rng(11)
    e = rng.normal(size=(2, 2, 5, 7))
    labels = random_labels(rng, (2, 5, 7))
    check_grad(lambda t: F.embedding_loss(t, labels, 3, (1, 2), 0.3, 1.5, norm), [e],
               max_elementwise=140)


def test_gradcheck_l2_coincident_embeddings():
    # Regions of identical embeddings: different-label pairs at d = 0 push with a
    # gradient taken as 0 there (no NaN), and the central difference agrees.
    rng = np.random.default_rng(12)
    e = np.zeros((1, 3, 5, 6))
    e[:, :, :, 3:] = rng.normal(size=(1, 3, 1, 1))
    labels = rng.integers(0, 2, size=(1, 5, 6))
    t = Tensor(e, requires_grad=True)
    F.embedding_loss(t, labels, norm="l2").backward()
    assert np.all(np.isfinite(t.grad))
    check_grad(lambda x: F.embedding_loss(x, labels, 3, (1, 2), norm="l2"), [e],
               max_elementwise=90)


def test_gradient_float32():
    rng = np.random.default_rng(13)
    e = Tensor(rng.normal(size=(1, 4, 6, 5)).astype(np.float32), requires_grad=True)
    labels = rng.integers(0, 3, size=(1, 6, 5))
    loss = F.embedding_loss(e, labels)
    assert loss.dtype == np.float32
    loss.backward()
    assert e.grad.dtype == np.float32 and np.all(np.isfinite(e.grad))


# ---- special cases ---------------------------------------------------------------------
@pytest.mark.parametrize("norm", NORMS)
def test_zero_loss_when_regions_are_tight_and_far(norm):
    # Same-label embeddings coincide; different labels sit exactly beta apart in every
    # norm (one channel differs by beta; with 'l2sq' by sqrt(beta)).
    rng = np.random.default_rng(21)
    labels = rng.integers(0, 3, size=(2, 7, 8))
    beta = 2.0
    step = np.sqrt(beta) if norm == "l2sq" else beta
    e = np.zeros((2, 3, 7, 8))
    for c in range(3):
        e[:, c][labels == c] = step
    t = Tensor(e, requires_grad=True)
    loss = F.embedding_loss(t, labels, norm=norm, beta=beta)
    loss.backward()
    assert loss.item() == 0.0
    assert not np.any(t.grad)
    # Any same-label spread beyond alpha, or closer different labels, costs something.
    e2 = e.copy()
    e2[0, 0, 0, 0] += 0.9 if norm != "l2sq" else 1.0
    assert F.embedding_loss(e2, labels, norm=norm, beta=beta).item() > 0


def test_ignored_pixels_do_not_count():
    rng = np.random.default_rng(22)
    labels = rng.integers(0, 2, size=(1, 9, 9))
    labels[0, 2:5, 3:7] = IGNORE
    e = Tensor(rng.normal(size=(1, 3, 9, 9)), requires_grad=True)
    loss = F.embedding_loss(e, labels)
    loss.backward()
    # The embeddings of ignored pixels change nothing and receive no gradient.
    e2 = e.data.copy()
    e2[:, :, 2:5, 3:7] = rng.normal(size=(1, 3, 3, 4)) * 10
    assert F.embedding_loss(e2, labels).item() == loss.item()
    assert not np.any(e.grad[:, :, 2:5, 3:7])
    assert np.any(e.grad[:, :, 0])
    # Every pixel ignored: no pair, loss 0, gradient 0.
    t = Tensor(e.data, requires_grad=True)
    out = F.embedding_loss(t, np.full((1, 9, 9), IGNORE))
    out.backward()
    assert out.item() == 0.0 and not np.any(t.grad)


def test_module_matches_function():
    rng = np.random.default_rng(23)
    e = rng.normal(size=(1, 3, 7, 7))
    labels = random_labels(rng, (1, 7, 7))
    mod = nn.EmbeddingLoss(ksize=3, dilations=[1, 3], alpha=0.2, beta=1.0, norm="l2")
    assert list(mod.parameters()) == []
    np.testing.assert_allclose(mod(e, labels).item(),
                               naive_embedding_loss(e, labels, 3, (1, 3), 0.2, 1.0, "l2"),
                               rtol=1e-12)


def test_adam_separates_two_regions():
    # Free embeddings over a left/right label map, all starting near one point: after
    # a few hundred Adam steps every counted cross-region pair is at least beta apart.
    rng = np.random.default_rng(0)
    H = W = 12
    labels = np.zeros((1, H, W), dtype=np.int64)
    labels[:, :, W // 2:] = 1
    e = Parameter(rng.normal(scale=0.1, size=(1, 4, H, W)))
    opt = Adam([e], lr=0.05)
    crit = nn.EmbeddingLoss(dilations=(1, 2, 5))
    for _ in range(300):
        opt.zero_grad()
        loss = crit(e, labels)
        loss.backward()
        opt.step()
    ed = e.data
    for dilation in (1, 2, 5):
        pairs = B.same_label_pairs(labels, 3, dilation)
        d = np.zeros(pairs.shape)
        for n, k, ph, pw in zip(*np.nonzero(pairs == 0)):
            i, j = divmod(k, 3)
            th, tw = ph + (i - 1) * dilation, pw + (j - 1) * dilation
            d[n, k, ph, pw] = np.abs(ed[n, :, ph, pw] - ed[n, :, th, tw]).sum()
        assert np.count_nonzero(pairs == 0) > 0
        assert d[pairs == 0].min() >= 2.0
    assert crit(e, labels).item() < 0.05


# ---- bad input -------------------------------------------------------------------------
def test_bad_input():
    e = np.zeros((1, 2, 5, 6))
    labels = np.zeros((1, 5, 6), dtype=np.int64)
    with pytest.raises(ValueError, match=r"embedding_loss: e must be \(N, D, H, W\); "
                                         r"got shape \(2, 5, 6\)"):
        F.embedding_loss(e[0], labels)
    with pytest.raises(ValueError, match=r"embedding_loss: labels must be \(N, H, W\); "
                                         r"got shape \(5, 6\)"):
        F.embedding_loss(e, labels[0])
    with pytest.raises(TypeError, match=r"embedding_loss: labels must be an integer array; "
                                        r"got dtype float64"):
        F.embedding_loss(e, labels.astype(np.float64))
    with pytest.raises(TypeError, match="embedding_loss: e must be a floating"):
        F.embedding_loss(e.astype(np.int32), labels)
    with pytest.raises(ValueError, match=r"embedding_loss: labels must be \(N, H, W\) = "
                                         r"\(1, 5, 6\) to match e of shape \(1, 2, 5, 6\); "
                                         r"got \(1, 6, 5\)"):
        F.embedding_loss(e, np.zeros((1, 6, 5), dtype=np.int64))
    bad = labels.copy()
    bad[0, 1, 2] = -3
    with pytest.raises(ValueError, match=r"embedding_loss: labels must be >= 0 or equal to "
                                         r"ignore_index \(255\); got the label -3"):
        F.embedding_loss(e, bad)
    bad[0, 1, 2] = -1
    assert F.embedding_loss(e, bad, ignore_index=-1).item() == 0.0  # -1 is ignored here
    with pytest.raises(ValueError, match="embedding_loss: ksize must be an odd int"):
        F.embedding_loss(e, labels, ksize=4)
    with pytest.raises(ValueError, match="embedding_loss: dilations must be"):
        F.embedding_loss(e, labels, dilations=(1, 0))
    with pytest.raises(ValueError, match="embedding_loss: norm must be one of"):
        F.embedding_loss(e, labels, norm="l3")
    with pytest.raises(ValueError, match="embedding_loss: beta must be"):
        F.embedding_loss(e, labels, alpha=1.0, beta=0.5)


def test_kernel_bad_input():
    e = np.zeros((1, 2, 5, 6))
    labels = np.zeros((1, 5, 6), dtype=np.int64)
    with pytest.raises(ValueError, match=r"same_label_pairs: labels must be \(N, H, W\)"):
        B.same_label_pairs(labels[0], 3)
    with pytest.raises(TypeError, match="same_label_pairs: labels must be an integer"):
        B.same_label_pairs(labels.astype(np.float32), 3)
    with pytest.raises(ValueError, match="same_label_pairs: ksize must be odd"):
        B.same_label_pairs(labels, 2)
    with pytest.raises(ValueError, match=r"embedding_pair_loss: labels must be \(N, H, W\) "
                                         r"= \(1, 5, 6\)"):
        B.embedding_pair_loss(e, labels[:, :4])
    with pytest.raises(ValueError, match=r"embedding_pair_loss_backward: e must be "
                                         r"\(N, D, H, W\)"):
        B.embedding_pair_loss_backward(e[0], labels, 1.0)
