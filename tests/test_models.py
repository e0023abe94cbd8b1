"""The models of segnp.models (Sec. 4.1, 5.1, 5.2): the resolution grids they resample
on, output shapes for every switch, float64 gradient checks with every switch on,
loading VGG-16 weights from fake Keras / torchvision files, and errors on bad input."""
import itertools

import h5py
import numpy as np
import pytest

from segnp import functions as F
from segnp import nn
from segnp.autograd import Tensor, no_grad
from segnp.backends import get_backend
from segnp.gradcheck import check_grad
from segnp.models import EmbeddingNet, FlowNetS, SegNet, load_vgg16
from segnp.models.grids import subsample_point, upsample_block, upsample_point
from segnp.random import manual_seed

EMB = {"widths": (3, 4, 4), "embed_dim": 3, "side_dim": 2}
SEG = {"widths": (3, 3, 4, 4), "fc_width": 5, "fc6_dilation": 2, "dropout": 0.0}
SMALL_CRF = {"bilateral_ksize": 3, "bilateral_dilation": 2, "spatial_ksize": 3,
             "iterations": 1}


def images(shape, seed=0, dtype=np.float32):
    return Tensor(np.random.default_rng(seed).normal(size=shape).astype(dtype))


# ---- grids -----------------------------------------------------------------------------
def bilinear_at(a, ys, xs):
    """Naive bilinear sample of a (h, w) at real coordinates, clamped to the map."""
    h, w = a.shape
    out = np.zeros((len(ys), len(xs)))
    for r, y in enumerate(ys):
        for c, x in enumerate(xs):
            y = min(max(y, 0.0), h - 1.0)
            x = min(max(x, 0.0), w - 1.0)
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            ly, lx = y - y0, x - x0
            out[r, c] = ((1 - ly) * (1 - lx) * a[y0, x0] + (1 - ly) * lx * a[y0, x1]
                         + ly * (1 - lx) * a[y1, x0] + ly * lx * a[y1, x1])
    return out


@pytest.mark.parametrize("H, W, s", [(16, 16, 4), (13, 10, 4), (9, 17, 2), (7, 5, 8),
                                     (8, 3, 8)])
def test_upsample_point_samples_at_y_over_s(H, W, s):
    h, w = -(-H // s), -(-W // s)
    a = np.random.default_rng(1).normal(size=(2, 3, h, w))
    got = upsample_point(Tensor(a), s, (H, W)).data
    for n, c in itertools.product(range(2), range(3)):
        want = bilinear_at(a[n, c], np.arange(H) / s, np.arange(W) / s)
        np.testing.assert_allclose(got[n, c], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[:, :, ::s, ::s], a)


@pytest.mark.parametrize("H, W, s", [(16, 16, 4), (13, 10, 4), (9, 17, 2), (7, 5, 8)])
def test_upsample_block_samples_at_block_centres(H, W, s):
    h, w = -(-H // s), -(-W // s)
    a = np.random.default_rng(2).normal(size=(1, 2, h, w))
    got = upsample_block(Tensor(a), s, (H, W)).data
    for c in range(2):
        want = bilinear_at(a[0, c], (np.arange(H) - (s - 1) / 2) / s,
                           (np.arange(W) - (s - 1) / 2) / s)
        np.testing.assert_allclose(got[0, c], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("H", [12, 11])
def test_grids_undo_strided_layers_without_shift(H):
    """A ramp through a padded stride-2 window (point grid) or a 2x2 pool (block grid)
    comes back as the same ramp: no half-pixel or (s-1)/2 shift."""
    yy, xx = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(H, dtype=np.float64),
                         indexing="ij")
    ramp = Tensor((2.0 * yy - 3.0 * xx + 1.0)[None, None])
    box = Tensor(np.full((1, 1, 3, 3), 1 / 9))
    # two padded stride-2 box filters: samples on input pixels 4i (stride 4)
    coarse = F.conv2d(F.conv2d(ramp, box, stride=2, padding=1), box, stride=2, padding=1)
    back = upsample_point(coarse, 4, (H, H)).data
    inner = slice(4, 4 * ((H - 1) // 4 - 1) + 1)  # away from the zero padding
    np.testing.assert_allclose(back[0, 0, inner, inner], ramp.data[0, 0, inner, inner],
                               atol=1e-12)
    np.testing.assert_allclose(subsample_point(ramp, 4).data[0, 0, 1:-1, 1:-1],
                               coarse.data[0, 0, 1:-1, 1:-1], atol=1e-12)
    pooled = F.avg_pool2d(F.avg_pool2d(ramp, 2, ceil_mode=True), 2, ceil_mode=True)
    back = upsample_block(pooled, 4, (H, H)).data
    n = 4 * (H // 4)  # complete blocks only (a partial block averages fewer pixels)
    np.testing.assert_allclose(back[0, 0, 2:n - 2, 2:n - 2], ramp.data[0, 0, 2:n - 2, 2:n - 2],
                               atol=1e-12)


def test_grids_gradients():
    a = np.random.default_rng(3).normal(size=(1, 2, 3, 2))
    check_grad(lambda t: upsample_point(t, 4, (10, 5)), [a])
    check_grad(lambda t: upsample_block(t, 2, (5, 4)), [a])
    check_grad(lambda t: subsample_point(t, 2), [np.ones((1, 1, 5, 3)) * a.sum()])


def test_grids_reject_maps_that_do_not_cover_the_size():
    with pytest.raises(ValueError, match=r"upsample_point: .*\(3, 2\).*stride 4.*\(17, 5\)"):
        upsample_point(Tensor(np.zeros((1, 1, 3, 2))), 4, (17, 5))
    with pytest.raises(ValueError, match="upsample_block"):
        upsample_block(Tensor(np.zeros((1, 1, 3, 2))), 2, (4, 4))


# ---- EmbeddingNet ----------------------------------------------------------------------
@pytest.mark.parametrize("H, W", [(16, 12), (13, 7), (1, 5)])
def test_embedding_net_shapes_and_wiring(H, W):
    manual_seed(0)
    net = EmbeddingNet(**EMB)
    x = images((2, 3, H, W))
    e, sides = net(x)
    assert e.shape == (2, 3, H, W) and e.dtype == np.float32
    assert [s.shape for s in sides] == [(2, 2, H, W), (2, 2, -(-H // 2), -(-W // 2)),
                                        (2, 2, -(-H // 4), -(-W // 4))]
    # the final embedding is the 1x1 fuse of the upsampled side outputs and the RGB input
    cat = np.concatenate([sides[0].data, upsample_block(sides[1], 2, (H, W)).data,
                          upsample_block(sides[2], 4, (H, W)).data, x.data], axis=1)
    want = np.einsum("dk,nkhw->ndhw", net.fuse.weight.data[:, :, 0, 0], cat) \
        + net.fuse.bias.data[:, None, None]
    np.testing.assert_allclose(e.data, want, rtol=1e-5, atol=1e-5)
    assert [m.weight.shape[:2] for m in net.vgg_layers()] == [
        (3, 3), (3, 3), (4, 3), (4, 4), (4, 4), (4, 4), (4, 4)]


def test_embedding_net_defaults_follow_the_paper():
    net = EmbeddingNet()
    assert net.fuse.out_channels == 64                      # D = 64 (Sec. 4.1)
    assert net.fuse.in_channels == 3 * net.side1.out_channels + 3   # RGB concatenated
    assert len(net.vgg_layers()) == 7
    assert net.vgg_layers()[0].kernel_size == (3, 3)


def test_embedding_net_gradients():
    manual_seed(1)
    net = EmbeddingNet(**EMB).double()
    x = np.random.default_rng(4).normal(size=(1, 3, 6, 5))
    check_grad(lambda t: net(t)[0], [x], name="EmbeddingNet wrt x")
    check_with_params(net, ["conv1_1.weight", "conv3_3.bias", "side2.weight", "fuse.weight"],
                      lambda t: (lambda out: (out[0], *out[1]))(net(t)), x)


def check_with_params(model, names, fn, x, eps=1e-4):
    """check_grad of fn(x) with respect to x and the named parameters: the Tensors that
    check_grad passes in stand in for the parameters during each call.

    eps = 1e-4: whole networks give scores in the hundreds, and the rounding error of
    the finite difference, ~1e-16 |L| / eps, would reach the tolerance at 1e-6."""
    def run(xt, *ps):
        saved = []
        for name, p in zip(names, ps):
            mod = model
            for part in name.split(".")[:-1]:
                mod = mod[int(part)] if part.isdigit() else getattr(mod, part)
            leaf = name.split(".")[-1]
            saved.append((mod, leaf, mod._parameters[leaf]))
            mod._parameters[leaf] = p
        try:
            return fn(xt)
        finally:
            for mod, leaf, p in saved:
                mod._parameters[leaf] = p
    params = dict(model.named_parameters())
    inputs = [x] + [get_backend().to_numpy(params[n].data) for n in names]
    check_grad(run, inputs, eps=eps,
               name=f"{type(model).__name__} wrt x, {', '.join(names)}")


# ---- SegNet ----------------------------------------------------------------------------
SWITCHES = list(itertools.product(("none", "fc6", "all"), (None, (1, 3), (2, 5)),
                                  (False, True)))


@pytest.mark.parametrize("segaware, bf, crf", SWITCHES)
def test_segnet_shapes_for_every_switch(segaware, bf, crf):
    manual_seed(2)
    net = SegNet(4, segaware=segaware, bf=bf, crf=crf, crf_kwargs=SMALL_CRF,
                 embedder=EmbeddingNet(**EMB), **SEG)
    x = images((2, 3, 13, 10))
    y = net(x)
    assert y.shape == (2, 4, 13, 10) and y.dtype == np.float32
    aware = [name for name, m in net.named_modules()
             if isinstance(m, nn.SegAwareConv2d)]
    want = {"none": [], "fc6": ["fc6"],
            "all": [f"body.{i}" for i in range(8)] + ["fc6"]}[segaware]
    assert aware == want
    assert all(float(m.lam.data) == 0.0 for m in net.modules()
               if isinstance(m, nn.SegAwareConv2d))
    assert (net.bf is None) == (bf is None)
    if bf is not None:
        assert (net.bf.repeat, net.bf.ksize) == bf
    assert (net.crf is None) == (not crf)
    assert net.needs_embeddings == (segaware != "none" or bf is not None or crf)
    # explicit embeddings give what the embedder's would
    if net.needs_embeddings:
        with no_grad():
            e, _ = net.embedder(x)
            np.testing.assert_array_equal(net(x, e).data, net(x).data)


def test_segnet_output_stride_is_8():
    """The scores at pixels (8i, 8j) are the FC8 map itself: a map at stride 8 on the
    point grid, upsampled without a shift."""
    manual_seed(3)
    net = SegNet(3, **SEG).eval()
    x = images((1, 3, 20, 17))
    seen = {}
    fc8 = net.fc8.forward

    def spy(h):
        seen["fc8"] = fc8(h)
        return seen["fc8"]
    net.fc8.forward = spy
    with no_grad():
        y = net(x).data
    assert seen["fc8"].shape == (1, 3, 3, 3)
    np.testing.assert_allclose(y[:, :, ::8, ::8], seen["fc8"].data, rtol=1e-6, atol=1e-6)


def test_segnet_gradients_with_every_switch_on():
    manual_seed(4)
    net = SegNet(3, segaware="all", bf=(2, 3), crf=True, crf_kwargs=SMALL_CRF,
                 embedder=EmbeddingNet(**EMB), **SEG).double().eval()
    for m in net.modules():   # lam = 0 would hide the embedding path from the check
        if isinstance(m, (nn.SegAwareConv2d, nn.BilateralFilter)):
            m.lam.data[...] = 0.7
    x = np.random.default_rng(5).normal(size=(1, 3, 7, 6))
    check_with_params(net, ["body.0.weight", "fc6.lam", "bf.lam", "crf.compat",
                            "embedder.fuse.weight"], net, x)


# ---- FlowNetS --------------------------------------------------------------------------
@pytest.mark.parametrize("segaware", [False, True])
@pytest.mark.parametrize("H, W", [(16, 16), (19, 13)])
def test_flownet_shapes(segaware, H, W):
    manual_seed(5)
    net = FlowNetS(widths=(4, 4, 6, 6), segaware=segaware, bf_ksize=5,
                   embedder=EmbeddingNet(**EMB) if segaware else None)
    flow, scales = net(images((2, 6, H, W)))
    assert flow.shape == (2, 2, H, W)
    assert [s.shape for s in scales] == [(2, 2, -(-H // k), -(-W // k)) for k in (16, 8, 4)]
    assert isinstance(net.predict2, nn.SegAwareConv2d) == segaware
    assert (net.bf is not None) == segaware
    if segaware:
        assert float(net.predict2.lam.data) == 0.0 and net.bf.ksize == 5
        assert FlowNetS(segaware=True).bf.ksize == 9   # the paper's 9x9 (Sec. 5.2)


def test_flownet_bf_repeat_filters_the_flow_that_many_times():
    manual_seed(8)
    net = FlowNetS(widths=(4, 4, 6, 6), segaware=True, bf_ksize=5, bf_repeat=3,
                   bf_lam_init=1.5, embedder=EmbeddingNet(**EMB))
    assert net.bf.repeat == 3
    x = images((2, 6, 12, 12))
    with no_grad():
        e, _ = net.embedder(x[:, :3])
        got = net(x, e)[0].data
        bf, net.bf = net.bf, None
        raw = net(x, e)[0]
        net.bf = bf
        ref = F.segaware_bilateral(raw, e, 1.5, ksize=5, repeat=3).data
        once = F.segaware_bilateral(raw, e, 1.5, ksize=5, repeat=1).data
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    assert not np.allclose(got, once)


def test_flownet_embeddings_come_from_frame_1():
    manual_seed(6)
    net = FlowNetS(widths=(4, 4, 6, 6), segaware=True, embedder=EmbeddingNet(**EMB))
    net.bf.lam.data[...] = 2.0
    x = images((1, 6, 12, 12))
    with no_grad():
        e, _ = net.embedder(x[:, :3])
        np.testing.assert_array_equal(net(x, e)[0].data, net(x)[0].data)
        other = Tensor(np.random.default_rng(9).normal(size=e.shape).astype(np.float32))
        assert not np.allclose(net(x, other)[0].data, net(x)[0].data)


def test_flownet_gradients_segaware():
    manual_seed(7)
    net = FlowNetS(widths=(2, 2, 4, 4), segaware=True, bf_ksize=3,
                   embedder=EmbeddingNet(**EMB)).double()
    net.predict2.lam.data[...] = 0.5
    x = np.random.default_rng(6).normal(size=(1, 6, 9, 8))
    check_with_params(net, ["conv1.weight", "predict4.bias", "predict2.lam", "bf.lam",
                            "embedder.conv1_1.weight"],
                      lambda t: (lambda out: (out[0], *out[1]))(net(t)), x)


# ---- load_vgg16 ------------------------------------------------------------------------
KERAS = ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1",
         "block3_conv2", "block3_conv3")
TORCH = (0, 2, 5, 7, 10, 12, 14)


def fake_vgg(widths=(3, 4, 4), seed=0):
    """Seven (kernel (KH, KW, C, F), bias (F,)) in Keras' layout."""
    rng = np.random.default_rng(seed)
    cins = (3, widths[0], widths[0], widths[1], widths[1], widths[2], widths[2])
    couts = (widths[0], widths[0], widths[1], widths[1], widths[2], widths[2], widths[2])
    return [(rng.normal(size=(3, 3, c, f)).astype(np.float32),
             rng.normal(size=f).astype(np.float32)) for c, f in zip(cins, couts)]


def write_keras(path, layers, layout):
    with h5py.File(path, "w") as f:
        root = f
        if layout == "model":     # Model.save(): weights under model_weights/
            root = f.create_group("model_weights")
        if layout == "keras3":    # Keras 3 .weights.h5: layers/<name>/vars/0, 1
            root = f.create_group("layers")
        root.attrs["layer_names"] = [b"input_1"] + [n.encode() for n in KERAS]
        root.create_group("input_1")
        for name, (k, b) in zip(KERAS, layers):
            g = root.create_group(name)
            if layout == "keras3":
                g.create_dataset("vars/0", data=k)
                g.create_dataset("vars/1", data=b)
            elif layout == "keras1":
                g.attrs["weight_names"] = [f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()]
                g.create_dataset(f"{name}_W_1:0", data=k)
                g.create_dataset(f"{name}_b_1:0", data=b)
            else:
                g.attrs["weight_names"] = [f"{name}/kernel:0".encode(),
                                           f"{name}/bias:0".encode()]
                g.create_dataset(f"{name}/bias:0", data=b)   # bias first: order must not matter
                g.create_dataset(f"{name}/kernel:0", data=k)


def keras_conv(x, kernel, bias):
    """Keras' Conv2D ('same', stride 1) on one NHWC image, as a loop."""
    H, W, _ = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((H, W, kernel.shape[3]))
    for r, c in itertools.product(range(H), range(W)):
        out[r, c] = np.einsum("ijc,ijcf->f", xp[r:r + 3, c:c + 3], kernel) + bias
    return out


@pytest.mark.parametrize("layout", ["keras2", "keras1", "model", "keras3"])
def test_load_vgg16_keras(tmp_path, layout):
    layers = fake_vgg()
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_keras(path, layers, layout)
    bgr = load_vgg16(path, EmbeddingNet(**EMB), rgb=False)
    rgb = EmbeddingNet(**EMB).load_vgg16(path)
    for k, (kernel, bias) in enumerate(layers):
        w = bgr.vgg_layers()[k].weight.data
        for f, c, i, j in itertools.product(range(w.shape[0]), range(w.shape[1]), range(3),
                                            range(3)):
            assert w[f, c, i, j] == kernel[i, j, c, f]
        np.testing.assert_array_equal(bgr.vgg_layers()[k].bias.data, bias)
        flip = (slice(None), slice(None, None, -1)) if k == 0 else (slice(None),)
        np.testing.assert_array_equal(rgb.vgg_layers()[k].weight.data, w[flip])
    # the loaded conv1_1 computes what Keras' layer does (BGR file, RGB model input)
    x = np.random.default_rng(7).normal(size=(5, 4, 3))
    want = keras_conv(x[:, :, ::-1], *layers[0])
    got = F.conv2d(Tensor(x.transpose(2, 0, 1)[None]), Tensor(rgb.conv1_1.weight.data
                                                              .astype(np.float64)),
                   Tensor(rgb.conv1_1.bias.data.astype(np.float64)), padding=1).data
    np.testing.assert_allclose(got[0].transpose(1, 2, 0), want, rtol=1e-5, atol=1e-5)


def test_load_vgg16_torchvision_npz(tmp_path):
    layers = fake_vgg(seed=1)
    path = tmp_path / "vgg16_features.npz"
    arrays = {}
    for i, (k, b) in zip(TORCH, layers):
        arrays[f"features.{i}.weight"] = k.transpose(3, 2, 0, 1)
        arrays[f"features.{i}.bias"] = b
    arrays["features.17.weight"] = np.zeros((5, 4, 3, 3), np.float32)  # conv4_1: ignored
    np.savez(path, **arrays)
    net = load_vgg16(path, EmbeddingNet(**EMB))
    for k, i in enumerate(TORCH):
        np.testing.assert_array_equal(net.vgg_layers()[k].weight.data,
                                      arrays[f"features.{i}.weight"])
        np.testing.assert_array_equal(net.vgg_layers()[k].bias.data,
                                      arrays[f"features.{i}.bias"])
    bgr = load_vgg16(path, rgb=False)   # arrays only, conv1_1 reordered for BGR input
    assert len(bgr) == 7
    np.testing.assert_array_equal(bgr[0][0], arrays["features.0.weight"][:, ::-1])
    np.testing.assert_array_equal(bgr[3][0], arrays["features.7.weight"])


def test_load_vgg16_errors_leave_the_model_unchanged(tmp_path):
    path = tmp_path / "v.h5"
    write_keras(path, fake_vgg(widths=(3, 4, 5)), "keras2")
    net = EmbeddingNet(**EMB)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"load_vgg16: layer block3_conv1 .*\(5, 4, 3, 3\)"
                                         r".*expects \(4, 4, 3, 3\)"):
        load_vgg16(path, net)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_group("block1_conv1")
    with pytest.raises(ValueError, match="load_vgg16: .*block1_conv1.*one 4-d kernel"):
        load_vgg16(tmp_path / "bad.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_group("conv1")
    with pytest.raises(ValueError, match="no group 'block1_conv1'"):
        load_vgg16(tmp_path / "other.h5")
    np.savez(tmp_path / "t.npz", **{"features.0.weight": np.zeros((3, 3, 3, 3))})
    with pytest.raises(ValueError, match="features.0.bias"):
        load_vgg16(tmp_path / "t.npz")
    (tmp_path / "v.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.h5 \(Keras\) or \.npz"):
        load_vgg16(tmp_path / "v.pth")
    with pytest.raises(FileNotFoundError, match="load_vgg16"):
        load_vgg16(tmp_path / "missing.npz")


# ---- bad input ---------------------------------------------------------------------------
def test_models_reject_bad_input():
    emb = EmbeddingNet(**EMB)
    with pytest.raises(ValueError, match=r"EmbeddingNet: x must be \(N, 3, H, W\).*\(1, 4, 8, 8\)"):
        emb(images((1, 4, 8, 8)))
    with pytest.raises(ValueError, match=r"EmbeddingNet: x must be \(N, 3, H, W\)"):
        emb(images((3, 8, 8)))
    with pytest.raises(TypeError, match="EmbeddingNet: x must be a floating"):
        emb(Tensor(np.zeros((1, 3, 8, 8), np.int64)))
    with pytest.raises(TypeError, match="EmbeddingNet: x must have the parameters' dtype"):
        emb(images((1, 3, 8, 8), dtype=np.float64))
    seg = SegNet(3, segaware="fc6", **SEG)
    with pytest.raises(ValueError, match="SegNet.forward: this configuration needs embeddings"):
        seg(images((1, 3, 8, 8)))
    with pytest.raises(ValueError, match=r"SegNet: embeddings e must be .*\(1, 8, 8\).*"
                                         r"\(1, 3, 8, 6\)"):
        seg(images((1, 3, 8, 8)), images((1, 3, 8, 6)))
    with pytest.raises(ValueError, match=r"SegNet: x must be \(N, 3, H, W\)"):
        seg(images((1, 6, 8, 8)), images((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="SegNet: segaware must be one of"):
        SegNet(3, segaware="fc7")
    with pytest.raises(ValueError, match="SegNet: bf must be None or"):
        SegNet(3, bf=(0, 9))
    with pytest.raises(ValueError, match="SegNet: bf must be None or"):
        SegNet(3, bf=9)
    with pytest.raises(ValueError, match="SegNet: bf must be None or"):
        SegNet(3, bf=("x", 9))
    with pytest.raises(ValueError, match="BilateralFilter: ksize must be an odd"):
        SegNet(3, bf=(1, 4))
    with pytest.raises(ValueError, match="SegNet: widths must be 4 positive ints"):
        SegNet(3, widths=(4, 4, 4))
    with pytest.raises(ValueError, match="SegNet: num_classes must be a positive int"):
        SegNet(0)
    with pytest.raises(ValueError, match="EmbeddingNet: widths must be 3 positive ints"):
        EmbeddingNet(widths=(4, 0, 4))
    flow = FlowNetS(widths=(4, 4, 6, 6), segaware=True)
    with pytest.raises(ValueError, match=r"FlowNetS: x must be \(N, 6, H, W\)"):
        flow(images((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="FlowNetS.forward: segaware=True needs embeddings"):
        flow(images((1, 6, 8, 8)))
    with pytest.raises(ValueError, match=r"FlowNetS: widths\[1\] and widths\[2\]"):
        FlowNetS(widths=(4, 1, 4, 4))
    with pytest.raises(ValueError, match="FlowNetS: in_channels must be even"):
        FlowNetS(in_channels=5)
