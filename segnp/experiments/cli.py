"""Command-line pieces shared by the example scripts: the common options (backend,
seed, output folder, data, fine-tuning from checkpoints) and loading what they name."""
import argparse
import json
import os

from .. import distributed
from ..backends import set_backend
from .data import load_split
from .runs import load_state

__all__ = ["base_parser", "add_data_args", "add_train_args", "add_finetune_args", "setup",
           "load_data", "load_finetune", "write_json"]


def base_parser(description):
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backend", default="numpy", help="array backend: numpy, cupy or "
                   "emulator")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, data order "
                   "and augmentation")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def add_data_args(p):
    g = p.add_argument_group("data (HDF5 files, docs/datasets.md; without them FlyingShapes "
                             "is generated into the cache)")
    g.add_argument("--train-data", help="training HDF5 file")
    g.add_argument("--test-data", help="test HDF5 file")
    g.add_argument("--count", type=int, default=256, help="generated training scenes (or "
                   "the most samples read from --train-data)")
    g.add_argument("--test-count", type=int, default=64, help="generated test scenes")
    g.add_argument("--size", type=int, default=64, help="generated scene size (pixels)")
    g.add_argument("--cache", default=None, help="cache folder for generated data "
                   "(default $SEGNP_CACHE or ~/.cache/segnp)")
    return p


def add_train_args(p, out, epochs, lr, batch_size=8):
    p.add_argument("--out", default=out, help="run folder: checkpoint.npz, log.json, "
                   "log.csv")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--lr", type=float, default=lr, help="base learning rate")
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in "
                   "--out")
    return p


def add_finetune_args(p):
    """Options of the task scripts that start from checkpoints: the pre-trained
    embedder, an initial network, Eq. 7's normalisation and the lr multipliers."""
    p.add_argument("--embedder", help="checkpoint of train_embeddings.py")
    p.add_argument("--init", help="checkpoint to start from (e.g. the trained baseline)")
    p.add_argument("--segaware-normalize", choices=("auto", "yes", "no"), default="auto",
                   help="divide segmentation-aware convolutions by their mask sum (Eq. 7); "
                   "auto: yes when training from scratch, no with --init (then lam = 0 "
                   "computes exactly what the initial plain network did)")
    p.add_argument("--lam-mult", type=float, default=10.0, help="lr multiplier of the lams")
    p.add_argument("--embedder-mult", type=float, default=0.1,
                   help="lr multiplier of the embedding network (0 freezes it)")
    return p


def load_finetune(args):
    """(embedder, init, model overrides) named by :func:`add_finetune_args`' options:
    the embedder's (state, config) or None, the initial state dict or None, and
    ``{"segaware_normalize": ...}`` with 'auto' resolved."""
    embedder = load_state(args.embedder) if args.embedder else None
    init = load_state(args.init)[0] if args.init else None
    normalize = {"yes": True, "no": False, "auto": init is None}[args.segaware_normalize]
    return embedder, init, {"segaware_normalize": normalize}


def setup(args):
    set_backend(args.backend)
    distributed.script_setup(args)  # under mpiexec: join the job; rank 0 alone reports


def load_data(args, kind, test=True):
    """(train, test) in-memory datasets of ``kind`` named by the data options."""
    progress = not getattr(args, "no_progress", False)
    train = load_split(kind, args.train_data, "train", args.count, args.size, args.cache,
                       progress=progress)
    tst = None
    if test:
        tst = load_split(kind, args.test_data, "test", args.test_count, args.size,
                         args.cache, progress=progress)
    return train, tst


def write_json(path, obj):
    from ..io import atomic_path
    if distributed.rank() != 0:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
