"""The CUDA embedding-loss kernels (pairs.cu: im2parity, the pair loss of Eqs. 1-2 and
its gradient) on the CPU emulator: against a per-pair loop written here from the
equations, against the NumPy backend, and under autograd; on a GPU when present.
"""
import numpy as np
import pytest

import segnp.functions as F
from segnp import Tensor, check_grad
from segnp.backends import get_backend, using_backend
from segnp.backends.emulator import EmulatorRuntime
from segnp.backends.cuda import pairs as lp

NORMS = ["l1", "l2", "l2sq"]
DTYPES = [np.float64, np.float32]
# (ksize, dilation); at dilation 5 on a 6 x 7 image most taps fall outside.
WINDOWS = [(3, 1), (3, 2), (5, 1), (3, 5)]
# Launch shapes: the default, a tiny grid whose threads loop, a block that is not a
# power of two (the block reduction of the loss must still add every thread once).
RUNTIMES = [EmulatorRuntime(), EmulatorRuntime(threads=32, max_blocks=2),
            EmulatorRuntime(threads=100, max_blocks=3)]
NUMPY = get_backend("numpy")

# Every test here runs with the emulator's threads in ascending and in descending
# order (tests/conftest.py), so a missing __syncthreads shows in one of them.
pytestmark = pytest.mark.usefixtures("emulator_order")


def naive_pairs(e, labels, ksize, dilation, alpha, beta, norm, ignore):
    """Eqs. 1-2 pair by pair: (loss sum, count, d loss/d e, im2parity codes)."""
    N, D, H, W = e.shape
    r = ksize // 2
    loss, count = 0.0, 0
    ge = np.zeros(e.shape)
    codes = np.full((N, ksize * ksize, H, W), -1, np.int8)
    for n in range(N):
        for i in range(H):
            for j in range(W):
                for k in range(ksize * ksize):
                    ti, tj = i + (k // ksize - r) * dilation, j + (k % ksize - r) * dilation
                    if k == ksize * ksize // 2 or not (0 <= ti < H and 0 <= tj < W):
                        continue
                    if ignore in (labels[n, i, j], labels[n, ti, tj]):
                        continue
                    same = labels[n, i, j] == labels[n, ti, tj]
                    codes[n, k, i, j] = int(same)
                    delta = e[n, :, i, j] - e[n, :, ti, tj]
                    dist = np.sqrt((delta ** 2).sum())
                    d, g = {"l1": (np.abs(delta).sum(), np.sign(delta)),
                            "l2": (dist, delta / dist if dist > 0 else 0 * delta),
                            "l2sq": (dist ** 2, 2 * delta)}[norm]
                    pair = d - alpha if same else beta - d
                    loss += max(pair, 0.0)
                    count += 1
                    slope = (1.0 if same else -1.0) if pair > 0 else 0.0
                    ge[n, :, i, j] += slope * g
                    ge[n, :, ti, tj] -= slope * g
    return loss, count, ge, codes


def case(rng, dtype, N=2, D=3, H=6, W=7, classes=3):
    e = rng.standard_normal((N, D, H, W)).astype(dtype)
    labels = rng.integers(0, classes, (N, H, W)).astype(np.uint8)
    labels[0, 1, 2] = 255
    labels[-1, 3, :] = 255
    e[0, :, 4, 4] = e[0, :, 4, 5]  # coincident embeddings: 'l2' must not give NaN
    return e, labels


def close(a, b, dtype):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(1.0, float(np.abs(b).max()))
    if dtype == np.float32:
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * scale)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12 * scale)


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pair_loss_matches_equations_and_numpy(window, norm, dtype):
    rng = np.random.default_rng(WINDOWS.index(window))
    rt = RUNTIMES[(WINDOWS.index(window) + NORMS.index(norm)) % 3]
    e, labels = case(rng, dtype)
    ksize, dilation = window
    # alpha, beta near the distances of the l2sq case too, so both branches occur.
    alpha, beta = (0.5, 2.0) if norm != "l2sq" else (2.0, 6.0)
    args = (ksize, dilation, alpha, beta, norm)
    loss0, count0, ge0, codes0 = naive_pairs(e.astype(np.float64), labels, *args, 255)

    loss, count = lp.embedding_pair_loss(rt, e, labels, *args)
    assert loss.shape == () and loss.dtype == dtype
    assert count.shape == () and count.dtype == np.int64 and count == count0  # on the device
    close(loss, loss0, dtype)
    np.testing.assert_array_equal(lp.same_label_pairs(rt, labels, ksize, dilation), codes0)

    gloss = np.array(0.7, dtype=dtype)
    ge = lp.embedding_pair_loss_backward(rt, e, labels, gloss, *args)
    assert ge.dtype == dtype and np.isfinite(ge).all()
    close(ge, 0.7 * ge0, dtype)

    loss_n, count_n = NUMPY.embedding_pair_loss(e, labels, *args)
    assert count_n == count
    close(loss, loss_n, dtype)
    close(ge, NUMPY.embedding_pair_loss_backward(e, labels, gloss, *args), dtype)
    np.testing.assert_array_equal(lp.same_label_pairs(rt, labels, ksize, dilation),
                                  NUMPY.same_label_pairs(labels, ksize, dilation))


def test_label_dtypes_ignore_index_and_layouts():
    """int64 labels with ignore_index -1, a Python-float gloss, non-contiguous arrays."""
    rng = np.random.default_rng(7)
    rt = RUNTIMES[0]
    e, labels = case(rng, np.float64)
    lab = labels.astype(np.int64)
    lab[lab == 255] = -1
    kw = dict(ksize=3, dilation=2, norm="l2", ignore_index=-1)
    loss0, count0, ge0, codes0 = naive_pairs(e, lab, 3, 2, 0.5, 2.0, "l2", -1)
    e_t = np.ascontiguousarray(e.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    lab_t = np.asfortranarray(lab)
    assert not e_t.flags.c_contiguous and not lab_t.flags.c_contiguous
    loss, count = lp.embedding_pair_loss(rt, e_t, lab_t, **kw)
    assert count == count0
    close(loss, loss0, np.float64)
    close(lp.embedding_pair_loss_backward(rt, e_t, lab_t, 1.5, **kw), 1.5 * ge0, np.float64)
    np.testing.assert_array_equal(
        lp.same_label_pairs(rt, lab_t, 3, 2, ignore_index=-1), codes0)


def test_no_counted_pair_gives_zero():
    rt = RUNTIMES[1]
    e = np.random.default_rng(8).standard_normal((1, 2, 4, 5))
    labels = np.full((1, 4, 5), 255, np.uint8)
    labels[0, 0, 0] = 1  # one labelled pixel has no labelled neighbour
    loss, count = lp.embedding_pair_loss(rt, e, labels)
    assert count == 0 and float(loss) == 0.0
    assert not lp.embedding_pair_loss_backward(rt, e, labels, 1.0).any()


def test_separated_embeddings_have_zero_loss():
    """Eq. 1 is 0 when same-label embeddings coincide and different labels are >= beta apart."""
    labels = np.zeros((1, 5, 6), np.int32)
    labels[0, :, 3:] = 1
    e = np.zeros((1, 2, 5, 6))
    e[0, 0] = 2.5 * labels[0]
    loss, count = lp.embedding_pair_loss(RUNTIMES[0], e, labels)
    assert count > 0 and float(loss) == 0.0


def test_bad_inputs_raise_errors_naming_the_function():
    rt = RUNTIMES[0]
    e = np.zeros((1, 2, 4, 5))
    labels = np.zeros((1, 4, 5), np.int32)
    with pytest.raises(ValueError, match=r"embedding_pair_loss: labels must be \(N, H, W\)"):
        lp.embedding_pair_loss(rt, e, labels[:, :3])
    with pytest.raises(TypeError, match="same_label_pairs: labels must be an integer array"):
        lp.same_label_pairs(rt, labels.astype(np.float32), 3)
    with pytest.raises(ValueError, match="embedding_pair_loss_backward: ksize must be odd"):
        lp.embedding_pair_loss_backward(rt, e, labels, 1.0, ksize=2)
    with pytest.raises(ValueError, match="same_label_pairs: dilation must be one int"):
        lp.same_label_pairs(rt, labels, 3, (1, 2))
    with pytest.raises(ValueError, match="embedding_pair_loss: norm must be one of"):
        lp.embedding_pair_loss(rt, e, labels, norm="cosine")
    with pytest.raises(TypeError, match="float32 and float64 only; got int32"):
        lp.embedding_pair_loss(rt, e.astype(np.int32), labels)


@pytest.mark.parametrize("norm", NORMS)
def test_embedding_loss_gradient_on_emulator(norm):
    rng = np.random.default_rng(9)
    e, labels = case(rng, np.float64, N=1, D=2, H=5, W=6)
    with using_backend("cuda-emulator"):
        check_grad(lambda e: F.embedding_loss(e, labels, 3, (1, 2), 0.5, 2.0, norm), [e],
                   max_elementwise=60)
        np.testing.assert_allclose(
            F.embedding_loss(e, labels, 3, (1, 2, 5), norm=norm).numpy(),
            _numpy_loss(e, labels, norm), rtol=1e-12)


def _numpy_loss(e, labels, norm):
    with using_backend("numpy"):
        return F.embedding_loss(e, labels, 3, (1, 2, 5), norm=norm).numpy()


class HostRead(np.ndarray):
    """A device count stand-in: reading its value on the host (what would make the
    CPU wait for a GPU) fails the test."""

    def _sync(self, *args):
        raise AssertionError("the pair count was read on the host (a device sync)")
    __bool__ = __int__ = __index__ = __float__ = item = tolist = _sync


def test_pair_count_stays_on_the_device(monkeypatch):
    """embedding_pair_loss returns its count as a 0-d device array, and the loss and its
    gradient use it without reading it back (no int(count), no `if count`)."""
    loss, count = lp.embedding_pair_loss(RUNTIMES[0], *case(np.random.default_rng(7),
                                                            np.float64, 2, 3, 6, 7))
    assert isinstance(count, np.ndarray) and count.shape == () and count.dtype == np.int64
    emu = get_backend("cuda-emulator")
    real = emu.embedding_pair_loss

    def device_count(*args, **kwargs):
        loss, count = real(*args, **kwargs)
        return loss, count.view(HostRead)
    monkeypatch.setattr(emu, "embedding_pair_loss", device_count)
    rng = np.random.default_rng(8)
    e, labels = case(rng, np.float64, 2, 3, 6, 7)
    labels[1] = 255  # image 1 has no counted pair; at dilation 9 no image has one
    e_t = Tensor(e, requires_grad=True)
    with using_backend("cuda-emulator"):
        loss = F.embedding_loss(e_t, labels, 3, (1, 2, 9))
        loss.backward()
    e_n = Tensor(e, requires_grad=True)
    with using_backend("numpy"):
        want = F.embedding_loss(e_n, labels, 3, (1, 2, 9))
        want.backward()
    np.testing.assert_allclose(loss.numpy(), want.numpy(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(e_t.grad), np.asarray(e_n.grad), rtol=1e-12, atol=1e-14)


# ---- on a real GPU -----------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_matches_numpy_and_emulator(dtype):
    cupy = pytest.importorskip("cupy")
    if not cupy.is_available():
        pytest.skip("needs a CUDA device")
    gpu, emu = get_backend("cupy"), get_backend("cuda-emulator")
    rng = np.random.default_rng(10)
    e, labels = case(rng, dtype, N=3, D=8, H=33, W=29)
    e_d, lab_d = cupy.asarray(e), cupy.asarray(labels)
    for ksize, dilation in WINDOWS:
        for norm in NORMS:
            args = (ksize, dilation, 0.5, 2.0, norm)
            loss, count = gpu.embedding_pair_loss(e_d, lab_d, *args)
            ge = gpu.embedding_pair_loss_backward(e_d, lab_d, cupy.asarray(0.3, dtype), *args)
            for ref in (NUMPY, emu):
                loss_r, count_r = ref.embedding_pair_loss(e, labels, *args)
                assert count == count_r
                close(cupy.asnumpy(loss), loss_r, dtype)
                close(cupy.asnumpy(ge),
                      ref.embedding_pair_loss_backward(e, labels, 0.3, *args), dtype)
            again = gpu.embedding_pair_loss(e_d, lab_d, *args)[0]
            assert bool(again == loss)  # fixed-order reduction: bitwise reproducible
            np.testing.assert_array_equal(
                cupy.asnumpy(gpu.same_label_pairs(lab_d, ksize, dilation)),
                NUMPY.same_label_pairs(labels, ksize, dilation))
