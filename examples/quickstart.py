"""Quick start: train a small fully convolutional network on generated images.

The data is made on the fly (nothing to download): noisy colour images holding a few
discs and squares; every pixel is labelled background (0), disc (1) or square (2).
Telling a disc from a square needs context, not just colour, so the network pools,
uses a dilated convolution and upsamples back, like a miniature DeepLab.

    python examples/quickstart.py            # about 10 s on 2 CPU cores
    python examples/quickstart.py --help

It prints the training loss (it should fall), then the pixel accuracy and mIoU on
held-out images, and can save a checkpoint with ``--checkpoint PATH``.
"""
import os
import sys
import time

import numpy as np

try:
    import segnp
except ImportError:  # run from a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import segnp
import segnp.functions as F
from segnp import nn, optim
from segnp.atomic import check_writable
from segnp.command import (Parser, nonnegative_int, positive_float, positive_int,
                           run_command)
from segnp.metrics import confusion_matrix, miou, pixel_accuracy

NUM_CLASSES = 3


def make_images(n, size, rng):
    """n images (n, 3, size, size) float32 and labels (n, size, size) int64."""
    yy, xx = np.mgrid[:size, :size]
    images = rng.uniform(0.0, 0.3, (n, 3, size, size))
    labels = np.zeros((n, size, size), np.int64)
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            kind = rng.integers(1, NUM_CLASSES)
            r = rng.uniform(size / 10, size / 5)
            cy, cx = rng.uniform(r, size - r, 2)
            if kind == 1:
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            else:
                inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
            # Same colour distribution for both shapes: only the outline tells them apart.
            images[i][:, inside] = rng.uniform(0.4, 1.0, (3, 1))
            labels[i][inside] = kind
    images += rng.normal(0.0, 0.05, images.shape)
    return images.astype(np.float32), labels


class TinySegNet(nn.Module):
    """conv-relu x2, max-pool /2, dilated conv, 1x1 classifier, bilinear upsample x2."""

    def __init__(self, width=16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=2, dilation=2), nn.ReLU())
        self.classifier = nn.Conv2d(2 * width, NUM_CLASSES, 1)
        self.upsample = nn.Upsample(scale_factor=2)

    def forward(self, x):
        return self.upsample(self.classifier(self.features(x)))


def evaluate(model, images, labels):
    model.eval()
    with segnp.no_grad():
        pred = model(segnp.Tensor(images)).numpy().argmax(axis=1)
    model.train()
    conf = confusion_matrix(pred, labels, NUM_CLASSES)
    return pixel_accuracy(conf), miou(conf)


def main(argv=None):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=positive_int, default=150,
                        help="training iterations")
    parser.add_argument("--batch", type=positive_int, default=8)
    parser.add_argument("--size", type=positive_int, default=32, help="image side in pixels")
    parser.add_argument("--lr", type=positive_float, default=0.05)
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--backend", default=None,
                        choices=segnp.backends.available_backends(),
                        help="array backend (default: $SEGNP_BACKEND, else cupy when a GPU "
                        "is present, else numpy)")
    parser.add_argument("--checkpoint", default=None, help="save the model here at the end")
    args = parser.parse_args(argv)
    if args.checkpoint:   # now, not after the training
        check_writable("--checkpoint", args.checkpoint)

    if args.backend:
        segnp.set_backend(args.backend)
    segnp.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_x, train_y = make_images(64, args.size, rng)
    test_x, test_y = make_images(32, args.size, rng)

    model = TinySegNet()
    # Caffe's lr_mult: biases learn twice as fast as weights.
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    opt = optim.SGD([{"params": weights}, {"params": biases, "lr": 2 * args.lr}],
                    lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = optim.PolyLR(opt, max_iters=args.iters, power=0.9)

    print(f"segnp {segnp.__version__} on the {segnp.get_backend().name} backend; "
          f"{sum(p.size for p in model.parameters())} parameters")
    start = time.perf_counter()
    running = None
    for it in range(1, args.iters + 1):
        idx = rng.choice(len(train_x), args.batch, replace=False)
        logits = model(segnp.Tensor(train_x[idx]))
        loss = F.softmax_cross_entropy(logits, train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        value = float(loss.item())
        running = value if running is None else 0.9 * running + 0.1 * value
        if it == 1 or it % 10 == 0:
            print(f"iter {it:4d}  loss {value:.4f}  (running {running:.4f})  "
                  f"lr {opt.param_groups[0]['lr']:.4f}")
    acc, m = evaluate(model, test_x, test_y)
    print(f"held-out pixel accuracy {acc:.3f}  mIoU {m:.3f}  "
          f"({time.perf_counter() - start:.1f} s)")
    if args.checkpoint:
        segnp.save(args.checkpoint, model, opt, iteration=args.iters,
                   scheduler=sched.state_dict())
        print(f"saved {args.checkpoint}")


if __name__ == "__main__":
    sys.exit(run_command(main))
