"""The bad inputs named by the core issue, in one place: each must raise ValueError or
TypeError whose message names the function, what was expected and what was given.

(The operator test files check more of their own argument errors.)"""
import numpy as np
import pytest

import segnp
import segnp.functions as F
from segnp import Parameter, Tensor, nn


def _x(shape=(2, 3, 7, 7), dtype=np.float64):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


# ---- mismatched channels in conv2d ---------------------------------------------------

def test_conv2d_mismatched_channels():
    W = _x((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"^conv2d: x has 2 channels but W expects 3: "
                                         r"x \(N, C, H, W\) = \(2, 2, 7, 7\), "
                                         r"W \(F, C, KH, KW\) = \(4, 3, 3, 3\)$"):
        F.conv2d(Tensor(_x((2, 2, 7, 7))), Tensor(W))


def test_conv2d_layer_given_the_wrong_number_of_channels():
    layer = nn.Conv2d(3, 4, 3, dtype=np.float64)
    with pytest.raises(ValueError, match=r"^conv2d: x has 5 channels but W expects 3: .*"
                                         r"\(2, 5, 7, 7\).*\(4, 3, 3, 3\)"):
        layer(Tensor(_x((2, 5, 7, 7))))


# ---- integer arrays where floats are needed --------------------------------------------

INT_CASES = [
    ("conv2d", "x", lambda a: F.conv2d(a, _x((4, 3, 3, 3)))),
    ("max_pool2d", "x", lambda a: F.max_pool2d(a, 2)),
    ("avg_pool2d", "x", lambda a: F.avg_pool2d(a, 2)),
    ("resize_bilinear", "x", lambda a: F.resize_bilinear(a, (5, 5))),
    ("relu", "x", F.relu),
    ("sigmoid", "x", F.sigmoid),
    ("softmax", "x", F.softmax),
    ("log_softmax", "x", F.log_softmax),
    ("dropout", "x", lambda a: F.dropout(a, 0.5)),
    ("softmax_cross_entropy", "logits",
     lambda a: F.softmax_cross_entropy(a, np.zeros((2, 7, 7), np.int64))),
    ("mse_loss", "input", lambda a: F.mse_loss(a, _x())),
    ("l1_loss", "target", lambda a: F.l1_loss(Tensor(_x()), a)),
]


@pytest.mark.parametrize("fn,arg,call", INT_CASES, ids=[c[0] for c in INT_CASES])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_integer_arrays_where_floats_are_needed(fn, arg, call, dtype):
    with pytest.raises(TypeError, match=rf"^{fn}: {arg} must be a floating-point array "
                                        rf"\(float32 or float64\); got dtype "
                                        rf"{np.dtype(dtype).name}$"):
        call(Tensor(np.ones((2, 3, 7, 7), dtype)))


def test_integer_weights_and_integer_tensors_that_require_grad():
    with pytest.raises(TypeError, match=r"^conv2d: W must be a floating-point array .*"
                                        r"got dtype int32$"):
        F.conv2d(_x(), np.ones((4, 3, 3, 3), np.int32))
    with pytest.raises(TypeError, match=r"^Tensor: requires_grad needs a floating dtype; "
                                        r"got int64$"):
        Tensor(np.arange(4), requires_grad=True)
    with pytest.raises(TypeError, match=r"^he_normal: the tensor must be floating-point; "
                                        r"got dtype int64$"):
        nn.init.he_normal(Tensor(np.ones((2, 3), np.int64)))
    with pytest.raises(TypeError, match=r"^Conv2d: dtype must be floating \(float32 or "
                                        r"float64\); got int32$"):
        nn.Conv2d(3, 4, 3, dtype=np.int32)


# ---- negative padding ------------------------------------------------------------------

NEG_PAD = [
    ("conv2d", -1, lambda p: F.conv2d(_x(), _x((4, 3, 3, 3)), padding=p)),
    ("conv2d", (1, -2), lambda p: F.conv2d(_x(), _x((4, 3, 3, 3)), padding=p)),
    ("max_pool2d", -1, lambda p: F.max_pool2d(_x(), 3, padding=p)),
    ("avg_pool2d", (0, -1), lambda p: F.avg_pool2d(_x(), 3, padding=p)),
    ("Conv2d", -1, lambda p: nn.Conv2d(3, 4, 3, padding=p)),
    ("max_pool2d", (-1, 0), lambda p: nn.MaxPool2d(2, padding=p)(Tensor(_x()))),
]


@pytest.mark.parametrize("fn,padding,call", NEG_PAD,
                         ids=[f"{c[0]}-{c[1]}" for c in NEG_PAD])
def test_negative_padding(fn, padding, call):
    given = repr(padding).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"^{fn}: padding must be >= 0; got {given}$"):
        call(padding)


def test_negative_pad_width():
    with pytest.raises(ValueError, match=r"^pad: pad widths must be >= 0; got \(\(0, 1\), "
                                         r"\(-1, 0\)\)$"):
        F.pad(Tensor(_x((2, 3))), ((0, 1), (-1, 0)))


# ---- labels >= number of classes that are not ignore_index ------------------------------

@pytest.mark.parametrize("bad,ignore", [(3, 255), (4, 255), (255, -1), (254, 255)])
def test_labels_out_of_range_that_are_not_ignore_index(bad, ignore):
    z = Tensor(_x((2, 3, 4, 5)))
    y = np.zeros((2, 4, 5), np.int64)
    y[0, 0, :2] = ignore
    y[1, 3, 4] = bad
    with pytest.raises(ValueError, match=rf"^softmax_cross_entropy: labels must be class "
                                         rf"indices in \[0, 3\) or ignore_index={ignore}; "
                                         rf"got value {bad}$"):
        F.softmax_cross_entropy(z, y, ignore_index=ignore)


def test_labels_out_of_range_for_classification_logits():
    with pytest.raises(ValueError, match=r"^softmax_cross_entropy: labels must be class "
                                         r"indices in \[0, 4\) or ignore_index=255; "
                                         r"got value 4$"):
        F.softmax_cross_entropy(Tensor(_x((3, 4))), np.array([0, 4, 255]))


# ---- load_state_dict with a missing key ------------------------------------------------

class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.scale = Parameter(np.ones(1, np.float32))


def test_load_state_dict_with_a_missing_key():
    model = _Two()
    state = model.state_dict()
    del state["conv.bias"]
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"^load_state_dict: missing keys \['conv.bias'\]; "
                                         r"expected keys \['scale', 'conv.weight', "
                                         r"'conv.bias'\]; given keys \['scale', "
                                         r"'conv.weight'\]$"):
        model.load_state_dict(state)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])  # nothing was written


def test_loading_a_checkpoint_that_lacks_a_key(tmp_path):
    small = nn.Sequential(nn.Conv2d(2, 3, 3))
    path = tmp_path / "small.npz"
    segnp.save(path, small)
    with pytest.raises(ValueError, match=r"^load_state_dict: missing keys \['1.weight', "
                                         r"'1.bias'\]; expected keys .*; given keys "
                                         r"\['0.weight', '0.bias'\]$"):
        segnp.load(path, nn.Sequential(nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 1)))
