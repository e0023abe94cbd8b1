"""Command-line pieces shared by the example scripts: the common options (backend,
seed, output folder, data, fine-tuning from checkpoints), each checked as the command
line is read (:mod:`segnp.command`), loading what they name, the guard of a run folder,
and :func:`run_script`, which turns user errors into one line and exit status 2.

A run folder holds ``checkpoint.npz``, ``log.json``, ``log.csv`` and ``options.json``
(the script's options, written before training starts).  :func:`run_folder` refuses
to reuse a folder that holds a run unless ``--resume`` (continue it, with the same
options; a larger ``--epochs`` extends it) or ``--overwrite`` (replace it, once the new
run has a checkpoint) is given.

Heavy modules (the models, h5py, scipy) are imported only when a script runs, so that
``--help`` answers at once.
"""
import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys

from .. import distributed
from ..backends import available_backends, get_backend, set_backend
from ..command import (Parser, UserError, nonnegative_float, nonnegative_int, one_line,
                       positive_float, positive_int, run_command)

__all__ = ["RunError", "base_parser", "add_data_args", "add_train_args",
           "add_finetune_args", "setup", "run_folder", "check_inputs", "load_data",
           "load_finetune", "check_classes", "record_classes", "read_options",
           "run_options", "check_test_data", "check_writable", "write_json", "run_script",
           "OPTIONS_NAME"]

OPTIONS_NAME = "options.json"
# Options that may differ when a run is resumed: they change neither the data, the
# model nor the optimisation of the epochs already done.  The run folder is where the
# run is now, whatever --out it was started with.
_FREE_ON_RESUME = ("epochs", "resume", "overwrite", "backend", "no_progress", "cache",
                   "out")
# Options naming input files: recorded with their absolute path and SHA-256; --resume
# compares the contents, so a moved file is the same input.
_INPUT_FILES = ("train_data", "test_data", "embedder", "init", "vgg16")
# What --overwrite replaces: the run's files and what the scripts wrote about it.
_REPLACED_FILES = ("checkpoint.npz", "log.json", "log.csv", OPTIONS_NAME,
                   "mask_quality.json", "metrics.json")
_ASIDE_PREFIX = ".replaced-"

log = logging.getLogger("segnp")

# A user error that a script reports in one line (a refused run, a wrong file).
RunError = UserError


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):
        # Help texts that already say what the default is keep their own words; an
        # option without a default says nothing.
        if "default" in (action.help or "") or action.default is None:
            return action.help
        return super()._get_help_string(action)


def base_parser(description, seed=True):
    """The parser of a script: one-line errors, no abbreviated options, --backend,
    --seed (unless ``seed`` is False) and --no-progress."""
    p = Parser(description=description, formatter_class=_Formatter)
    p.add_argument("--backend", choices=available_backends(), default=None,
                   help="array backend (default: $SEGNP_BACKEND, else cupy when a GPU is "
                   "present, else numpy)")
    if seed:
        p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the "
                       "weights, data order and augmentation")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (training "
                   "still prints one line per epoch)")
    return p


def add_data_args(p):
    g = p.add_argument_group("data (HDF5 files, docs/datasets.md; without them FlyingShapes "
                             "is generated into the cache)")
    g.add_argument("--train-data", help="training HDF5 file (needs --test-data)")
    g.add_argument("--test-data", help="test HDF5 file, with the classes of --train-data")
    g.add_argument("--count", type=positive_int, default=256, help="generated training scenes (or "
                   "the most samples read from --train-data)")
    g.add_argument("--test-count", type=positive_int, default=64, help="generated test scenes (or "
                   "the most samples read from --test-data)")
    g.add_argument("--size", type=positive_int, default=64, help="generated scene size (pixels)")
    g.add_argument("--cache", default=None, help="cache folder for generated data "
                   "(default: $SEGNP_CACHE or ~/.cache/segnp)")
    return p


def add_train_args(p, out, epochs, lr, batch_size=8):
    p.add_argument("--out", default=out, help="run folder: checkpoint.npz, log.json, "
                   "log.csv, options.json")
    p.add_argument("--epochs", type=positive_int, default=epochs, help="epochs in all; with "
                   "--resume, a larger number extends the run (the poly lr schedule is "
                   "stretched to the new length)")
    p.add_argument("--lr", type=positive_float, default=lr, help="base learning rate")
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help="samples per "
                   "training step")
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true", help="continue the run in --out "
                      "(its options must be the same, except --epochs)")
    runs.add_argument("--overwrite", action="store_true", help="replace the run in --out "
                      "(once the new run has written its first checkpoint)")
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
    p.add_argument("--lam-mult", type=nonnegative_float, default=10.0,
                   help="lr multiplier of the lams")
    p.add_argument("--embedder-mult", type=nonnegative_float, default=0.1,
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
    one named by --backend, else the library's choice ($SEGNP_BACKEND or auto).  A
    backend that cannot run here (CuPy without a GPU) is a RunError, before any work."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    try:   # CuPy imports without a GPU; its first array says whether one is usable
        if args.backend:
            set_backend(args.backend)
        get_backend().asarray([0.0])
    except Exception as err:   # CUDA raises its own kinds (CUDARuntimeError, ...)
        name = args.backend or os.environ.get("SEGNP_BACKEND") or "the default"
        raise RunError(f"backend {name!r} cannot run here ({one_line(err)}); choose "
                       f"another with --backend") from err
    distributed.script_setup(args)  # under mpiexec: join the job; rank 0 alone reports


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _options(args):
    """The options to record: those that --resume compares, with each input file's
    absolute path (where it was) and its SHA-256 under 'sha256' (what it held)."""
    opts, sums = {}, {}
    for k, v in sorted(vars(args).items()):
        if k in _FREE_ON_RESUME:
            continue
        if k in _INPUT_FILES and v:
            v = os.path.abspath(v)
            if os.path.isfile(v):
                sums[k] = _sha256(v)
        opts[k] = v
    if sums:
        opts["sha256"] = sums
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


def _differences(recorded, now):
    """What --resume refuses, one phrase each: options that differ, and input files
    given or left out, or holding other contents than the run's (where they are does
    not matter: a moved file is the same input)."""
    skip = set(_FREE_ON_RESUME) | set(_INPUT_FILES) | {"classes", "sha256"}
    diff = [f"{_flag(k)} {recorded.get(k)!r} in the run, {now.get(k)!r} now"
            for k in sorted(set(recorded) | set(now))
            if k not in skip and recorded.get(k) != now.get(k)]
    old_sums, new_sums = recorded.get("sha256") or {}, now.get("sha256") or {}
    for k in _INPUT_FILES:
        had, has = recorded.get(k), now.get(k)
        if bool(had) != bool(has):
            diff.append(f"{_flag(k)} {had!r} in the run, {has!r} now")
        elif had and k in old_sums and old_sums[k] != new_sums.get(k):
            diff.append(f"{_flag(k)} {has!r} holds other contents than the run's "
                        f"{had!r} did")
    return diff


def _epochs_done(ckpt_path):
    """(epochs done, whether the run finished) of a Trainer checkpoint."""
    from .. import serialization
    extra = serialization.read_checkpoint(ckpt_path)["extra"]
    return extra.get("epoch"), bool(extra.get("finished"))


def _check_run(args):
    """The options to record, once ``args.out`` may take this run: refuses (RunError)
    a folder holding a run unless --resume or --overwrite is given, and a --resume
    whose options differ from the recorded ones (listing every difference)."""
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
    if not args.resume:
        return now
    if not has_ckpt:
        log.warning(f"--resume: no checkpoint in {out!r}; starting a fresh run")
    elif (recorded := read_options(out)) is None:
        log.warning(f"--resume: {out!r} has no {OPTIONS_NAME}, so the options cannot "
                    f"be compared with the run's")
    elif diff := _differences(recorded, now):
        raise RunError(f"--resume: the options differ from those of the run in "
                       f"{out!r}: " + "; ".join(diff) + " (use the run's options, "
                       "or --overwrite to start over)")
    if done is not None and done >= args.epochs:
        log.warning(f"--resume: the run in {out!r} has done {done} epochs "
                    f"({'finished' if finished else 'unfinished'}); --epochs "
                    f"{args.epochs} asks for no more, so nothing is trained (a larger "
                    f"--epochs extends it)")
    return now


def _set_aside(out):
    """Move the files of the run in ``out`` into a hidden subfolder (renames: nothing is
    copied or deleted); returns the subfolder, or None when there was no run."""
    names = [n for n in _REPLACED_FILES if os.path.isfile(os.path.join(out, n))]
    if not names or distributed.rank() != 0:
        return None
    aside = os.path.join(out, f"{_ASIDE_PREFIX}{os.getpid()}")
    os.makedirs(aside)
    for n in names:
        os.replace(os.path.join(out, n), os.path.join(aside, n))
    return aside


def _settle(out, aside):
    """The end of an --overwrite: delete the old run set aside in ``aside`` once the new
    run has a checkpoint; else put the old run back (the new run's files go)."""
    from .trainer import CHECKPOINT_NAME
    if aside is None or not os.path.isdir(aside):
        return
    if os.path.isfile(os.path.join(out, CHECKPOINT_NAME)):
        shutil.rmtree(aside)
        return
    for n in _REPLACED_FILES:
        if os.path.isfile(os.path.join(out, n)):
            os.remove(os.path.join(out, n))
    for n in os.listdir(aside):
        os.replace(os.path.join(aside, n), os.path.join(out, n))
    os.rmdir(aside)
    log.warning(f"--overwrite: the new run stopped before its first checkpoint; the run "
                f"in {out!r} is left as it was")


def _recover(out):
    """Settle what an --overwrite killed outright (SIGKILL, a power loss) left behind:
    the old run comes back, unless the new run had written a checkpoint."""
    if not os.path.isdir(out) or distributed.rank() != 0:
        return
    for name in sorted(os.listdir(out)):
        if name.startswith(_ASIDE_PREFIX) and os.path.isdir(os.path.join(out, name)):
            _settle(out, os.path.join(out, name))


@contextlib.contextmanager
def run_folder(args, task):
    """Check every argument, input file and the run folder ``args.out``, record the
    options, then run the block that trains into it.

    A folder holds a run once an epoch has finished (a checkpoint; options without one
    are simply replaced).  A folder holding a run is refused (RunError) unless --resume
    or --overwrite is given, and so is a --resume whose options differ from the recorded
    ones (every difference is listed; input files are compared by contents, so a moved
    run folder or input file resumes).  --resume without a checkpoint says that the run
    starts fresh.  --overwrite replaces the run only once the new run has written its
    first checkpoint: until then the old run's files wait in a hidden subfolder, and
    they come back if the block fails or is interrupted before that.  ``task``: the
    script's ('embedding', 'segmentation' or 'flow').  Yields the recorded options.
    """
    check_inputs(args, task)
    _recover(args.out)
    now = _check_run(args)
    aside = None
    try:
        if args.overwrite:
            aside = _set_aside(args.out)
        try:
            write_json(os.path.join(args.out, OPTIONS_NAME), now)
        except OSError as err:
            raise RunError(f"--out: cannot write to {args.out!r} "
                           f"({err.strerror or err})") from err
        yield now
    finally:
        _settle(args.out, aside)


def check_inputs(args, task):
    """Refuse, before any work, input files the run of ``task`` could not read:
    --train-data and --test-data (their headers: the kind, the layout) and --vgg16 (its
    arrays, and a network with VGG layers to take them)."""
    from ..data.hdf5 import read_header
    kind = "flow" if task == "flow" else "segmentation"
    _check_test_data_given(args)
    for key in ("train_data", "test_data"):
        if getattr(args, key, None):
            read_header(getattr(args, key), kind, _flag(key))
    if getattr(args, "vgg16", None):
        _check_vgg16(args, task)


def _check_vgg16(args, task):
    from ..models import load_vgg16
    # the VGG-16 convolutions of each network (the small SegNet has none)
    layers = {("embedding", "small"): 7, ("embedding", "paper"): 7,
              ("segmentation", "paper"): 13}.get((task, args.arch))
    if layers is None:
        raise RunError(f"--vgg16: the {args.arch!r} {task} network has no VGG-16 layers "
                       f"(use --arch paper)")
    try:
        load_vgg16(args.vgg16, count=layers)
    except Exception as err:   # h5py and np.load raise many kinds for a bad file
        raise RunError(f"--vgg16: {args.vgg16!r} is not a readable VGG-16 weights file "
                       f"({one_line(err)})") from err


def _classes(ds):
    return None if getattr(ds, "classes", None) is None else list(ds.classes)


def check_classes(train_classes, test, what):
    """Refuse test data whose class list differs from the one the model learned."""
    test_classes = _classes(test)
    if train_classes is not None and test_classes is not None \
            and list(train_classes) != test_classes:
        raise RunError(f"{what}: the test data has classes {test_classes}, but the "
                       f"model was trained on {list(train_classes)}")


def _check_test_data_given(args):
    if getattr(args, "train_data", None) and not getattr(args, "test_data", None):
        raise RunError("--train-data needs --test-data: the test split of the same data "
                       "(FlyingShapes scenes would score the model on other classes)")


def load_data(args, kind, test=True):
    """(train, test) in-memory datasets of ``kind`` named by the data options.

    A training file needs a test file (the model is never scored on generated scenes
    it was not trained for), and their class lists must be equal.
    """
    from .data import load_split
    if test:
        _check_test_data_given(args)
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


def run_script(main, argv=None, hint=""):
    """Run ``main(argv)`` as a command (:func:`segnp.command.run_command`): returns the
    exit status.  A user error (ValueError, OSError, a non-finite loss) prints one line
    on stderr and gives 2; Ctrl-C prints one line (and ``hint``) and gives 130."""
    return run_command(main, argv, hint=hint,
                       errors=(ValueError, OSError, FloatingPointError))
