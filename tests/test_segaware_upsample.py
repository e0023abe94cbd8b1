"""nn.SegAwareUpsample (issue 22): bilinear upsampling at lam = 0 on both grids, an edge
kept at lam > 0, float64 gradients; FlowNetS's ``upsample`` switch; and the NumPy
transposed kernel's results on one and two threads."""
import numpy as np
import pytest

import segnp.functions as F
from segnp import check_grad, nn
from segnp.backends.numpy import masked_conv_transpose as npk
from segnp.backends.numpy import threads
from segnp.models import FlowNetS
from segnp.models.grids import upsample_point
from segnp.window import Window, tap_valid


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 8])
def test_lam_zero_is_bilinear(backend, factor):
    rng = np.random.default_rng(factor)
    x = rng.standard_normal((2, 2, 3, 4))
    e = rng.standard_normal((2, 3, 3 * factor, 4 * factor))
    block = nn.SegAwareUpsample(factor, "block", lam_init=0.0, dtype=np.float64)
    np.testing.assert_allclose(block(x, e).numpy(),
                               F.resize_bilinear(x, (3 * factor, 4 * factor)).numpy(),
                               rtol=1e-12, atol=1e-12)
    point = nn.SegAwareUpsample(factor, "point", lam_init=0.0, dtype=np.float64)
    for H, W in ((2 * factor + 1, 3 * factor + 1), (3 * factor, 4 * factor)):
        x = rng.standard_normal((2, 2, -(-H // factor), -(-W // factor)))
        e = rng.standard_normal((2, 3, H, W))
        np.testing.assert_allclose(point(x, e).numpy(), upsample_point(x, factor, (H, W)).numpy(),
                                   rtol=1e-12, atol=1e-12)


def test_an_embedding_edge_stops_the_interpolation():
    """Two regions whose boundary falls between samples: bilinear blurs it, the masked
    upsampling keeps each side's value."""
    lo = np.zeros((1, 1, 4, 4))
    lo[..., 2:] = 4.0
    e = np.zeros((1, 1, 16, 16))
    e[..., 8:] = 20.0
    up = nn.SegAwareUpsample(4, "block", lam_init=1.0, dtype=np.float64)
    y = up(lo, e).numpy()
    np.testing.assert_allclose(y[..., :8], 0.0, atol=1e-6)
    np.testing.assert_allclose(y[..., 8:], 4.0, atol=1e-5)
    assert F.resize_bilinear(lo, (16, 16)).numpy()[0, 0, 0, 7] > 1.0


@pytest.mark.parametrize("grid", ["block", "point"])
def test_gradients(backend, grid):
    rng = np.random.default_rng(7)
    x, e = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((2, 2, 6, 6))
    up = nn.SegAwareUpsample(2, grid, lam_init=0.7, dtype=np.float64)
    check_grad(lambda x, e: up(x, e), [x, e])
    y = up(x, e)
    (y * rng.standard_normal(y.shape)).sum().backward()
    assert up.lam.grad is not None and np.isfinite(up.lam.grad)


def test_errors():
    with pytest.raises(ValueError, match="factor must be an int >= 1"):
        nn.SegAwareUpsample(0)
    with pytest.raises(ValueError, match="grid must be"):
        nn.SegAwareUpsample(2, "corner")
    up = nn.SegAwareUpsample(4, "block")
    with pytest.raises(ValueError, match=r"does not upsample to 15 pixels on the block grid"):
        up(np.zeros((1, 2, 4, 4), np.float32), np.zeros((1, 1, 15, 16), np.float32))


@pytest.mark.parametrize("upsample", ["segaware", "segaware+decoder"])
def test_flownet_upsample_switch_starts_at_the_bilinear_network(upsample):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 30, 36)).astype(np.float32)
    e = rng.standard_normal((2, 4, 30, 36)).astype(np.float32)
    plain = FlowNetS(segaware=True)
    aware = FlowNetS(segaware=True, upsample=upsample)
    aware.load_state_dict(plain.state_dict(), strict=False)
    np.testing.assert_allclose(aware(x, e)[0].numpy(), plain(x, e)[0].numpy(), atol=1e-5)
    lams = [n for n, _ in aware.named_parameters() if n.startswith("up_")]
    assert lams == (["up_flow.lam"] if upsample == "segaware" else
                    ["up_flow4.lam", "up_flow3.lam", "up_flow.lam"])
    aware.up_flow.lam.data[...] = 3.0
    flow, _ = aware(x, e)
    assert not np.allclose(flow.numpy(), plain(x, e)[0].numpy(), atol=1e-3)
    flow.sum().backward()
    assert aware.up_flow.lam.grad is not None


def test_flownet_upsample_errors():
    with pytest.raises(ValueError, match="upsample must be one of"):
        FlowNetS(upsample="nearest")
    net = FlowNetS(upsample="segaware")
    with pytest.raises(ValueError, match="upsample=.segaware. needs embeddings"):
        net(np.zeros((1, 6, 16, 16), np.float32))


def test_flownet_aware_decoder_starts_at_the_plain_network():
    """aware_decoder makes those decoder convolutions segmentation-aware, unnormalised:
    at lam = 0 the network equals the plain one, also on the 1/8 maps' borders; the
    layers are listed with their strides, before the prediction layer, and a lam > 0
    changes the flow and gets a gradient."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 30, 36)).astype(np.float32)
    e = rng.standard_normal((2, 4, 30, 36)).astype(np.float32)
    plain = FlowNetS(segaware=True)
    aware = FlowNetS(segaware=True, aware_decoder=["up2", "predict3", "up3"])
    aware.load_state_dict(plain.state_dict(), strict=False)
    np.testing.assert_allclose(aware(x, e)[0].numpy(), plain(x, e)[0].numpy(), atol=1e-5)
    assert [(n, s) for n, _, s in aware.segaware_layers()] == [
        ("up3", 8), ("predict3", 8), ("up2", 4), ("predict2", 4)]
    aware.predict3.lam.data[...] = 3.0
    flow, scales = aware(x, e)
    assert not np.allclose(scales[1].numpy(), plain(x, e)[1][1].numpy(), atol=1e-3)
    flow.sum().backward()
    assert aware.predict3.lam.grad is not None and aware.up3.lam.grad is not None
    with pytest.raises(ValueError, match=r"aware_decoder must name layers of .*'up4'"):
        FlowNetS(segaware=True, aware_decoder=["up4"])
    with pytest.raises(ValueError, match=r"aware_decoder .*segaware=True.*segaware=False"):
        FlowNetS(aware_decoder=["up3"])


def test_numpy_kernel_does_not_depend_on_the_threads(spread):
    """Pieces of images fixed by the shapes: the same bits on two threads as on one."""
    rng = np.random.default_rng(1)
    win = Window.transposed("test", 6, 5, 5, 2, 2, 1, 1)
    x = rng.standard_normal((9, 3, 6, 5)).astype(np.float32)
    valid = tap_valid(win.H, win.W, win.ksize, win.stride, win.padding, win.dilation)
    m = (rng.uniform(0.1, 1, (9, 25, 6, 5)) * valid).astype(np.float32)
    W = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
    gy = rng.standard_normal((9, 4, win.H, win.W)).astype(np.float32)
    two = [npk.masked_conv_transpose(x, m, W, win)]
    two += npk.masked_conv_transpose_backward(x, m, W, gy, win)
    assert len(npk._pieces(x, 4)) > 2 and 1 in spread.calls
    with threads.serial():
        one = [npk.masked_conv_transpose(x, m, W, win)]
        one += npk.masked_conv_transpose_backward(x, m, W, gy, win)
    for a, b in zip(two, one):
        np.testing.assert_array_equal(a, b)
