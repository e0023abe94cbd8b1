"""segnp.torch: segnp's kernels under PyTorch's autograd (docs/torch.md).

Gradient checks in float64 (every input, lam included), parity with segnp's own
functions in float32, zero copy both ways, the errors, strided inputs, the modules and
from_segnp, a few steps of torch.optim; the CUDA path is marked ``gpu``."""
import collections
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import segnp  # noqa: E402
import segnp.torch as st  # noqa: E402
from segnp import functions as F  # noqa: E402
from segnp import nn as snn  # noqa: E402
from segnp.backends import get_backend  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _inputs(dtype, device="cpu", N=2, C=3, D=4, H=7, W=8, F_=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(
            dtype=dtype, device=device).requires_grad_(True)

    return dict(x=r(N, C, H, W), e=r(N, D, H, W, scale=0.5), W=r(F_, C, k, k),
                b=r(F_), lam=torch.tensor(0.7, dtype=dtype, device=device,
                                          requires_grad=True))


# Each case: (name, the bridge call on tensors, the same call on segnp Tensors, the
# names of the inputs it takes).  The segnp call takes the same positional inputs.
CASES = {
    "im2dist": (lambda e: st.im2dist(e, 3, stride=2, dilation=2, norm="l2"),
                lambda e: F.im2dist(e, 3, stride=2, dilation=2, norm="l2"), ("e",)),
    "segaware_mask": (
        lambda e, lam: st.segaware_mask(e, lam, 3, padding=0, include_center=False),
        lambda e, lam: F.segaware_mask(e, lam, 3, padding=0, include_center=False),
        ("e", "lam")),
    "segaware_bilateral": (
        lambda x, e, lam: st.segaware_bilateral(x, e, lam, 3, dilation=2, repeat=2),
        lambda x, e, lam: F.segaware_bilateral(x, e, lam, 3, dilation=2, repeat=2),
        ("x", "e", "lam")),
    # 3x3 at dilation 1 on 10 x 11 (_case_inputs): the NumPy canvas, whose fused
    # backward reads the saved output
    "segaware_bilateral on the canvas": (
        lambda x, e, lam: st.segaware_bilateral(x, e, lam, 3, repeat=3),
        lambda x, e, lam: F.segaware_bilateral(x, e, lam, 3, repeat=3),
        ("x", "e", "lam")),
    "segaware_conv2d": (
        lambda x, e, W, b, lam: st.segaware_conv2d(x, e, W, b, lam, stride=(2, 1)),
        lambda x, e, W, b, lam: F.segaware_conv2d(x, e, W, b, lam, stride=(2, 1)),
        ("x", "e", "W", "b", "lam")),
    "segaware_conv2d unnormalised": (
        lambda x, e, W, lam: st.segaware_conv2d(x, e, W, None, lam, dilation=2,
                                                norm="l2sq", normalize=False),
        lambda x, e, W, lam: F.segaware_conv2d(x, e, W, None, lam, dilation=2,
                                               norm="l2sq", normalize=False),
        ("x", "e", "W", "lam")),
}


def _crf_inputs(dtype, device="cpu", N=1, L=3, D=2, H=5, W=6):
    g = torch.Generator().manual_seed(1)
    e = (0.5 * torch.randn(N, D, H, W, generator=g, dtype=torch.float64)).to(
        dtype=dtype, device=device).requires_grad_(True)

    def scalar(v):
        return torch.tensor(v, dtype=dtype, device=device, requires_grad=True)

    compat = (torch.eye(L, dtype=torch.float64) + 0.1 * torch.randn(L, L, generator=g)).to(
        dtype=dtype, device=device).requires_grad_(True)
    U = torch.randn(N, L, H, W, generator=g, dtype=torch.float64).to(
        dtype=dtype, device=device).requires_grad_(True)
    return dict(U=U, e=e, lam=scalar(0.8), w_b=scalar(1.2), w_s=scalar(0.6),
                spatial_sigma=scalar(1.3), compat=compat, bilateral_sigma=scalar(2.0))


CRF_NAMES = ("U", "e", "lam", "w_b", "w_s", "spatial_sigma", "compat", "bilateral_sigma")
CRF_WINDOWS = dict(bilateral_ksize=3, bilateral_dilation=2, spatial_ksize=3, iterations=2)


def crf_bridge(U, e, lam, w_b, w_s, sigma, compat, bsigma):
    return st.segaware_crf(U, e, lam, w_b, w_s, sigma, compat, bilateral_sigma=bsigma,
                           **CRF_WINDOWS)


def crf_segnp(U, e, lam, w_b, w_s, sigma, compat, bsigma):
    return F.segaware_crf(U, e, lam, w_b, w_s, sigma, compat, bilateral_sigma=bsigma,
                          **CRF_WINDOWS)


CASES["segaware_crf"] = (crf_bridge, crf_segnp, CRF_NAMES)


def _case_inputs(name, dtype, device="cpu", **shape):
    if name == "segaware_crf":
        made = _crf_inputs(dtype, device)
    elif name == "segaware_conv_transpose2d":
        made = _transpose_inputs(dtype, device)
    elif name == "segaware_bilateral on the canvas":
        made = _inputs(dtype, device, **dict(shape, H=10, W=11))
    else:
        made = _inputs(dtype, device, **shape)
    return [made[n] for n in CASES[name][2]]


def _transpose_inputs(dtype, device="cpu"):
    """x (2, 3, 4, 5) up by 2 (k = 3, padding 1, output_padding 1) to 8 x 10, where e
    lives; W (C, F, k, k)."""
    made = _inputs(dtype, device, N=2, C=3, H=4, W=5, F_=5)
    g = torch.Generator().manual_seed(1)
    made["W"] = (torch.randn(3, 5, 3, 3, generator=g, dtype=torch.float64)
                 .to(dtype=dtype, device=device).requires_grad_(True))
    made["e"] = ((torch.randn(2, 4, 8, 10, generator=g, dtype=torch.float64) * 0.5)
                 .to(dtype=dtype, device=device).requires_grad_(True))
    return made


CASES["segaware_conv_transpose2d"] = (
    lambda x, e, W, b, lam: st.segaware_conv_transpose2d(x, e, W, b, lam, 2, 1, 1),
    lambda x, e, W, b, lam: F.segaware_conv_transpose2d(x, e, W, b, lam, 2, 1, 1),
    ("x", "e", "W", "b", "lam"))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tensors are tiny: PyTorch's idle OpenMP threads would only spin against
    segnp's (on a loaded machine they doubled the gradient checks' time)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def paths(monkeypatch):
    """Counts the NumPy bilateral filter's ways: "canvas", its passes on the canvas
    (forward, and gx in the fused backward), and "pass by pass", the backward that
    does not fuse the passes."""
    from segnp.backends.numpy import segaware as ns
    taken = collections.Counter()

    def spy(fn, key):
        real = getattr(ns, fn)
        monkeypatch.setattr(ns, fn, lambda *a: (taken.update([key]), real(*a))[1])

    spy("_bilateral_canvas", "canvas")
    spy("_bilateral_gx_canvas", "canvas")
    spy("filter_passes_backward", "pass by pass")
    return taken


def check_path(name, paths):
    """The canvas case ran on the canvas, with the fused backward: what it is there for."""
    if name == "segaware_bilateral on the canvas":
        assert paths["canvas"] and not paths["pass by pass"], dict(paths)


# ---- gradients and parity ----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck_every_input(name, paths):
    """float64 gradients to every input (lam included) against finite differences."""
    bridge = CASES[name][0]
    inputs = _case_inputs(name, torch.float64, N=1, H=5, W=6)
    assert all(t.requires_grad for t in inputs)
    assert torch.autograd.gradcheck(bridge, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)
    check_path(name, paths)


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_parity_with_segnp(name, paths):
    """Outputs and every input's gradient equal segnp's own functions to 1e-6."""
    bridge, ref, names = CASES[name]
    inputs = _case_inputs(name, torch.float32)
    y = bridge(*inputs)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    y.backward(gy)
    mine = [y.detach().numpy()] + [t.grad.numpy() for t in inputs]
    with segnp.backends.using_backend("numpy"):
        ts = [segnp.Tensor(t.detach().numpy(), requires_grad=True) for t in inputs]
        ys = ref(*ts)
        ys.backward(gy.numpy())
        theirs = [ys.numpy()] + [t.grad for t in ts]
    for label, a, b in zip(("y",) + names, mine, theirs):
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * scale, err_msg=label)
    check_path(name, paths)


def test_only_requested_gradients_and_sum_backward():
    """A loss built from y.sum() hands the backward a stride-0 gradient; x alone asks
    for one, and the gradient equals the one from an explicit ones tensor."""
    t = _inputs(torch.float32)
    W, b, lam = (t[n].detach() for n in ("W", "b", "lam"))
    e = t["e"].detach()
    x = t["x"]
    st.segaware_conv2d(x, e, W, b, lam).sum().backward()
    g_sum = x.grad.clone()
    x.grad = None
    y = st.segaware_conv2d(x, e, W, b, lam)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(g_sum, x.grad, rtol=0, atol=0)


def test_float_lam_and_no_grad():
    t = _inputs(torch.float32)
    x, e, W = (t[n].detach() for n in ("x", "e", "W"))
    with torch.no_grad():
        y = st.segaware_conv2d(x, e, W, None, 0.5)
    assert not y.requires_grad
    ref = F.segaware_conv2d(x.numpy(), e.numpy(), W.numpy(), None, 0.5).numpy()
    np.testing.assert_allclose(y.numpy(), ref, rtol=0, atol=1e-6)


# ---- zero copy ---------------------------------------------------------------------------
def _record(monkeypatch, kernel, seen):
    numpy_backend = get_backend("numpy")
    original = getattr(numpy_backend, kernel)

    def spy(*args, **kwargs):
        seen.append([a.ctypes.data for a in args if isinstance(a, np.ndarray)])
        out = original(*args, **kwargs)
        seen.append([o.ctypes.data for o in (out if isinstance(out, tuple) else (out,))
                     if isinstance(o, np.ndarray)])
        return out

    monkeypatch.setattr(numpy_backend, kernel, spy)


@pytest.mark.parametrize("strided", [False, True])
def test_kernels_see_the_tensors_memory(monkeypatch, strided):
    """The masked-convolution and im2dist kernels get arrays at the tensors' own data
    pointers (also for strided tensors: the bridge copies nothing), and the output
    tensor is the kernel's result array."""
    t = _inputs(torch.float32)
    x, e, W = (t[n].detach() for n in ("x", "e", "W"))
    if strided:  # channels-last x and a transposed copy of e: same values, other strides
        x = x.to(memory_format=torch.channels_last)
        e = e.transpose(2, 3).contiguous().transpose(2, 3)
        assert not x.is_contiguous() and not e.is_contiguous()
    x.requires_grad_(True)
    conv, dist = [], []
    _record(monkeypatch, "masked_conv", conv)
    _record(monkeypatch, "im2dist", dist)
    y = st.segaware_conv2d(x, e, W, None, 0.5)
    (x_ptr, m_ptr, W_ptr), (y_ptr,) = conv
    assert (x_ptr, W_ptr, y_ptr) == (x.data_ptr(), W.data_ptr(), y.data_ptr())
    assert dist[0][0] == e.data_ptr()
    ref = st.segaware_conv2d(x.contiguous(), e.contiguous(), W, None, 0.5)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)


def test_dlpack_round_trip_shares_memory():
    from segnp.torch._device import Place
    t = torch.randn(3, 4)
    a = Place.array(get_backend("numpy"), t)
    assert a.ctypes.data == t.data_ptr()
    back = Place.tensor(a)
    assert back.data_ptr() == t.data_ptr()


def test_in_place_change_before_backward_is_refused():
    t = _inputs(torch.float32)
    x = t["x"].detach().clone().requires_grad_(True)
    h = x * 1.0
    y = st.segaware_conv2d(h, t["e"].detach(), t["W"].detach(), None, 0.5)
    with torch.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_in_place_change_of_the_filters_output():
    """One pass keeps x and m, not its output, which may then change in place before
    backward; more passes keep the output (the NumPy canvas's backward reads it), and
    an in-place change of it is refused."""
    t = _inputs(torch.float64, H=10, W=11)
    x, e = t["x"], t["e"].detach()
    st.segaware_bilateral(x, e, 0.7, 3).sum().backward()
    want, x.grad = x.grad.clone(), None
    y = st.segaware_bilateral(x, e, 0.7, 3)
    y += 1.0
    y.sum().backward()
    torch.testing.assert_close(x.grad, want, rtol=0, atol=0)
    y = st.segaware_bilateral(x, e, 0.7, 3, repeat=3)
    y += 1.0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


# ---- errors ------------------------------------------------------------------------------
class _FakeCuda(torch.Tensor):
    """A CPU tensor that says it is on cuda:0: the device checks without a GPU."""

    @property
    def device(self):
        return torch.device("cuda", 0)


def _fake_cuda(t):
    return torch.Tensor._make_subclass(_FakeCuda, t)


def test_errors_name_the_function_and_the_argument(monkeypatch):
    t = _inputs(torch.float32)
    x, e, W, b = (t[n].detach() for n in ("x", "e", "W", "b"))
    cases = [
        (lambda: st.segaware_conv2d(x, e.to("meta"), W), ValueError,
         "segaware_conv2d: e is on meta but x is on cpu"),
        (lambda: st.segaware_conv2d(x.to("meta"), e.to("meta"), W.to("meta")), ValueError,
         "segaware_conv2d: x is on meta; segnp's kernels run on the CPU and on CUDA"),
        (lambda: st.segaware_conv2d(x, e, W.double()), TypeError,
         "segaware_conv2d: expected one floating dtype for x, e, W"),
        (lambda: st.segaware_conv2d(x, e.half(), W), TypeError,
         "segaware_conv2d: e must be float32 or float64"),
        (lambda: st.segaware_bilateral(x.int(), e, 1.0), TypeError,
         "segaware_bilateral: x must be float32 or float64"),
        (lambda: st.segaware_conv2d(x, e, W, b.to_sparse()), TypeError,
         "segaware_conv2d: b must be a dense"),
        (lambda: st.segaware_conv2d(x.numpy(), e, W), TypeError,
         "segaware_conv2d: x must be a torch.Tensor"),
        (lambda: st.segaware_conv2d(x, e, W[:, :2]), ValueError,
         r"segaware_conv2d: W must be \(F, C, k, k\) with C = 3"),
        (lambda: st.segaware_mask(e, -1.0, 3), ValueError,
         r"segaware_mask: lam \(the hardness of Eq. 3\) must be >= 0"),
        (lambda: st.segaware_mask(e, "1", 3), TypeError, "segaware_mask: lam must be a float"),
        (lambda: st.segaware_mask(e, torch.ones(2), 3), ValueError,
         "segaware_mask: lam must be a float or a 0-d Tensor"),
        (lambda: st.im2dist(e, 4), ValueError, "im2dist: ksize must be odd"),
        (lambda: st.segaware_crf(x, e, iterations=-1), ValueError,
         "segaware_crf: iterations must be an int >= 0"),
        (lambda: st.segaware_crf(x, e, w_b=torch.tensor(1.0, dtype=torch.float64)),
         TypeError, "segaware_crf: w_b must have U's dtype"),
    ]
    for call, kind, message in cases:
        with pytest.raises(kind, match=message):
            call()
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    with pytest.raises(RuntimeError, match=r"segaware_conv2d: x is on cuda:0, which needs "
                                           r"CuPy: pip install segnp\[cuda13\]"):
        st.segaware_conv2d(_fake_cuda(x), _fake_cuda(e), _fake_cuda(W))


def test_import_without_torch_names_the_extra():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import segnp.torch\nexcept ImportError as err:\n    print(err)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), check=True).stdout
    assert "pip install segnp[torch]" in out
    out = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None; "
                          "import segnp, segnp.functions, segnp.nn; print('ok')"],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT),
                         check=True).stdout
    assert out.strip() == "ok"


# ---- modules -----------------------------------------------------------------------------
def _perturb(module, seed):
    """Move every parameter of a segnp module off its init, as training would."""
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data[...] += (0.2 * rng.standard_normal(p.shape)).astype(p.dtype)
        p.apply_constraint()


SEGNP_MODULES = {
    "conv": lambda: snn.SegAwareConv2d(3, 5, 3, dilation=2, lam_init=0.4),
    "conv, no bias, stride": lambda: snn.SegAwareConv2d(3, 4, 5, stride=2, bias=False,
                                                        normalize=False, norm="l2"),
    "bilateral": lambda: snn.BilateralFilter(ksize=3, repeat=2, include_center=False),
    "transposed conv": lambda: snn.SegAwareConvTranspose2d(3, 4, 3, stride=2, padding=1,
                                                           output_padding=1, lam_init=0.3),
    "crf": lambda: snn.SegAwareCRF(3, bilateral_ksize=3, bilateral_dilation=2,
                                   spatial_ksize=3, bilateral_sigma_init=2.0),
    "crf, Caffe's (L, L) filter weights": lambda: _trained_matrices(snn.SegAwareCRF(
        3, bilateral_ksize=3, spatial_ksize=3, filter_weights="matrix")),
}


def _trained_matrices(crf):
    """The CRF with full (not diagonal) filter weights, as training would leave them."""
    rng = np.random.default_rng(5)
    for p in (crf.w_b, crf.w_s):
        p.data[...] = rng.uniform(-1, 1, p.shape)
    return crf


@pytest.mark.parametrize("kind", sorted(SEGNP_MODULES))
def test_from_segnp_gives_the_same_outputs(kind):
    segnp.manual_seed(0)
    module = SEGNP_MODULES[kind]()
    _perturb(module, 1)
    twin = st.from_segnp(module)
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in module.named_parameters()]
    assert all(isinstance(p, torch.nn.Parameter) for p in twin.parameters())
    assert twin.extra_repr() == module.extra_repr()
    t = _inputs(torch.float32, C=3)
    first = t["x"].detach() if kind != "crf" else t["x"].detach()[:, :3]
    e = t["e"].detach()
    if kind == "transposed conv":   # e at the output's resolution: 7 x 8 up by 2
        e = torch.randn(2, 4, 14, 16, generator=torch.Generator().manual_seed(2))
    y = twin(first, e).detach().numpy()
    with segnp.no_grad():
        ref = module(first.numpy(), e.numpy()).numpy()
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-6)
    # copies: training the twin leaves the segnp module alone
    before = [p.numpy().copy() for p in module.parameters()]
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(1.0)
    assert all(np.array_equal(a, p.numpy()) for a, p in zip(before, module.parameters()))


def test_from_segnp_refuses_other_modules():
    with pytest.raises(TypeError, match="from_segnp: module must be one of "
                                        "segnp.nn.SegAwareConv2d"):
        st.from_segnp(snn.Conv2d(3, 4, 3))


def test_modules_have_segnps_arguments_and_initialisation():
    """Same constructor checks, the init of the segnp module built with the same NumPy
    generator, and torch.manual_seed makes the default init reproducible."""
    mine = st.SegAwareConv2d(3, 5, 3, rng=np.random.default_rng(7), dtype=np.float64)
    theirs = snn.SegAwareConv2d(3, 5, 3, rng=np.random.default_rng(7), dtype=np.float64)
    assert mine.weight.dtype == torch.float64
    np.testing.assert_array_equal(mine.weight.detach().numpy(), theirs.weight.numpy())
    torch.manual_seed(3)
    a = st.SegAwareConv2d(3, 5, 3).weight.detach().clone()
    torch.manual_seed(3)
    b = st.SegAwareConv2d(3, 5, 3).weight.detach()
    assert torch.equal(a, b) and a.std() > 0
    with pytest.raises(ValueError, match="SegAwareConv2d: kernel_size must be an odd"):
        st.SegAwareConv2d(3, 5, 4)
    with pytest.raises(ValueError, match="BilateralFilter: lam_init must be a float >= 0"):
        st.BilateralFilter(lam_init=-1.0)
    with pytest.raises(TypeError, match="SegAwareCRF: dtype must be floating"):
        st.SegAwareCRF(3, dtype=torch.int32)
    crf = st.SegAwareCRF(4)
    assert crf.bilateral_sigma is None
    assert [n for n, _ in crf.named_parameters()] == \
        [n for n, _ in snn.SegAwareCRF(4).named_parameters()]
    with pytest.raises(ValueError, match="SegAwareCRF: U must be .* L = num_classes = 4"):
        crf(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 8))


def test_module_uses_lam_projected_onto_zero():
    """A torch optimizer may push lam below 0; the layer then computes with lam = 0 and
    lam still gets the gradient there (it can come back), as segnp's projected step."""
    conv = st.SegAwareConv2d(3, 5, 3)
    t = _inputs(torch.float32)
    x, e = t["x"].detach(), t["e"].detach()
    with torch.no_grad():
        conv.lam.fill_(-0.5)
    y = conv(x, e)
    y.square().sum().backward()
    ref = st.segaware_conv2d(x, e, conv.weight, conv.bias, 0.0)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    lam0 = torch.tensor(0.0, requires_grad=True)
    st.segaware_conv2d(x, e, conv.weight.detach(), conv.bias.detach(), lam0).square().sum() \
        .backward()
    torch.testing.assert_close(conv.lam.grad, lam0.grad)
    assert conv.lam.grad != 0


def test_torch_model_trains_with_torch_optim():
    """A two-layer torch model around segnp.torch.SegAwareConv2d: Adam lowers its loss,
    and every parameter (lam included) and the embeddings get gradients."""
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({
        "aware": st.SegAwareConv2d(3, 8, 3, lam_init=0.5),
        "head": torch.nn.Conv2d(8, 2, 1)})
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(4, 12, 12, generator=g) > 0.5).long()
    x = labels[:, None].float().repeat(1, 3, 1, 1) + 0.5 * torch.randn(4, 3, 12, 12,
                                                                       generator=g)
    e = torch.randn(4, 2, 12, 12, generator=g, requires_grad=True)
    opt = torch.optim.Adam(list(model.parameters()) + [e], lr=0.05)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        logits = model["head"](torch.relu(model["aware"](x, e)))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        loss.backward()
        assert all(p.grad is not None for p in model.parameters()) and e.grad is not None
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_example_script_runs(capsys):
    """examples/torch_segaware.py trains a few steps; a bad option is one line, exit 2."""
    import importlib.util
    from segnp.experiments.cli import run_script
    spec = importlib.util.spec_from_file_location(
        "example_torch_segaware", os.path.join(ROOT, "examples", "torch_segaware.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert run_script(example.main, ["--steps", "6", "--size", "16", "--batch", "2",
                                     "--width", "4"]) == 0
    out = capsys.readouterr().out
    assert "step    6  loss" in out and "held-out pixel accuracy" in out
    for bad, what in ((["--steps", "0"], "--steps must be >= 1"),
                      (["--lr", "nan"], "--lr must be a finite number > 0"),
                      (["--device", "cuda:x"], "--device")):
        assert run_script(example.main, bad) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and what in err, err


# ---- CUDA ----------------------------------------------------------------------------------
def _cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for PyTorch")
    cupy = pytest.importorskip("cupy", reason="cupy (the 'test' extra) is not installed")
    if not cupy.is_available():
        pytest.skip("CuPy sees no CUDA device")
    return cupy


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_gradcheck_and_parity_with_cpu(name):
    _cuda()
    bridge = CASES[name][0]
    inputs = _case_inputs(name, torch.float64, "cuda", N=1, H=5, W=6)
    assert torch.autograd.gradcheck(bridge, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)
    cpu = _case_inputs(name, torch.float32)
    gpu = _case_inputs(name, torch.float32, "cuda")
    for ts in (cpu, gpu):
        y = bridge(*ts)
        y.backward(torch.ones_like(y))
        ts.append(y)
    for a, b in zip(cpu, gpu):
        got = b.grad if b.grad is not None else b
        want = a.grad if a.grad is not None else a
        torch.testing.assert_close(got.cpu(), want.detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_cuda_runs_on_torchs_current_stream_without_copies(monkeypatch):
    cupy = _cuda()
    t = _inputs(torch.float32, "cuda")
    x, e, W = (t[n].detach() for n in ("x", "e", "W"))
    backend = get_backend("cupy")
    seen = []
    original = backend.im2dist

    def spy(e_array, *args, **kwargs):
        seen.append((e_array.data.ptr, cupy.cuda.get_current_stream().ptr))
        return original(e_array, *args, **kwargs)

    monkeypatch.setattr(backend, "im2dist", spy)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        y = st.segaware_conv2d(x, e, W, None, 0.5)
    side.synchronize()
    assert seen == [(e.data_ptr(), side.cuda_stream)]
    ref = st.segaware_conv2d(x.cpu(), e.cpu(), W.cpu(), None, 0.5)
    torch.testing.assert_close(y.cpu(), ref, rtol=1e-4, atol=1e-5)


def test_in_place_change_of_the_transposed_convolutions_input_is_refused():
    """The transposed convolution keeps x, m and W for backward, each of which segnp.torch
    saves, so changing x in place before backward is refused, not silently wrong."""
    x, e, W, b, lam = _case_inputs("segaware_conv_transpose2d", torch.float64)
    h = x.detach().clone().requires_grad_(True) * 1.0
    y = st.segaware_conv_transpose2d(h, e.detach(), W.detach().requires_grad_(True), None,
                                     0.5, 2, 1, 1)
    with torch.no_grad():
        h.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
