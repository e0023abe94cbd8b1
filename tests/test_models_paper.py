"""The paper's own networks (Sec. 5.1, 5.2): DeepLab-LargeFOV on VGG-16, the full
FlowNetSimple and the VGG-16-wide embedding network.  Their layout and parameter counts
at the paper's widths, shapes and float64 gradient checks at small widths and inputs
with every switch on, VGG-16 loading from files in each layout, and a few training
steps at the paper's widths on small FlyingShapes inputs."""
import argparse

import h5py
import numpy as np
import pytest

from segnp import nn, optim
from segnp.autograd import Tensor, no_grad
from segnp.data.flyingshapes import render_scene
from segnp.experiments import load_run, load_split, run_segmentation
from segnp.experiments.paper import PAPER_CROPS, add_arch_args
from segnp.experiments.tasks import build_model, flow_step, segmentation_step
from segnp.models import (DeepLabLargeFOV, EmbeddingNet, FlowNetSimple, deeplab_largefov,
                          embedding_vgg16, flownet_simple)
from segnp.random import manual_seed
from test_models import EMB, SMALL_CRF, check_with_params

TINY_DEEPLAB = {"widths": (2, 3, 3, 4, 4), "fc_width": 5, "fc6_dilation": 3}
TINY_FLOWNET = {"widths": (2, 3, 3, 4, 4, 5)}
VGG_NAMES = [f"block{b}_conv{i}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3))
             for i in range(1, n + 1)]
TORCH_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def images(shape, seed=0, dtype=np.float32):
    return Tensor(np.random.default_rng(seed).normal(size=shape).astype(dtype))


def n_params(net):
    return sum(p.size for p in net.parameters())


# ---- layout at the paper's widths ------------------------------------------------------
# Built once: 20.5 M and 38.7 M parameters take seconds to draw.
@pytest.fixture(scope="module")
def paper_deeplab():
    manual_seed(0)
    return deeplab_largefov(21)


@pytest.fixture(scope="module")
def paper_flownet():
    manual_seed(0)
    return flownet_simple()


def test_deeplab_largefov_layout_and_parameter_count(paper_deeplab):
    net = paper_deeplab
    # 14,714,688 in VGG-16's convolutions; fc6 512*9*1024 + 1024; fc7 1024^2 + 1024;
    # fc8 1024*21 + 21: 20.5 M, as published
    assert n_params(net) == 14_714_688 + 4_719_616 + 1_049_600 + 21_525 == 20_505_429
    convs = net.vgg_layers()
    assert [m.out_channels for m in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    assert [m.dilation for m in convs] == [(1, 1)] * 10 + [(2, 2)] * 3
    assert all(m.kernel_size == (3, 3) and m.padding == m.dilation for m in convs)
    assert (net.fc6.out_channels, net.fc6.kernel_size, net.fc6.dilation) == \
        (1024, (3, 3), (12, 12))
    assert (net.fc7.out_channels, net.fc7.kernel_size) == (1024, (1, 1))
    assert net.fc8.out_channels == 21 and net.dropout == 0.5
    assert net.embedder is None and net.bf is None and net.crf is None


def test_flownet_simple_layout_and_parameter_count(paper_flownet):
    net = paper_flownet
    # as the released FlowNetS (deconvolutions with biases, flow upsampling without)
    assert n_params(net) == 38_676_506
    kernels = [net.conv1, net.conv2, net.conv3, net.conv3_1, net.conv4, net.conv4_1,
               net.conv5, net.conv5_1, net.conv6, net.conv6_1]
    assert [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in kernels] == [
        (64, 7, 2), (128, 5, 2), (256, 5, 2), (256, 3, 1), (512, 3, 2), (512, 3, 1),
        (512, 3, 2), (512, 3, 1), (1024, 3, 2), (1024, 3, 1)]
    assert [(m.in_channels, m.out_channels) for m in net.deconv] == [
        (1024, 512), (1026, 256), (770, 128), (386, 64)]
    assert all(m.kernel_size == (4, 4) and m.stride == (2, 2) for m in net.deconv)
    assert net.predict_flow2.in_channels == 194 and net.embedder is None
    sa = FlowNetSimple(widths=(2, 2, 2, 2, 2, 2), segaware=True)
    assert isinstance(sa.predict_flow2, nn.SegAwareConv2d) and sa.bf.ksize == 9


def test_embedding_vgg16_widths():
    net = embedding_vgg16()
    assert [m.out_channels for m in net.vgg_layers()] == [64, 64, 128, 128, 256, 256, 256]
    assert net.embed_dim == 64 and net.side1.out_channels == 64
    assert embedding_vgg16(embed_dim=8, widths=(2, 2, 2)).fuse.out_channels == 8


def test_builders_add_the_embedder_only_when_a_switch_needs_it():
    net = deeplab_largefov(3, bf=(1, 3), **TINY_DEEPLAB)
    assert isinstance(net.embedder, EmbeddingNet) and net.embedder.embed_dim == 64
    assert deeplab_largefov(3, bf=(1, 3), embedder=None, **TINY_DEEPLAB).embedder is None
    assert flownet_simple(**TINY_FLOWNET).embedder is None
    assert flownet_simple(segaware=True, **TINY_FLOWNET).embedder.widths == (64, 128, 256)
    with pytest.raises(ValueError, match="deeplab_largefov: embedder must be 'auto', None"):
        deeplab_largefov(3, embedder="vgg", **TINY_DEEPLAB)


# ---- shapes and gradients at small widths ---------------------------------------------
@pytest.mark.parametrize("segaware, bf, crf", [("none", None, False), ("fc6", (1, 3), False),
                                               ("all", (2, 3), True)])
def test_deeplab_shapes_and_output_stride(segaware, bf, crf):
    manual_seed(1)
    net = DeepLabLargeFOV(4, segaware=segaware, bf=bf, crf=crf, crf_kwargs=SMALL_CRF,
                          embedder=EmbeddingNet(**EMB), **TINY_DEEPLAB).eval()
    x = images((2, 3, 37, 30))
    seen = {}
    fc8 = net.fc8.forward
    net.fc8.forward = lambda h: seen.setdefault("fc8", fc8(h))
    with no_grad():
        y = net(x)
    assert y.shape == (2, 4, 37, 30)
    assert seen["fc8"].shape == (2, 4, 5, 4)          # ceil(37 / 8), ceil(30 / 8)
    if bf is None and not crf:   # scores at pixels (8i, 8j) are FC8's on the point grid
        np.testing.assert_allclose(y.data[:, :, ::8, ::8], seen["fc8"].data, rtol=1e-6)
    aware = [n for n, m in net.named_modules() if isinstance(m, nn.SegAwareConv2d)
             and not n.startswith("embedder")]
    want = {"none": [], "fc6": ["fc6"],
            "all": [f"features.{i}" for i in range(13)] + ["fc6"]}[segaware]
    assert aware == want


def test_deeplab_gradients_with_every_switch_on():
    # The squared L2 distance is smooth; with L1 (tested with SegNet at fewer pixels),
    # among 32x32 pixels some pair's embeddings lie within the finite difference of the
    # kink at equal values.
    manual_seed(2)
    net = DeepLabLargeFOV(3, segaware="all", bf=(2, 3), crf=True, norm="l2sq",
                          crf_kwargs=dict(SMALL_CRF, norm="l2sq"),
                          embedder=EmbeddingNet(**EMB), dropout=0.0,
                          **TINY_DEEPLAB).double()
    for m in net.modules():   # lam = 0 would hide the embedding path from the check
        if isinstance(m, (nn.SegAwareConv2d, nn.BilateralFilter)):
            m.lam.data[...] = 0.7
    x = np.random.default_rng(3).normal(size=(1, 3, 32, 32))
    check_with_params(net, ["features.0.weight", "features.12.lam", "fc6.weight", "fc8.bias",
                            "bf.lam", "crf.compat", "embedder.fuse.weight"], net, x)


@pytest.mark.parametrize("segaware", [False, True])
@pytest.mark.parametrize("H, W", [(64, 64), (37, 50)])
def test_flownet_simple_shapes(segaware, H, W):
    manual_seed(3)
    net = FlowNetSimple(segaware=segaware, bf_ksize=3, **TINY_FLOWNET,
                        embedder=EmbeddingNet(**EMB) if segaware else None)
    flow, scales = net(images((2, 6, H, W)))
    assert flow.shape == (2, 2, H, W)
    assert [s.shape for s in scales] == [(2, 2, -(-H // k), -(-W // k))
                                         for k in FlowNetSimple.SCALE_STRIDES]


def test_flownet_simple_gradients_segaware():
    manual_seed(4)
    net = FlowNetSimple(segaware=True, bf_ksize=3, embedder=EmbeddingNet(**EMB),
                        **TINY_FLOWNET).double()
    net.predict_flow2.lam.data[...] = 0.5
    x = np.random.default_rng(5).normal(size=(1, 6, 64, 40))   # crops at 1/16 and 1/8
    # eps 1e-5: a step of 1e-4 in conv6_1's bias crosses a leaky ReLU's kink here (the
    # numeric gradient agrees with the analytic one to 1e-8 at 1e-5 and 1e-6)
    check_with_params(net, ["conv1.weight", "conv6_1.bias", "deconv.0.weight",
                            "deconv.2.bias", "upflow.1.weight", "predict.0.weight",
                            "predict_flow2.lam", "bf.lam", "embedder.conv1_1.weight"],
                      lambda t: (lambda out: (out[0], *out[1]))(net(t)), x, eps=1e-5)


def test_models_reject_bad_input():
    with pytest.raises(ValueError, match=r"DeepLabLargeFOV: segaware must be one of"):
        DeepLabLargeFOV(3, segaware="fc7")
    with pytest.raises(ValueError, match=r"DeepLabLargeFOV: bf must be None or \(repeat"):
        DeepLabLargeFOV(3, bf=(0, 3))
    with pytest.raises(ValueError, match=r"DeepLabLargeFOV: widths must be 5 positive ints"):
        DeepLabLargeFOV(3, widths=(64, 128))
    with pytest.raises(ValueError, match=r"FlowNetSimple: widths must be 6 positive ints"):
        FlowNetSimple(widths=(4, 4, 4, 4))
    with pytest.raises(ValueError, match=r"FlowNetSimple: in_channels must be even"):
        FlowNetSimple(in_channels=3, **TINY_FLOWNET)
    net = DeepLabLargeFOV(3, segaware="fc6", **TINY_DEEPLAB)
    with pytest.raises(ValueError, match=r"DeepLabLargeFOV.forward: this configuration "
                                         r"needs embeddings"):
        net(images((1, 3, 16, 16)))
    with pytest.raises(ValueError, match=r"DeepLabLargeFOV: x must be \(N, 3, H, W\)"):
        net(images((1, 4, 16, 16)))
    with pytest.raises(ValueError, match=r"FlowNetSimple: embeddings e must be"):
        FlowNetSimple(segaware=True, **TINY_FLOWNET)(images((1, 6, 16, 16)),
                                                     images((1, 3, 8, 16)))


# ---- VGG-16 weights --------------------------------------------------------------------
def fake_vgg16(widths, seed=0):
    """Thirteen (kernel (3, 3, C, F), bias (F,)) in Keras' layout for block widths."""
    rng = np.random.default_rng(seed)
    couts = [w for w, n in zip(widths, (2, 2, 3, 3, 3)) for _ in range(n)]
    cins = [3] + couts[:-1]
    return [(rng.normal(size=(3, 3, c, f)).astype(np.float32),
             rng.normal(size=f).astype(np.float32)) for c, f in zip(cins, couts)]


def write_vgg16(path, layers, layout):
    if layout == "torchvision":
        np.savez(path, **{f"features.{i}.{part}": a for i, (k, b) in zip(TORCH_INDICES, layers)
                          for part, a in (("weight", k.transpose(3, 2, 0, 1)), ("bias", b))})
        return
    with h5py.File(path, "w") as f:
        root = f.create_group("layers") if layout == "keras3" else f
        for name, (k, b) in zip(VGG_NAMES, layers):
            g = root.create_group(name)
            if layout == "keras3":
                g.create_dataset("vars/0", data=k)
                g.create_dataset("vars/1", data=b)
            else:
                g.create_dataset(f"{name}/kernel:0", data=k)
                g.create_dataset(f"{name}/bias:0", data=b)


@pytest.mark.parametrize("layout, ext", [("keras2", "h5"), ("keras3", "h5"),
                                         ("torchvision", "npz")])
@pytest.mark.parametrize("segaware", ["none", "all"])
def test_deeplab_loads_exactly_the_13_vgg_convolutions(tmp_path, layout, ext, segaware):
    manual_seed(5)
    layers = fake_vgg16(TINY_DEEPLAB["widths"])
    path = tmp_path / f"vgg16.{ext}"
    write_vgg16(path, layers, layout)
    net = DeepLabLargeFOV(3, segaware=segaware, **TINY_DEEPLAB)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    rgb = layout == "torchvision"    # the file's own channel order: nothing flipped
    assert net.load_vgg16(path, rgb=rgb) is net
    after = net.state_dict()
    changed = {k for k in after if not np.array_equal(after[k], before[k])}
    assert changed == {f"features.{i}.{p}" for i in range(13) for p in ("weight", "bias")}
    for layer, (kernel, bias) in zip(net.vgg_layers(), layers):
        # a normalised segmentation-aware convolution divides by its 9 taps (Eq. 7)
        scale = 9.0 if segaware == "all" else 1.0
        np.testing.assert_allclose(layer.weight.data, scale * kernel.transpose(3, 2, 0, 1),
                                   rtol=1e-6)
        np.testing.assert_array_equal(layer.bias.data, bias)
    # embedding_vgg16 takes the first seven of the same file
    emb = embedding_vgg16(widths=TINY_DEEPLAB["widths"][:3], vgg16=path, rgb=rgb)
    np.testing.assert_array_equal(emb.conv3_3.weight.data, layers[6][0].transpose(3, 2, 0, 1))


def test_mismatched_vgg_files_are_refused_and_change_nothing(tmp_path):
    net = DeepLabLargeFOV(3, **TINY_DEEPLAB)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    wrong = tmp_path / "wrong.h5"
    write_vgg16(wrong, fake_vgg16((2, 3, 3, 4, 6)), "keras2")   # block5 too wide
    with pytest.raises(ValueError, match=r"load_vgg16: layer block5_conv1 of .*wrong.h5 has "
                                         r"weight \(6, 4, 3, 3\).*expects \(4, 4, 3, 3\)"):
        net.load_vgg16(wrong)
    short = tmp_path / "embedding_only.npz"     # the seven layers an EmbeddingNet needs
    write_vgg16(short, fake_vgg16(TINY_DEEPLAB["widths"])[:7], "torchvision")
    with pytest.raises(ValueError, match=r"load_vgg16: .*lacks 'features.17.weight'"):
        net.load_vgg16(short)
    with h5py.File(tmp_path / "seven.h5", "w") as f:
        for name in VGG_NAMES[:7]:
            f.create_group(name)
    with pytest.raises(ValueError, match=r"load_vgg16: .*one 4-d kernel"):
        net.load_vgg16(tmp_path / "seven.h5")
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


# ---- training at the paper's widths ----------------------------------------------------
def _scenes(n, size):
    scenes = [render_scene(7, i, size) for i in range(n)]

    def stack(key, dtype):
        return np.stack([s[key] for s in scenes]).astype(dtype)
    to_chw = (0, 3, 1, 2)
    return ((stack("image1", np.float32).transpose(to_chw) - 128) / 64,
            (stack("image2", np.float32).transpose(to_chw) - 128) / 64,
            stack("label", np.int64), stack("flow", np.float32).transpose(to_chw))


def _loss_before_and_after_one_step(net, step, batch, lr):
    """One plain SGD step on ``batch``: at the paper's widths most of the time goes to
    the weight gradients and the update of 20-39 M parameters, so one step is enough."""
    opt = optim.SGD(net.parameters(), lr=lr)
    loss, _ = step(net, batch)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with no_grad():
        after, _ = step(net, batch)
    return loss.item(), after.item()


def test_build_model_arch_paper():
    seg = build_model({"task": "segmentation", "model": dict(TINY_DEEPLAB, arch="paper",
                                                             num_classes=7)})
    assert isinstance(seg, DeepLabLargeFOV) and seg.fc8.out_channels == 7
    flow = build_model({"task": "flow", "model": dict(TINY_FLOWNET, arch="paper"),
                        "embedder": dict(EMB, arch="small")})
    assert isinstance(flow, FlowNetSimple) and isinstance(flow.embedder, EmbeddingNet)
    emb = build_model({"task": "embedding", "model": {"arch": "paper", "widths": [2, 2, 2]}})
    assert emb.embed_dim == 64
    with pytest.raises(ValueError, match="build_model: 'arch' must be one of"):
        build_model({"task": "flow", "model": {"arch": "large"}})


def test_paper_networks_train_on_small_flyingshapes_inputs(paper_deeplab, paper_flownet,
                                                           monkeypatch):
    manual_seed(6)
    monkeypatch.setattr(paper_deeplab, "dropout", 0.0)
    image1, image2, labels, flow = _scenes(2, (32, 32))
    before, after = _loss_before_and_after_one_step(paper_deeplab, segmentation_step,
                                                    (image1, labels), 1e-3)
    assert np.isfinite(after) and after < 0.97 * before   # 2.87 -> 2.69 here
    before, after = _loss_before_and_after_one_step(paper_flownet, flow_step,
                                                    (image1, image2, flow), 1e-3)
    assert np.isfinite(after) and after < 0.97 * before


def test_flow_step_weights_every_scale_of_flownet_simple():
    """FlowNet's multi-scale loss: full resolution, then strides 4 ... 64 at half the
    weight of the next finer scale, each against the target on that scale's grid."""
    manual_seed(8)
    net = FlowNetSimple(**TINY_FLOWNET).eval()
    image1, image2, _, flow = _scenes(1, (40, 33))
    with no_grad():
        loss, _ = flow_step(net, (image1, image2, flow))
        pred, scales = net(Tensor(np.concatenate([image1, image2], axis=1)))

    def epe(p, s):
        return np.sqrt(((p.data - flow[:, :, ::s, ::s]) ** 2).sum(axis=1)).mean()
    want = epe(pred, 1) + sum(2 / s * epe(p, s)
                              for p, s in zip(scales, FlowNetSimple.SCALE_STRIDES))
    np.testing.assert_allclose(loss.item(), want, rtol=1e-5)


# ---- --arch paper in the runs and scripts ----------------------------------------------
def test_add_arch_args_switches_the_defaults_to_the_papers_schedule():
    def parser(argv):
        p = argparse.ArgumentParser()
        p.add_argument("--lr", type=float, default=3e-3)
        p.add_argument("--batch-size", type=int, default=4)
        add_arch_args(p, "segmentation", argv)
        return p.parse_args(argv)
    small = parser([])
    assert (small.arch, small.lr, small.batch_size, small.vgg16) == ("small", 3e-3, 4, None)
    paper = parser(["--arch", "paper", "--vgg16", "v.h5"])
    assert (paper.arch, paper.lr, paper.batch_size, paper.optimizer, paper.vgg16) == \
        ("paper", 1e-3, 20, "sgd", "v.h5")
    assert parser(["--arch", "paper", "--lr", "0.5"]).lr == 0.5   # given values win


def test_run_segmentation_with_the_paper_arch(tmp_path, monkeypatch):
    monkeypatch.setitem(PAPER_CROPS, "segmentation", (24, 20))   # 321x321 takes seconds
    train = load_split("segmentation", None, "train", 2, 16, str(tmp_path / "cache"))
    vgg = tmp_path / "vgg16.h5"
    write_vgg16(vgg, fake_vgg16(TINY_DEEPLAB["widths"]), "keras2")
    net, hist = run_segmentation(str(tmp_path / "run"), train, None, epochs=1, batch_size=2,
                                 lr=1e-3, model=dict(TINY_DEEPLAB, arch="paper"),
                                 vgg16=str(vgg), progress=False)
    assert isinstance(net, DeepLabLargeFOV) and np.isfinite(hist[-1]["loss"])
    model, config, _ = load_run(str(tmp_path / "run" / "checkpoint.npz"))
    assert isinstance(model, DeepLabLargeFOV) and config["model"]["arch"] == "paper"
    assert config["input"]["scale"] == 1.0            # Caffe's VGG-16 input: 0..255 - mean
    assert "dropout" not in config["model"]           # the small networks' defaults: unused
    with pytest.raises(ValueError, match="model 'arch' must be one of"):
        run_segmentation(str(tmp_path / "bad"), train, model={"arch": "big"}, progress=False)
