"""Modules: registration order, state_dict / load_state_dict, modes, containers, layers, init."""
from collections import OrderedDict

import numpy as np
import pytest

import segnp
import segnp.functions as F
from segnp import Parameter, Tensor, nn
from segnp.nn import init


def _rng(seed=0):
    return np.random.default_rng(seed)


class Scale(nn.Module):
    """y = a * x + b with scalar-shaped parameters: a module that needs no other layer."""

    def __init__(self, a=2.0, b=0.0):
        super().__init__()
        self.a = Parameter(np.array([a]))
        self.b = Parameter(np.array([b]))

    def forward(self, x):
        return x * self.a + self.b


class Net(nn.Module):
    """Names chosen out of alphabetical order, with a parameter assigned between children."""

    def __init__(self):
        super().__init__()
        self.zeta = Scale(1.0, 1.0)
        self.lam = Parameter(np.zeros(1))
        self.alpha = nn.Sequential(Scale(2.0), Scale(3.0))
        self.register_buffer("running", np.arange(3.0))
        self.register_buffer("scratch", np.ones(2), persistent=False)

    def forward(self, x):
        return self.alpha(self.zeta(x)) + self.lam


def naive_conv(x, W, b, stride, padding, dilation):
    """Cross-correlation straight from its definition, one output element at a time."""
    N, C, H, Wd = x.shape
    Fo, _, KH, KW = W.shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (Wd + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    y = np.zeros((N, Fo, OH, OW))
    for n in range(N):
        for f in range(Fo):
            for oh in range(OH):
                for ow in range(OW):
                    s = b[f]
                    for c in range(C):
                        for i in range(KH):
                            for j in range(KW):
                                h, w = oh * SH - PH + i * DH, ow * SW - PW + j * DW
                                if 0 <= h < H and 0 <= w < Wd:
                                    s += W[f, c, i, j] * x[n, c, h, w]
                    y[n, f, oh, ow] = s
    return y


# ---- registration ------------------------------------------------------------------------
def test_parameters_follow_assignment_order_own_first_then_children():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["lam", "zeta.a", "zeta.b", "alpha.0.a", "alpha.0.b", "alpha.1.a",
                     "alpha.1.b"]
    objs = list(net.parameters())
    assert objs[0] is net.lam and objs[1] is net.zeta.a and objs[-1] is net.alpha[1].b
    assert [n for n, _ in net.named_children()] == ["zeta", "alpha"]
    assert [n for n, _ in net.named_modules()] == ["", "zeta", "alpha", "alpha.0", "alpha.1"]
    assert list(net.children()) == [net.zeta, net.alpha]


def test_order_is_stable_across_instances_and_reassignment_keeps_the_slot():
    a, b = Net(), Net()
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    a.lam = Parameter(np.ones(1))  # replaced: same position
    assert next(iter(a.named_parameters()))[0] == "lam"
    assert a.lam.data[0] == 1.0


def test_shared_parameter_is_listed_once_but_saved_under_both_names():
    m = nn.Sequential(Scale(), Scale())
    m[1].a = m[0].a
    assert len(list(m.parameters())) == 3
    assert list(m.state_dict()) == ["0.a", "0.b", "1.a", "1.b"]


def test_none_parameter_and_plain_attributes_are_not_registered():
    net = Net()
    net.lam = None
    net.note = "text"
    net.plain_tensor = Tensor(np.ones(2))
    assert "lam" not in dict(net.named_parameters())
    assert "lam" not in net.state_dict()
    assert not any(p is net.plain_tensor for p in net.parameters())
    del net.zeta
    assert [n for n, _ in net.named_children()] == ["alpha"]


def test_registration_errors_are_clear():
    net = Net()
    with pytest.raises(TypeError, match="'lam' is a Parameter"):
        net.lam = np.zeros(1)
    with pytest.raises(TypeError, match="ModuleList"):
        net.blocks = [Scale(), Scale()]
    with pytest.raises(TypeError, match="expected a Parameter"):
        net.register_parameter("w", np.zeros(2))

    class Forgot(nn.Module):
        def __init__(self):
            self.w = Parameter(np.zeros(1))

    with pytest.raises(TypeError, match=r"super\(\).__init__\(\)"):
        Forgot()
    with pytest.raises(TypeError, match="must define forward"):
        nn.Module()(1)


def test_buffers_are_registered_and_only_persistent_ones_saved():
    net = Net()
    assert [n for n, _ in net.named_buffers()] == ["running", "scratch"]
    sd = net.state_dict()
    assert "running" in sd and "scratch" not in sd
    net.running = np.full(3, 7.0)  # assignment to a buffer name replaces the buffer
    assert np.array_equal(net.state_dict()["running"], np.full(3, 7.0))


# ---- modes and gradients ------------------------------------------------------------------
def test_train_and_eval_reach_every_descendant():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.alpha.train()
    assert net.alpha[0].training and not net.training
    net.train()
    assert all(m.training for m in net.modules())


def test_dropout_layer_follows_the_mode():
    drop = nn.Dropout(0.5)
    x = Tensor(np.ones((4, 3, 8, 8)))
    segnp.manual_seed(0)
    y = drop(x).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0} and (y == 0).any()
    drop.eval()
    assert np.array_equal(drop(x).numpy(), x.numpy())
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(1.0)


def test_zero_grad_clears_every_parameter():
    net = Net()
    net(Tensor(np.array([1.0, 2.0]))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_to_double_casts_in_place_and_keeps_parameter_objects():
    conv = nn.Conv2d(2, 3, 3, rng=_rng())
    w = conv.weight
    before = w.numpy().copy()
    conv.double()
    assert conv.weight is w and w.dtype == np.float64 and conv.bias.dtype == np.float64
    np.testing.assert_array_equal(w.numpy(), before.astype(np.float64))
    with pytest.raises(TypeError, match="floating"):
        conv.to(np.int32)


# ---- state_dict / load_state_dict --------------------------------------------------------
def test_state_dict_is_an_ordered_dict_of_host_copies():
    net = Net()
    sd = net.state_dict()
    assert isinstance(sd, OrderedDict)
    assert list(sd) == ["lam", "running", "zeta.a", "zeta.b", "alpha.0.a", "alpha.0.b",
                        "alpha.1.a", "alpha.1.b"]
    assert all(type(v) is np.ndarray for v in sd.values())
    sd["zeta.a"][...] = 100.0
    assert net.zeta.a.data[0] == 1.0


def test_load_state_dict_round_trip_in_place():
    src, dst = nn.Conv2d(3, 4, 3, rng=_rng(1)), nn.Conv2d(3, 4, 3, rng=_rng(2))
    w = dst.weight
    result = dst.load_state_dict(src.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert dst.weight is w
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k], v)
    x = Tensor(_rng(3).standard_normal((1, 3, 6, 6)).astype(np.float32))
    np.testing.assert_array_equal(src(x).numpy(), dst(x).numpy())


def test_load_state_dict_missing_key_names_function_expected_and_given():
    net = Net()
    sd = net.state_dict()
    del sd["zeta.b"]
    with pytest.raises(ValueError) as err:
        net.load_state_dict(sd)
    msg = str(err.value)
    assert msg.startswith("load_state_dict:")
    assert "missing keys ['zeta.b']" in msg
    assert "expected keys ['lam', 'running', 'zeta.a', 'zeta.b'" in msg
    assert "given keys ['lam', 'running', 'zeta.a', 'alpha.0.a'" in msg


def test_load_state_dict_unexpected_key_and_non_strict():
    net = Net()
    sd = net.state_dict()
    sd["extra.weight"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"unexpected keys \['extra.weight'\]"):
        net.load_state_dict(sd)
    del sd["lam"]
    sd["zeta.a"] = np.array([5.0])
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert missing == ["lam"] and unexpected == ["extra.weight"]
    assert net.zeta.a.data[0] == 5.0


def test_load_state_dict_shape_mismatch_fails_even_non_strict_and_changes_nothing():
    conv = nn.Conv2d(3, 4, 3, rng=_rng())
    before = conv.state_dict()
    sd = conv.state_dict()
    sd["bias"] = np.ones(4, np.float32)
    sd["weight"] = np.zeros((4, 3, 5, 5), np.float32)
    for strict in (True, False):
        with pytest.raises(ValueError) as err:
            conv.load_state_dict(sd, strict=strict)
        msg = str(err.value)
        assert "load_state_dict" in msg and "'weight'" in msg
        assert "expected (4, 3, 3, 3)" in msg and "given (4, 3, 5, 5)" in msg
    for k, v in before.items():  # bias was valid but must not have been written
        np.testing.assert_array_equal(conv.state_dict()[k], v)
    with pytest.raises(TypeError, match="mapping"):
        conv.load_state_dict([1, 2])


def test_load_state_dict_casts_to_the_parameter_dtype():
    conv = nn.Conv2d(1, 1, 1, rng=_rng())
    sd = {"weight": np.full((1, 1, 1, 1), 0.5, np.float64), "bias": np.array([2])}
    conv.load_state_dict(sd)
    assert conv.weight.dtype == np.float32 and conv.weight.data.item() == 0.5
    assert conv.bias.dtype == np.float32 and conv.bias.data.item() == 2.0


# ---- containers ----------------------------------------------------------------------------
def test_sequential_chains_indexes_and_names():
    seq = nn.Sequential(Scale(2.0, 1.0), Scale(3.0))
    x = Tensor(np.array([1.0, -2.0]))
    np.testing.assert_allclose(seq(x).numpy(), 3.0 * (2.0 * x.numpy() + 1.0))
    assert len(seq) == 2 and seq[-1] is list(seq)[1]
    assert isinstance(seq[:1], nn.Sequential) and len(seq[:1]) == 1
    seq.append(Scale(0.5))
    np.testing.assert_allclose(seq(x).numpy(), 1.5 * (2.0 * x.numpy() + 1.0))
    named = nn.Sequential(OrderedDict([("first", Scale()), ("second", Scale())]))
    assert list(named.state_dict())[:2] == ["first.a", "first.b"]
    with pytest.raises(TypeError, match="Sequential: expected a Module"):
        nn.Sequential(Scale(), lambda t: t)
    with pytest.raises(IndexError):
        seq[5]


def test_module_list_registers_items():
    class Tower(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([Scale(2.0), Scale(3.0)])
            self.blocks.append(Scale(4.0))

        def forward(self, x):
            return sum((b(x) for b in self.blocks), Tensor(np.zeros(1)))

    t = Tower()
    assert [n for n, _ in t.named_parameters()][:3] == ["blocks.0.a", "blocks.0.b",
                                                         "blocks.1.a"]
    assert len(t.blocks) == 3 and t.blocks[-1].a.data[0] == 4.0
    np.testing.assert_allclose(t(Tensor(np.array([1.0]))).numpy(), [9.0])
    new = Scale(10.0)
    t.blocks[0] = new
    assert t.blocks[0] is new and next(t.parameters()) is new.a
    with pytest.raises(TypeError, match="no forward"):
        t.blocks(1)
    with pytest.raises(TypeError, match="ModuleList: expected a Module"):
        t.blocks.append(3)


def test_repr_nests_children():
    text = repr(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()))
    assert text.startswith("Sequential(\n  (0): Conv2d(3, 8, kernel_size=(3, 3)")
    assert "(1): ReLU()" in text


def test_apply_visits_children_before_parents():
    seen = []
    Net().apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen.index("Sequential") > seen.index("Scale")


# ---- layers ------------------------------------------------------------------------------
@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), ((1, 2), (2, 1), 2)])
def test_conv2d_layer_matches_the_definition(stride, padding, dilation):
    conv = nn.Conv2d(3, 2, (3, 2), stride, padding, dilation, dtype=np.float64, rng=_rng(5))
    init.normal(conv.bias, std=1.0, rng=_rng(6))
    x = _rng(7).standard_normal((2, 3, 7, 8))
    y = conv(Tensor(x)).numpy()
    ref = naive_conv(x, conv.weight.numpy(), conv.bias.numpy(), conv.stride, conv.padding,
                     conv.dilation)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_conv2d_layer_parameters_init_and_options():
    conv = nn.Conv2d(64, 32, 3, rng=_rng())
    assert conv.weight.shape == (32, 64, 3, 3) and conv.weight.dtype == np.float32
    assert np.array_equal(conv.bias.numpy(), np.zeros(32, np.float32))
    std = conv.weight.numpy().std()
    assert abs(std / np.sqrt(2.0 / (64 * 9)) - 1) < 0.03
    nobias = nn.Conv2d(2, 3, 1, bias=False)
    assert nobias.bias is None and list(nobias.state_dict()) == ["weight"]
    y = nobias(Tensor(np.ones((1, 2, 4, 4), np.float32)))
    assert y.shape == (1, 3, 4, 4)
    assert nn.Conv2d(2, 3, 1, dtype=np.float64).weight.dtype == np.float64
    with pytest.raises(ValueError, match="Conv2d: in_channels must be a positive int"):
        nn.Conv2d(0, 3, 3)
    with pytest.raises(ValueError, match="Conv2d: padding must be >= 0"):
        nn.Conv2d(1, 3, 3, padding=-1)
    with pytest.raises(TypeError, match="Conv2d: dtype must be floating"):
        nn.Conv2d(1, 3, 3, dtype=np.int64)
    with pytest.raises(ValueError, match="conv2d"):  # the function names itself
        nn.Conv2d(4, 3, 3)(Tensor(np.ones((1, 2, 5, 5), np.float32)))


def test_conv2d_layer_is_seeded_by_manual_seed():
    segnp.manual_seed(123)
    a = nn.Conv2d(3, 4, 3).weight.numpy()
    segnp.manual_seed(123)
    b = nn.Conv2d(3, 4, 3).weight.numpy()
    c = nn.Conv2d(3, 4, 3).weight.numpy()
    assert np.array_equal(a, b) and not np.array_equal(b, c)


def test_pool_relu_and_upsample_layers_call_their_functions():
    x = Tensor(_rng(8).standard_normal((2, 3, 7, 9)))
    np.testing.assert_array_equal(nn.ReLU()(x).numpy(), np.maximum(x.numpy(), 0))
    np.testing.assert_array_equal(nn.MaxPool2d(3, 2, 1)(x).numpy(),
                                  F.max_pool2d(x, 3, 2, 1).numpy())
    np.testing.assert_array_equal(nn.MaxPool2d(2, ceil_mode=True)(x).numpy(),
                                  F.max_pool2d(x, 2, 2, 0, True).numpy())
    np.testing.assert_array_equal(nn.AvgPool2d(3, 1, 1, count_include_pad=False)(x).numpy(),
                                  F.avg_pool2d(x, 3, 1, 1, False, False).numpy())
    up = nn.Upsample(scale_factor=2.5)
    assert up(x).shape == (2, 3, 17, 22)
    np.testing.assert_array_equal(up(x).numpy(), F.resize_bilinear(x, (17, 22)).numpy())
    up = nn.Upsample(size=(5, 4), align_corners=True)
    np.testing.assert_array_equal(up(x).numpy(),
                                  F.resize_bilinear(x, (5, 4), align_corners=True).numpy())
    assert nn.Identity()(x) is x
    with pytest.raises(ValueError, match="Upsample: give exactly one"):
        nn.Upsample()
    with pytest.raises(ValueError, match="Upsample: give exactly one"):
        nn.Upsample(size=4, scale_factor=2)
    with pytest.raises(ValueError, match="Upsample: scale_factor"):
        nn.Upsample(scale_factor=-1)


# ---- init -----------------------------------------------------------------------------
def _big(shape=(128, 64, 3, 3), dtype=np.float64):
    return Parameter(np.zeros(shape, dtype))


def test_fans():
    assert init.calculate_fans((8, 4, 3, 5)) == (60, 120)
    assert init.calculate_fans((8, 4)) == (4, 8)
    assert init.calculate_fans((7,)) == (7, 7)
    with pytest.raises(ValueError, match="calculate_fans"):
        init.calculate_fans(())


@pytest.mark.parametrize("fn,expected_std", [
    (init.he_normal, np.sqrt(2.0 / (64 * 9))),
    (init.he_uniform, np.sqrt(2.0 / (64 * 9))),
    (init.xavier_normal, np.sqrt(2.0 / (64 * 9 + 128 * 9))),
    (init.xavier_uniform, np.sqrt(2.0 / (64 * 9 + 128 * 9))),
])
def test_initialisers_have_the_documented_variance(fn, expected_std):
    w = fn(_big(), rng=_rng(11)).numpy()
    assert abs(w.mean()) < 0.02 * expected_std
    assert abs(w.std() / expected_std - 1) < 0.02
    if fn in (init.he_uniform, init.xavier_uniform):
        bound = expected_std * np.sqrt(3.0)
        assert w.max() <= bound and w.min() >= -bound and w.max() > 0.99 * bound


def test_he_fan_out_and_gain():
    w = init.he_normal(_big(), mode="fan_out", gain=1.0, rng=_rng()).numpy()
    assert abs(w.std() / np.sqrt(1.0 / (128 * 9)) - 1) < 0.02
    with pytest.raises(ValueError, match="he_normal: mode"):
        init.he_normal(_big(), mode="fan_avg")


def test_initialisers_are_seeded_and_dtype_independent():
    a = init.he_normal(_big((4, 3, 3, 3)), rng=_rng(4)).numpy()
    b = init.he_normal(_big((4, 3, 3, 3)), rng=_rng(4)).numpy()
    c = init.he_normal(_big((4, 3, 3, 3), np.float32), rng=_rng(4)).numpy()
    assert np.array_equal(a, b)
    assert c.dtype == np.float32 and np.array_equal(c, a.astype(np.float32))


def test_constant_zeros_and_errors():
    t = Parameter(np.ones((2, 3)))
    assert init.zeros(t) is t and not t.numpy().any()
    np.testing.assert_array_equal(init.constant(t, 0.25).numpy(), np.full((2, 3), 0.25))
    with pytest.raises(TypeError, match="he_normal: expected a Tensor"):
        init.he_normal(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="zeros: the tensor must be floating"):
        init.zeros(Tensor(np.zeros(2, np.int64)))
    with pytest.raises(TypeError, match="rng"):
        init.xavier_uniform(t, rng=3)
