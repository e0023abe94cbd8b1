"""segnp next to PyTorch CPU, in one process: the figures of issue 12's table.

Needs ``torch`` (not a dependency of segnp: install it into a scratch virtualenv and run
this file with that interpreter and ``PYTHONPATH`` pointing at segnp).  Without torch it
prints the segnp figures only.  Workloads, float32, on all cores:

1. the SegNet training step of ``bench_train.py`` (forward, backward, Adam), plain and with
   every 3x3 convolution segmentation-aware; PyTorch's segmentation-aware layer is the
   unfold-style implementation below (``torch.nn.functional.unfold`` of x and e, the
   mask of Eq. 3 from the unfolded embeddings, one batched product);
2. ``conv2d`` forward+backward, N=8, C=F=64, 128x128, 3x3, padding 1, gradients to x, W, b;
3. ``segaware_conv2d`` forward+backward, same shape, D=16, l1, normalised, lam=0.5,
   gradients to x, e, W, b and lam; and its peak memory;
4. ``segaware_conv_transpose2d`` forward+backward (issue 22): N=8, C=F=32, 64x64 in, x2
   up (k=5, stride 2, padding 2, output_padding 1) to 128x128, e (N, 16, 128, 128), l1,
   normalised, lam=0.5, gradients to x, e, W, b and lam, against the unfold-style peer
   below (unfold e at the output, the mask, one product, fold); and its peak memory;
5. ``segaware_avg_pool2d`` forward+backward, x (8, 32, 128, 128), e (8, 16, 128, 128),
   3x3 stride 2, against its unfold peer; and its peak memory.

segnp and PyTorch run in alternation, ``--repeat`` rounds; each figure is the minimum over
the rounds (other work on the machine only ever adds time).  Peak memory is the growth of
the peak resident set during one forward+backward, each measured in a fresh subprocess.

Run:  /path/to/venv/bin/python benchmarks/compare_torch.py [--repeat 7]
      [--only train|conv|segaware|transpose|pool]
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import segnp  # noqa: E402
from segnp import functions as SF  # noqa: E402
from segnp.allocator import keep_freed_memory  # noqa: E402
import bench_train  # noqa: E402

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # segnp alone
    torch = None

N, C, FILTERS, D, H, W, K = 8, 64, 64, 16, 128, 128, 3
NORM_EPS = 1e-6


# ---- PyTorch peers --------------------------------------------------------------------
def torch_segaware_conv(x, e, weight, bias, lam, dilation=1, normalize=True):
    """Eq. 7 the unfold way: x (N, C, H, W), e (N, D, H, W), weight (F, C, k, k)."""
    n, c, h, w = x.shape
    f, _, k, _ = weight.shape
    pad = dilation * (k // 2)
    unfold = dict(kernel_size=k, dilation=dilation, padding=pad)
    taps = TF.unfold(e, **unfold).view(n, e.shape[1], k * k, h * w)
    centre = e.reshape(n, e.shape[1], 1, h * w)
    dist = (centre - taps).abs().sum(1)  # (N, K, L)
    valid = TF.unfold(torch.ones(1, 1, h, w, dtype=x.dtype), **unfold)  # (1, K, L)
    m = torch.exp(-lam * dist) * valid
    cols = TF.unfold(x, **unfold).view(n, c, k * k, h * w) * m[:, None]
    y = weight.view(f, -1) @ cols.view(n, c * k * k, h * w)
    if normalize:
        y = y / (m.sum(1, keepdim=True) + NORM_EPS)
    return (y + bias[:, None]).view(n, f, h, w)


def _mask(e, k, **unfold):
    """m (N, K, L): exp(-lam ||e_tap - e_centre||_1) * valid over the unfolded windows of
    e (the centre is tap K//2), without lam; and the validity (1, K, L)."""
    n, d = e.shape[:2]
    taps = TF.unfold(e, k, **unfold).view(n, d, k * k, -1)
    dist = (taps - taps[:, :, k * k // 2:k * k // 2 + 1]).abs().sum(1)
    valid = TF.unfold(torch.ones((1, 1) + e.shape[2:], dtype=e.dtype), k, **unfold)
    return dist, valid


def torch_segaware_conv_transpose(x, e, weight, bias, lam, stride, padding, output_padding,
                                  normalize=True):
    """segaware_conv_transpose2d the unfold way: x (N, C, H, W), e (N, D, OH, OW) at the
    output, weight (C, F, k, k).  Sample i's taps land on the window of the strided
    convolution of the output that reads sample i, so unfolding e with that window gives
    each tap's embedding and the sample's own (the centre); the masked columns
    (N, F*K, H*W) are folded (col2im) onto the output."""
    n, c, h, w = x.shape
    _, f, k, _ = weight.shape
    oh, ow = e.shape[2:]
    unfold = dict(stride=stride, padding=padding)
    dist, valid = _mask(e, k, **unfold)
    m = torch.exp(-lam * dist) * valid  # (N, K, H*W)
    cols = (weight.reshape(c, f * k * k).t() @ x.reshape(n, c, h * w)).view(n, f, k * k, -1)
    y = TF.fold((cols * m[:, None]).view(n, f * k * k, -1), (oh, ow), k, **unfold)
    if normalize:
        y = y / (TF.fold(m, (oh, ow), k, **unfold) + NORM_EPS)
    return y + bias[:, None, None]


def torch_segaware_avg_pool(x, e, lam, k, stride):
    """segaware_avg_pool2d the unfold way: the mask-weighted mean of each k x k window."""
    n, c, h, w = x.shape
    unfold = dict(stride=stride, padding=k // 2)
    dist, valid = _mask(e, k, **unfold)
    m = torch.exp(-lam * dist) * valid
    cols = TF.unfold(x, k, **unfold).view(n, c, k * k, -1)
    y = (cols * m[:, None]).sum(2) / (m.sum(1, keepdim=True) + NORM_EPS)
    oh, ow = (h + 2 * (k // 2) - k) // stride + 1, (w + 2 * (k // 2) - k) // stride + 1
    return y.view(n, c, oh, ow)


class TorchSegNet(torch.nn.Module if torch else object):
    """segnp.models.SegNet's layout (see segnp/models/segnet.py) in PyTorch."""

    def __init__(self, classes, widths, fc_width, fc6_dilation, segaware):
        super().__init__()
        w1, w2, w3, w4 = widths
        spec = [(3, w1, 1), (w1, w1, 1), (w1, w2, 1), (w2, w2, 1), (w2, w3, 1), (w3, w3, 1),
                (w3, w4, 2), (w4, w4, 2), (w4, fc_width, fc6_dilation)]
        self.segaware = segaware
        self.dilations = [d for _, _, d in spec]
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv2d(a, b, 3, padding=d, dilation=d) for a, b, d in spec)
        self.lams = torch.nn.Parameter(torch.zeros(len(spec))) if segaware else None
        self.fc7 = torch.nn.Conv2d(fc_width, fc_width, 1)
        self.fc8 = torch.nn.Conv2d(fc_width, classes, 1)

    def forward(self, x, e):
        H, W = x.shape[2:]
        stride, h = 1, x
        for i, (conv, d) in enumerate(zip(self.convs, self.dilations)):
            if self.segaware:
                es = e[:, :, ::stride, ::stride]
                h = torch_segaware_conv(h, es, conv.weight, conv.bias, self.lams[i], d)
            else:
                h = conv(h)
            h = TF.relu(h)
            if i in (1, 3, 5):
                h = TF.max_pool2d(h, 3, stride=2, padding=1)
                stride *= 2
        h = TF.relu(self.fc7(h))
        s = self.fc8(h)
        hh, ww = s.shape[2:]
        s = TF.interpolate(s, size=(stride * (hh - 1) + 1, stride * (ww - 1) + 1),
                           mode="bilinear", align_corners=True)
        rows = torch.clamp(torch.arange(H), max=s.shape[2] - 1)
        cols = torch.clamp(torch.arange(W), max=s.shape[3] - 1)
        return s[:, :, rows][:, :, :, cols]


def torch_train_step(segaware, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    m = bench_train.MODEL
    net = TorchSegNet(bench_train.CLASSES, m["widths"], m["fc_width"], m["fc6_dilation"],
                      segaware)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    n, h, w = bench_train.N, bench_train.H, bench_train.W
    x = torch.from_numpy(rng.standard_normal((n, 3, h, w), dtype=np.float32))
    labels = torch.from_numpy(rng.integers(0, bench_train.CLASSES, (n, h, w)))
    e = torch.from_numpy(rng.standard_normal((n, bench_train.D, h, w), dtype=np.float32)
                         ).requires_grad_(segaware) if segaware else None

    def step():
        opt.zero_grad()
        if e is not None:
            e.grad = None
        loss = TF.cross_entropy(net(x, e), labels)
        loss.backward()
        opt.step()
        return float(loss)

    return step


# ---- single-layer workloads --------------------------------------------------------------
def layer_inputs():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((N, C, H, W), dtype=np.float32),
            rng.standard_normal((N, D, H, W), dtype=np.float32),
            (rng.standard_normal((FILTERS, C, K, K)) * 0.05).astype(np.float32),
            rng.standard_normal(FILTERS, dtype=np.float32),
            rng.standard_normal((N, FILTERS, H, W), dtype=np.float32))


def layer_step(lib, kind):
    """One forward+backward of conv2d or segaware_conv2d with ``lib`` 'segnp' or 'torch'."""
    arrays = layer_inputs()
    if lib == "segnp":
        x, e, w, b = (segnp.Tensor(a, requires_grad=True) for a in arrays[:4])
        lam = segnp.Tensor(np.float32(0.5), requires_grad=True)
        conv, aware = SF.conv2d, SF.segaware_conv2d
    else:
        x, e, w, b = (torch.from_numpy(a).requires_grad_(True) for a in arrays[:4])
        lam = torch.tensor(0.5, requires_grad=True)
        conv, aware = TF.conv2d, torch_segaware_conv
    gy = arrays[4] if lib == "segnp" else torch.from_numpy(arrays[4])

    def run():
        for t in (x, e, w, b, lam):
            t.grad = None
        y = conv(x, w, b, padding=1) if kind == "conv" else aware(x, e, w, b, lam)
        y.backward(gy)

    return run


# The resampling workloads of issue 22 (x2 up with k = 5; 3x3 pooling by 2).
UP = {"N": 8, "C": 32, "F": 32, "H": 64, "k": 5, "D": 16}


def resample_step(lib, kind):
    """One forward+backward of segaware_conv_transpose2d ('transpose') or
    segaware_avg_pool2d ('pool') with ``lib`` 'segnp' or 'torch'."""
    rng = np.random.default_rng(0)
    n, c, f, h, k, d = (UP[key] for key in ("N", "C", "F", "H", "k", "D"))
    big = 2 * h
    xs = (n, c, h, h) if kind == "transpose" else (n, c, big, big)
    arrays = [rng.standard_normal(xs, dtype=np.float32),
              rng.standard_normal((n, d, big, big), dtype=np.float32),
              (rng.standard_normal((c, f, k, k)) * 0.05).astype(np.float32),
              rng.standard_normal(f, dtype=np.float32)]
    gys = (n, f, big, big) if kind == "transpose" else (n, c, h, h)
    gy = rng.standard_normal(gys, dtype=np.float32)
    if lib == "segnp":
        x, e, wt, b = (segnp.Tensor(a, requires_grad=True) for a in arrays)
        lam = segnp.Tensor(np.float32(0.5), requires_grad=True)
        up = lambda: SF.segaware_conv_transpose2d(x, e, wt, b, lam, 2, 2, 1)  # noqa: E731
        pool = lambda: SF.segaware_avg_pool2d(x, e, 3, lam, 2)  # noqa: E731
    else:
        x, e, wt, b = (torch.from_numpy(a).requires_grad_(True) for a in arrays)
        lam = torch.tensor(0.5, requires_grad=True)
        gy = torch.from_numpy(gy)
        up = lambda: torch_segaware_conv_transpose(x, e, wt, b, lam, 2, 2, 1)  # noqa: E731
        pool = lambda: torch_segaware_avg_pool(x, e, lam, 3, 2)  # noqa: E731

    def run():
        for t in (x, e, wt, b, lam):
            t.grad = None
        (up if kind == "transpose" else pool)().backward(gy)

    return run


# ---- measuring ---------------------------------------------------------------------------
def best_time(fn, number):
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def compare(rows, repeat, settle):
    """rows: (label, segnp fn, torch fn or None, calls per round).  Returns min times.

    Each library's worker threads keep spinning for a while after its last call (OpenBLAS
    for up to ~0.1 s, OpenMP for its spin count) and would take a core from the other
    library's next round: ``settle`` seconds of sleep before each timing let them park.
    """
    best = {label: [float("inf"), float("inf")] for label, *_ in rows}
    for label, a, b, number in rows:  # warm-up
        a()
        if b is not None:
            b()
    for _ in range(repeat):
        for label, a, b, number in rows:
            time.sleep(settle)
            best[label][0] = min(best[label][0], best_time(a, number))
            if b is not None:
                time.sleep(settle)
                best[label][1] = min(best[label][1], best_time(b, number))
    return best


def peak_child(which, kind="segaware"):
    """In a subprocess: the peak RSS growth (bytes) of one forward+backward of ``kind``
    ('segaware', 'transpose' or 'pool')."""
    fn = layer_step(which, kind) if kind == "segaware" else resample_step(which, kind)
    rss = _status_kib("VmRSS")
    fn()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    return (_status_kib("VmHWM") - rss) * 1024


def _status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def peak_mib(which, kind="segaware"):
    out = subprocess.run([sys.executable, __file__, "--peak-child", which, "--peak-kind", kind],
                         check=True, capture_output=True, text=True, env=os.environ)
    return int(out.stdout.split()[-1]) / 2 ** 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", choices=("train", "conv", "segaware", "transpose", "pool"))
    parser.add_argument("--settle", type=float, default=0.5,
                        help="seconds of sleep before each timed round (see compare())")
    parser.add_argument("--peak-child", choices=("segnp", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--peak-kind", default="segaware", help=argparse.SUPPRESS)
    parser.add_argument("--malloc-default", action="store_true",
                        help="leave glibc's malloc thresholds alone (see segnp.allocator)")
    args = parser.parse_args()
    segnp.backends.set_backend("numpy")
    if args.peak_child:
        print(peak_child(args.peak_child, args.peak_kind))
        return
    # as segnp's Trainer does; torch allocates through the same malloc in this process
    kept = not args.malloc_default and keep_freed_memory()
    print(f"freed memory kept (segnp.allocator): {kept}")
    if torch is None:
        print("torch is not installed: printing segnp's figures only")
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"numpy {np.__version__}, {os.cpu_count()} cpus; min over {args.repeat} rounds, "
          f"segnp and torch alternating, {args.settle} s of sleep before each")
    rows = []
    want = (args.only,) if args.only else ("train", "conv", "segaware", "transpose", "pool")
    if "train" in want:
        for name, aware in (("SegNet step plain", False), ("SegNet step segaware", True)):
            rows.append((name, bench_train.make_step(aware),
                         torch_train_step(aware) if torch else None, 5))
    for kind, name in (("conv", "conv2d fwd+bwd"), ("segaware", "segaware_conv2d fwd+bwd")):
        if kind in want:
            rows.append((name, layer_step("segnp", kind),
                         layer_step("torch", kind) if torch else None, 1))
    for kind, name in (("transpose", "segaware_conv_transpose2d"),
                       ("pool", "segaware_avg_pool2d")):
        if kind in want:
            rows.append((name + " fwd+bwd", resample_step("segnp", kind),
                         resample_step("torch", kind) if torch else None, 1))
    best = compare(rows, args.repeat, args.settle)
    print(f"{'workload':26s} {'segnp':>10s} {'torch':>10s}  ratio")
    for label, (a, b) in best.items():
        if label.startswith("SegNet"):
            tb = f"{1 / b:7.1f}/s" if torch else "-"
            ratio = f"{b / a:.2f}x throughput" if torch else ""
            print(f"{label:26s} {1 / a:7.1f}/s {tb:>10s}  {ratio}")
        else:
            tb = f"{b:8.3f} s" if torch else "-"
            ratio = f"{a / b:.2f}x time" if torch else ""
            print(f"{label:26s} {a:8.3f} s {tb:>10s}  {ratio}")
    if "segaware" in want and "conv" in want:
        print(f"segaware_conv2d / segnp conv2d: "
              f"{best['segaware_conv2d fwd+bwd'][0] / best['conv2d fwd+bwd'][0]:.2f}x time")
    for kind, name in (("segaware", "segaware_conv2d"), ("transpose", "segaware_conv_transpose2d"),
                       ("pool", "segaware_avg_pool2d")):
        if kind not in want:
            continue
        mine = peak_mib("segnp", kind)
        line = f"{name} peak memory: segnp {mine:.0f} MiB"
        if torch:
            theirs = peak_mib("torch", kind)
            line += f", torch {theirs:.0f} MiB, ratio {mine / theirs:.2f}x"
        print(line)


if __name__ == "__main__":
    main()
