"""Command-line pieces shared by the example scripts: the common options (backend,
seed, output folder, data, fine-tuning from checkpoints), loading what they name, the
guard of a run folder, and :func:`run_script`, which turns user errors into one line.

A run folder holds ``checkpoint.npz``, ``log.json``, ``log.csv`` and ``options.json``
(the script's options, written before training starts).  :func:`prepare_run` refuses
to reuse a folder that holds a run unless ``--resume`` (continue it, with the same
options; a larger ``--epochs`` extends it) or ``--overwrite`` (delete it and start over)
is given.

Heavy modules (the models, h5py, scipy) are imported only when a script runs, so that
``--help`` answers at once.
"""
import argparse
import json
import logging
import os
import signal
import sys

from .. import distributed
from ..backends import available_backends, set_backend

__all__ = ["RunError", "base_parser", "add_data_args", "add_train_args",
           "add_finetune_args", "setup", "prepare_run", "load_data", "load_finetune",
           "check_classes", "record_classes", "read_options", "run_options",
           "check_test_data", "check_writable", "write_json", "run_script", "OPTIONS_NAME"]

OPTIONS_NAME = "options.json"
# Options that may differ when a run is resumed: they change neither the data, the
# model nor the optimisation of the epochs already done.
_FREE_ON_RESUME = ("epochs", "resume", "overwrite", "backend", "no_progress", "cache")
# Options naming files: stored as absolute paths, so that a resume from another
# working directory compares the same files.
_PATH_OPTIONS = ("train_data", "test_data", "embedder", "init")
_RUN_FILES = ("checkpoint.npz", "log.json", "log.csv", OPTIONS_NAME)

log = logging.getLogger("segnp")


class RunError(ValueError):
    """A user error that a script reports in one line (a refused run, a wrong file)."""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):
        # Help texts that already say what the default is keep their own words; an
        # option without a default says nothing.
        if "default" in (action.help or "") or action.default is None:
            return action.help
        return super()._get_help_string(action)


def base_parser(description):
    p = argparse.ArgumentParser(description=description, formatter_class=_Formatter)
    p.add_argument("--backend", choices=available_backends(), default=None,
                   help="array backend (default: $SEGNP_BACKEND, else cupy when a GPU is "
                   "present, else numpy)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, data order "
                   "and augmentation")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (training "
                   "still prints one line per epoch)")
    return p


def add_data_args(p):
    g = p.add_argument_group("data (HDF5 files, docs/datasets.md; without them FlyingShapes "
                             "is generated into the cache)")
    g.add_argument("--train-data", help="training HDF5 file (needs --test-data)")
    g.add_argument("--test-data", help="test HDF5 file, with the classes of --train-data")
    g.add_argument("--count", type=int, default=256, help="generated training scenes (or "
                   "the most samples read from --train-data)")
    g.add_argument("--test-count", type=int, default=64, help="generated test scenes (or "
                   "the most samples read from --test-data)")
    g.add_argument("--size", type=int, default=64, help="generated scene size (pixels)")
    g.add_argument("--cache", default=None, help="cache folder for generated data "
                   "(default: $SEGNP_CACHE or ~/.cache/segnp)")
    return p


def add_train_args(p, out, epochs, lr, batch_size=8):
    p.add_argument("--out", default=out, help="run folder: checkpoint.npz, log.json, "
                   "log.csv, options.json")
    p.add_argument("--epochs", type=int, default=epochs, help="epochs in all; with "
                   "--resume, a larger number extends the run (the poly lr schedule is "
                   "stretched to the new length)")
    p.add_argument("--lr", type=float, default=lr, help="base learning rate")
    p.add_argument("--batch-size", type=int, default=batch_size, help="samples per "
                   "training step")
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true", help="continue the run in --out "
                      "(its options must be the same, except --epochs)")
    runs.add_argument("--overwrite", action="store_true", help="delete the run in --out "
                      "and start over")
    return p


def add_finetune_args(p):
    """Options of the task scripts that start from checkpoints: the pre-trained
    embedder, an initial network, Eq. 7's normalisation and the lr multipliers."""
    p.add_argument("--embedder", help="checkpoint of train_embeddings.py")
    p.add_argument("--init", help="checkpoint of the same task to start from (e.g. the "
                   "trained baseline); copies the tensors whose names match")
    p.add_argument("--segaware-normalize", choices=("auto", "yes", "no"), default="auto",
                   help="divide segmentation-aware convolutions by their mask sum (Eq. 7); "
                   "auto: yes when training from scratch, no with --init (then lam = 0 "
                   "computes exactly what the initial plain network did)")
    p.add_argument("--lam-mult", type=float, default=10.0, help="lr multiplier of the lams")
    p.add_argument("--embedder-mult", type=float, default=0.1,
                   help="lr multiplier of the embedding network (0 freezes it)")
    return p


def _checkpoint_config(path, option):
    """The run config of the checkpoint named by ``option``, with errors naming both."""
    from .. import serialization
    if not os.path.isfile(path):
        raise RunError(f"{option}: no such file {path!r}")
    ckpt = serialization.read_checkpoint(path)
    config = ckpt["extra"].get("config")
    if not isinstance(config, dict) or "task" not in config:
        raise RunError(f"{option}: {path!r} is a segnp checkpoint without a run config; "
                       f"expected one written by a training script")
    return ckpt["model"], config


def load_finetune(args, task):
    """(embedder, init, model overrides) named by :func:`add_finetune_args`' options:
    the embedder's (state, config) or None, the initial state dict or None, and
    ``{"segaware_normalize": ...}`` with 'auto' resolved.  ``task`` is the script's
    ('segmentation' or 'flow'); a checkpoint of another task is refused."""
    embedder = init = None
    if args.embedder:
        state, config = _checkpoint_config(args.embedder, "--embedder")
        if config["task"] != "embedding":
            raise RunError(f"--embedder: {args.embedder!r} holds a {config['task']!r} run; "
                           f"expected a checkpoint of train_embeddings.py (task "
                           f"'embedding')")
        embedder = (state, config)
    if args.init:
        state, config = _checkpoint_config(args.init, "--init")
        if config["task"] != task:
            raise RunError(f"--init: {args.init!r} holds a {config['task']!r} run; "
                           f"expected a checkpoint of the task {task!r}")
        init = state
    normalize = {"yes": True, "no": False, "auto": init is None}[args.segaware_normalize]
    return embedder, init, {"segaware_normalize": normalize}


def setup(args):
    """Configure the scripts' messages (one line each, on stderr) and the backend: the
    one named by --backend, else the library's choice ($SEGNP_BACKEND or auto)."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    if args.backend:
        set_backend(args.backend)
    distributed.script_setup(args)  # under mpiexec: join the job; rank 0 alone reports


def _options(args):
    opts = {}
    for k, v in sorted(vars(args).items()):
        if k in _FREE_ON_RESUME:
            continue
        if k in _PATH_OPTIONS and v:
            v = os.path.abspath(v)
        opts[k] = v
    return opts


def read_options(run_dir):
    """The options a script recorded in ``run_dir`` (a dict), or None if there are none."""
    path = os.path.join(run_dir, OPTIONS_NAME)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise RunError(f"{path!r} is not a readable options file ({err})") from err


def _flag(key):
    return "--" + key.replace("_", "-")


def _epochs_done(ckpt_path):
    """(epochs done, whether the run finished) of a Trainer checkpoint."""
    from .. import serialization
    extra = serialization.read_checkpoint(ckpt_path)["extra"]
    return extra.get("epoch"), bool(extra.get("finished"))


def prepare_run(args):
    """Check the run folder ``args.out`` before any work, then record the options.

    A folder holds a run once an epoch has finished (a checkpoint; options without one
    are simply replaced).  Refuses (RunError) a folder holding a run unless --resume or
    --overwrite is given, and a --resume whose options differ from the recorded ones
    (listing every difference).  --resume without a checkpoint says that the run starts fresh;
    --overwrite deletes the run's files.  Writing options.json checks at once that
    --out can be written.
    """
    from .trainer import CHECKPOINT_NAME
    out = args.out
    ckpt = os.path.join(out, CHECKPOINT_NAME)
    has_ckpt = os.path.isfile(ckpt)
    done, finished = (_epochs_done(ckpt) if has_ckpt and not args.overwrite
                      else (None, False))
    now = _options(args)
    if has_ckpt and not (args.resume or args.overwrite):
        state = f"{'finished' if finished else 'unfinished'}, {done} epochs done"
        raise RunError(f"{out!r} already holds a run ({state}); add --resume "
                       f"to continue it (a larger --epochs extends it) or --overwrite to "
                       f"start over")
    if args.resume:
        if not has_ckpt:
            log.warning(f"--resume: no checkpoint in {out!r}; starting a fresh run")
        elif (recorded := read_options(out)) is None:
            log.warning(f"--resume: {out!r} has no {OPTIONS_NAME}, so the options cannot "
                        f"be compared with the run's")
        else:
            diff = [f"{_flag(k)} {recorded.get(k)!r} in the run, {now.get(k)!r} now"
                    for k in sorted(set(recorded) | set(now))
                    if k != "classes" and recorded.get(k) != now.get(k)]
            if diff:
                raise RunError(f"--resume: the options differ from those of the run in "
                               f"{out!r}: " + "; ".join(diff) + " (use the run's options, "
                               "or --overwrite to start over)")
        if done is not None and done >= args.epochs:
            log.warning(f"--resume: the run in {out!r} has done {done} epochs; --epochs "
                        f"{args.epochs} asks for no more (give a larger --epochs to extend "
                        f"it)")
    if args.overwrite and distributed.rank() == 0:   # one rank deletes, under mpiexec
        for name in _RUN_FILES:
            path = os.path.join(out, name)
            if os.path.isfile(path):
                os.remove(path)
    try:
        write_json(os.path.join(out, OPTIONS_NAME), now)
    except OSError as err:
        raise RunError(f"--out: cannot write to {out!r} ({err.strerror or err})") from err
    return now


def _classes(ds):
    return None if getattr(ds, "classes", None) is None else list(ds.classes)


def check_classes(train_classes, test, what):
    """Refuse test data whose class list differs from the one the model learned."""
    test_classes = _classes(test)
    if train_classes is not None and test_classes is not None \
            and list(train_classes) != test_classes:
        raise RunError(f"{what}: the test data has classes {test_classes}, but the "
                       f"model was trained on {list(train_classes)}")


def load_data(args, kind, test=True):
    """(train, test) in-memory datasets of ``kind`` named by the data options.

    A training file needs a test file (the model is never scored on generated scenes
    it was not trained for), and their class lists must be equal.
    """
    from .data import load_split
    if args.train_data and test and not args.test_data:
        raise RunError("--train-data needs --test-data: the test split of the same data "
                       "(FlyingShapes scenes would score the model on other classes)")
    progress = not getattr(args, "no_progress", False)
    train = load_split(kind, args.train_data, "train", args.count, args.size, args.cache,
                       progress=progress)
    tst = None
    if test:
        tst = load_split(kind, args.test_data, "test", args.test_count, args.size,
                         args.cache, progress=progress)
        check_classes(_classes(train), tst, "--test-data")
    return train, tst


def run_options(checkpoint):
    """The options recorded beside ``checkpoint`` ({} for a run without them)."""
    return read_options(os.path.dirname(os.path.abspath(checkpoint))) or {}


def check_test_data(checkpoint, test_data, what):
    """Refuse test data that cannot score the run of ``checkpoint``: generated scenes
    for a run trained on the user's file, or a file with other classes than the run's
    (read from the file's header, before any sample is loaded)."""
    options = run_options(checkpoint)
    if test_data is None:
        if options.get("train_data"):
            raise RunError(f"{what}: {checkpoint!r} was trained on "
                           f"{options['train_data']!r}; give --test-data (generated "
                           f"FlyingShapes would be other classes)")
        return
    if options.get("classes") is not None:
        from ..data import HDF5SegmentationDataset
        check_classes(options["classes"], HDF5SegmentationDataset(test_data), what)


def check_writable(path, option):
    """Fail now, not after the work, when the file ``path`` cannot be written."""
    from ..atomic import check_writable as check
    try:
        check(option, path)
    except ValueError as err:
        raise RunError(str(err)) from err


def record_classes(args, train):
    """Add the training classes to the run's options.json (evaluation compares them)."""
    opts = read_options(args.out) or {}
    opts["classes"] = _classes(train)
    write_json(os.path.join(args.out, OPTIONS_NAME), opts)


def write_json(path, obj):
    from ..io import atomic_path
    if distributed.rank() != 0:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)


def _one_line(err):
    text = str(err) or type(err).__name__
    return " ".join(text.split())


def run_script(main, argv=None, hint=""):
    """Run ``main(argv)`` as a command: returns the exit status.

    A user error (ValueError, OSError, a non-finite loss) prints one line on stderr and
    gives 2; Ctrl-C prints one line (and ``hint``) and gives 130; SIGTERM unwinds like
    Ctrl-C so that no temporary file stays behind.  ``SEGNP_TRACEBACK=1`` shows the
    traceback instead.
    """
    from ..atomic import cleanup_on_sigterm
    prog = os.path.basename(sys.argv[0]) or "segnp"
    previous = cleanup_on_sigterm()
    debug = os.environ.get("SEGNP_TRACEBACK", "") not in ("", "0")
    try:
        main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted{hint}", file=sys.stderr)
        return 130
    except (ValueError, OSError, FloatingPointError) as err:
        if debug:
            raise
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
