"""The paper's own networks in the training runs (``--arch paper`` of the scripts):
embedding_vgg16, DeepLab-LargeFOV on VGG-16 and the full FlowNetSimple, with the input
sizes and the training schedules of the papers they come from.

A run picks them with ``model={"arch": "paper", ...}``; their constructors' defaults
are the paper's, so the small networks' defaults (``runs.EMBEDDING_DEFAULTS`` ...) are
not applied.  Inputs are cropped at random to the paper's size and enter the networks
as Caffe's VGG-16 expects them, ``rgb - mean`` in 0..255 (scale 1), so that VGG-16's
weights (``vgg16=``, loaded into the VGG layers) see what they were trained on.

Schedules (:data:`SCRIPT_DEFAULTS`, the scripts' defaults under ``--arch paper``):

* segmentation, DeepLab-LargeFOV (Chen et al., ICLR 2015): SGD, momentum 0.9, weight
  decay 5e-4, lr 1e-3, batches of 20 321x321 crops, 6,000 iterations, which is 11
  epochs of VOC's 10,582 augmented training images.  DeepLab divides the lr by 10
  every 2,000 iterations and trains FC8 at 10x; here the lr decays by the poly rule
  (as DeepLab v2) and every layer but the lams has the base lr.
* flow, FlowNetSimple (Dosovitskiy et al., ICCV 2015): Adam (0.9, 0.999), lr 1e-4,
  batches of 8 384x512 crops, about 600,000 iterations (FlowNet 2.0's account of the
  schedule), which is 216 epochs of FlyingChairs' 22,232 training pairs.  FlowNet
  halves the lr every 100,000 iterations after 300,000; here it decays by the poly rule.
* embedding: the paper gives no schedule for Sec. 4.1; Adam at 1e-4 (fine-tuning
  VGG-16's layers), batches of 10 321x321 crops, 10 epochs of VOC.
"""
import argparse

__all__ = ["ARCH_CHOICES", "PAPER_CROPS", "PAPER_INPUT_SCALE", "SCRIPT_DEFAULTS",
           "is_paper", "add_arch_args"]

ARCH_CHOICES = ("small", "paper")
PAPER_CROPS = {"embedding": (321, 321), "segmentation": (321, 321), "flow": (384, 512)}
PAPER_INPUT_SCALE = 1.0
SCRIPT_DEFAULTS = {
    "embedding": {"epochs": 10, "lr": 1e-4, "batch_size": 10, "embed_dim": 64,
                  "widths": [64, 128, 256]},
    "segmentation": {"epochs": 11, "lr": 1e-3, "batch_size": 20, "optimizer": "sgd"},
    "flow": {"epochs": 216, "lr": 1e-4, "batch_size": 8},
}


def is_paper(model):
    """Whether a run's model overrides pick the paper's networks."""
    arch = (model or {}).get("arch", "small")
    if arch not in ARCH_CHOICES:
        raise ValueError(f"model 'arch' must be one of {ARCH_CHOICES}; got {arch!r}")
    return arch == "paper"


def add_arch_args(p, task, argv=None):
    """``--arch`` and ``--vgg16`` on the parser ``p`` of a ``task`` script; under
    ``--arch paper`` (read from ``argv`` first) the defaults become the paper's
    schedule (:data:`SCRIPT_DEFAULTS`), so that ``--help`` shows them too."""
    p.add_argument("--arch", choices=ARCH_CHOICES, default="small",
                   help="small: the networks that train on a CPU; paper: the paper's own "
                        "(embedding_vgg16, DeepLab-LargeFOV, FlowNetSimple; a GPU run), with "
                        "its input crops and schedule as defaults (docs/paper.md)")
    if task != "flow":
        p.add_argument("--vgg16", help="VGG-16 weights (Keras .h5 or torchvision .npz) for "
                                       "the VGG layers of --arch paper")
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--arch", choices=ARCH_CHOICES, default="small")
    if pre.parse_known_args(argv)[0].arch == "paper":
        p.set_defaults(**SCRIPT_DEFAULTS[task])
    return p
