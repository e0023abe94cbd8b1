"""A PyTorch training loop with segnp's segmentation-aware convolution (segnp.torch).

A small PyTorch network labels the pixels of generated FlyingShapes scenes
(segnp.data.flyingshapes: textured objects of 6 classes on a textured background,
nothing to download).  An embedding branch of two convolutions gives each pixel an embedding; two
``segnp.torch.SegAwareConv2d`` layers use them to mask their windows (Eq. 7 of the
paper), so features stop mixing across object boundaries.  Everything else is plain
PyTorch: ``torch.nn`` layers, ``torch.optim.Adam`` and autograd, which reaches segnp's
kernels through ``segnp.torch`` (docs/torch.md).

    python examples/torch_segaware.py                 # about 10 s on 2 CPU cores
    python examples/torch_segaware.py --device cuda   # needs CuPy (segnp[cuda13])

Needs PyTorch: pip install segnp[torch].
"""
import argparse
import math
import os
import sys
import time

import numpy as np

try:
    import segnp  # noqa: F401
except ImportError:  # a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from segnp.data.flyingshapes import render_scene
from segnp.experiments.cli import run_script

CLASSES = 6  # FlyingShapes' object classes; labels 0 (background) .. CLASSES


def make_images(n, size, seed):
    """n FlyingShapes scenes: images (n, 3, size, size) float32 in [-1, 1], labels
    (n, size, size) int64."""
    scenes = [render_scene(seed, i, (size, size), CLASSES) for i in range(n)]
    images = np.stack([s["image1"] for s in scenes]).transpose(0, 3, 1, 2)
    labels = np.stack([s["label"] for s in scenes]).astype(np.int64)
    return (images / 127.5 - 1.0).astype(np.float32), labels


def build_model(torch, st, width, embedding_dim):
    nn = torch.nn

    class Net(nn.Module):
        """embeddings: conv-relu-conv; features: conv, two segmentation-aware 3x3
        convolutions (the second dilated), a 1x1 classifier."""

        def __init__(self):
            super().__init__()
            self.embed = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                       nn.Conv2d(16, embedding_dim, 3, padding=1))
            self.stem = nn.Conv2d(3, width, 3, padding=1)
            self.aware1 = st.SegAwareConv2d(width, width, 3, lam_init=1.0)
            self.aware2 = st.SegAwareConv2d(width, width, 3, dilation=2, lam_init=1.0)
            self.classifier = nn.Conv2d(width, CLASSES + 1, 1)

        def forward(self, x):
            e = self.embed(x)
            h = torch.relu(self.stem(x))
            h = torch.relu(self.aware1(h, e))
            h = torch.relu(self.aware2(h, e))
            return self.classifier(h)

    return Net()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=60, help="training steps (Adam)")
    p.add_argument("--batch", type=int, default=8, help="images per step")
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--width", type=int, default=16, help="feature channels")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the data")
    p.add_argument("--device", default="cpu", help="a torch device: cpu, cuda, cuda:1")
    args = p.parse_args(argv)
    for name in ("steps", "batch", "width"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1; got {getattr(args, name)}")
    if args.size < 8:
        raise ValueError(f"--size must be >= 8 (pixels); got {args.size}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise ValueError(f"--lr must be a finite number > 0; got {args.lr}")
    try:
        import torch
        import segnp.torch as st
    except ImportError as err:
        raise ValueError(f"{err}") from None
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ValueError(f"--device: not a torch device: {args.device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: PyTorch sees no CUDA device")

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_x, train_y = make_images(64, args.size, seed=args.seed)
    test_x, test_y = make_images(32, args.size, seed=args.seed + 10_000)
    model = build_model(torch, st, args.width, embedding_dim=4).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    print(f"torch {torch.__version__} on {device}; "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = rng.choice(len(train_x), args.batch, replace=False)
        x = torch.from_numpy(train_x[idx]).to(device)
        y = torch.from_numpy(train_y[idx]).to(device)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"the loss is {loss.item()} at step {step}; "
                                     f"try a smaller --lr")
        if step == 1 or step % 20 == 0 or step == args.steps:
            lams = ", ".join(f"{m.lam.item():.2f}" for m in (model.aware1, model.aware2))
            print(f"step {step:4d}  loss {loss.item():.4f}  lams {lams}")
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(test_x).to(device)).argmax(1).cpu().numpy()
    print(f"held-out pixel accuracy {(pred == test_y).mean():.3f}  "
          f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    sys.exit(run_script(main))
