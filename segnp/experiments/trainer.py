"""The epoch loop shared by the three tasks: progress bar, per-epoch logs, atomic
checkpoints, and a resume that ends exactly where an uninterrupted run ends.

What makes resuming exact:

* the data order and augmentations of epoch e depend only on (seed, e)
  (:class:`segnp.data.DataLoader`), so the loader is simply set to the epoch to redo;
* the checkpoint, written atomically after every epoch, holds the parameters, the
  optimizer state (momenta, Adam moments, step counts, each group's lr), the
  scheduler counter, the library generator's state (dropout draws from it), the epoch
  and the log so far.

A run killed during epoch e restarts epoch e from the checkpoint of epoch e - 1.

A run resumed with more epochs than it was started with (an extension) keeps the
scheduler's counter and initial lrs from the checkpoint but takes its length from the
new run: a poly schedule is stretched to the new number of iterations, so the lr rises
from ~0 again and decays to 0 at the new end.

Each epoch is logged in one line to the ``segnp`` logger (the example scripts print it
on stderr); its ``lr`` is the lr of the epoch's first step in the main parameter group,
the one trained at the optimizer's own lr (not the embedder's or the lams' of
:func:`lr_mult_groups`).
"""
import csv
import io
import json
import logging
import math
import os
import re
import time

from .. import distributed, serialization
from ..allocator import keep_freed_memory
from ..io import atomic_path

__all__ = ["Trainer", "lr_mult_groups", "write_logs", "finished", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.npz"
log = logging.getLogger("segnp")


def lr_mult_groups(model, lr, mults=None):
    """Optimizer parameter groups with Caffe-style lr multipliers.

    ``mults``: an ordered mapping of regular expression -> multiplier, matched (with
    ``re.search``) against each parameter's dotted name; the first match wins and
    unmatched parameters get multiplier 1.  For example ``{r"\\.lam$": 10,
    r"^embedder\\.": 0.1}`` trains the mask hardnesses ten times faster and the
    pre-trained embedding network ten times slower.  One group per multiplier, in
    first-appearance order; each group records its ``lr`` as ``lr * mult``.  Frozen
    parameters (``requires_grad`` False) join no group.
    """
    mults = dict(mults or {})
    patterns = [(re.compile(p), float(m)) for p, m in mults.items()]
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mult = next((m for pat, m in patterns if pat.search(name)), 1.0)
        groups.setdefault(mult, []).append(p)
    return [{"params": ps, "lr": lr * m} for m, ps in groups.items() if m > 0] or \
        [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]


def _rng_state():
    from ..random import get_rng
    return get_rng().bit_generator.state


def _set_rng_state(state):
    from ..random import get_rng
    get_rng().bit_generator.state = state


def write_logs(out_dir, history):
    """Write ``history`` (a list of flat dicts) as ``log.json`` and ``log.csv`` in
    ``out_dir``, each atomically and in full (a resumed run rewrites them)."""
    with atomic_path(os.path.join(out_dir, "log.json")) as tmp:
        with open(tmp, "w") as f:
            json.dump(history, f, indent=1)
    keys = []
    for rec in history:
        keys.extend(k for k in rec if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for rec in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                         for k, v in rec.items()})
    with atomic_path(os.path.join(out_dir, "log.csv")) as tmp:
        with open(tmp, "w") as f:
            f.write(buf.getvalue())


class Trainer:
    """Train ``model`` for ``epochs`` epochs of ``loader``.

    Args:
        step: ``step(model, batch) -> (loss Tensor, {name: float})``: the forward pass
            and loss of one batch (the trainer runs backward and the update).
        out_dir: where ``checkpoint.npz``, ``log.json`` and ``log.csv`` go.
        scheduler: an lr scheduler stepped after every iteration (or None).
        evaluate: ``evaluate(model) -> {name: float}`` after each epoch (or None).
        config: a JSON-like dict saved in every checkpoint (how to rebuild the model).
        progress: show a tqdm bar with the running loss.
        desc: the bar's label.

    Started by ``mpiexec -n P``, it trains data-parallel
    (:func:`segnp.distributed.data_parallel`): the loader's batch size is the global
    batch, each rank takes its shard and 1/P of every batch, gradients are averaged, the
    logged losses are means over the ranks, and rank 0 alone writes files and the bar.

    ``fit(resume=False)`` returns the log: one dict per epoch (``epoch``, ``loss``
    (mean over the epoch), the step's other values, ``lr`` of the main group at the
    epoch's first step, ``seconds``, and what ``evaluate`` returned).
    """

    def __init__(self, model, optimizer, loader, step, out_dir, epochs, scheduler=None,
                 evaluate=None, config=None, progress=True, desc="train"):
        if int(epochs) < 0:
            raise ValueError(f"Trainer: epochs must be >= 0; got {epochs}")
        self.rank = distributed.rank()
        optimizer = distributed.data_parallel(model, optimizer, loader)
        self.model, self.optimizer, self.loader = model, optimizer, loader
        self.step, self.scheduler, self.evaluate = step, scheduler, evaluate
        self.out_dir, self.epochs = os.fspath(out_dir), int(epochs)
        self.config = config or {}
        self.progress, self.desc = progress, desc
        self.history = []
        if self.rank == 0:
            os.makedirs(self.out_dir, exist_ok=True)

    @property
    def checkpoint_path(self):
        return os.path.join(self.out_dir, CHECKPOINT_NAME)

    def save(self, epoch):
        extra = {"epoch": epoch, "history": self.history, "config": self.config,
                 "rng": _rng_state(), "finished": epoch >= self.epochs}
        if self.scheduler is not None:
            extra["scheduler"] = self.scheduler.state_dict()
        serialization.save(self.checkpoint_path, self.model, self.optimizer, **extra)

    def restore(self):
        """Load the checkpoint in ``out_dir``; returns the number of epochs it has done."""
        extra = serialization.load(self.checkpoint_path, self.model, self.optimizer)
        done = int(extra["epoch"])
        if self.scheduler is not None:
            self._restore_scheduler(extra["scheduler"], trains=done < self.epochs)
        _set_rng_state(extra["rng"])
        self.history = list(extra["history"])
        return done

    def _restore_scheduler(self, saved, trains):
        # The counter and initial lrs are the run's; the settings (a poly schedule's
        # max_iters) are those of this run, which --epochs may have lengthened.  A run
        # with no epoch left to train keeps its own: nothing changes.
        now = self.scheduler.state_dict()
        changed = {k: (saved[k], v) for k, v in now.items() if trains and k not in
                   ("last_epoch", "base_lrs") and k in saved and saved[k] != v}
        self.scheduler.load_state_dict({**saved, **{k: now[k] for k in changed}})
        for k, (old, new) in changed.items():
            log.info(f"{self.desc}: resumed with {type(self.scheduler).__name__} {k} "
                     f"{old} -> {new} (the schedule now spans {self.epochs} epochs)")

    def fit(self, resume=False):
        keep_freed_memory()  # each step reuses the last step's pages (segnp.allocator)
        start = 0
        if resume and os.path.exists(self.checkpoint_path):
            start = self.restore()
            log.info(f"{self.desc}: resumed {self.checkpoint_path!r} after epoch {start}")
        for epoch in range(start, self.epochs):
            self.history.append(self.run_epoch(epoch))
            if self.rank == 0:
                write_logs(self.out_dir, self.history)
                self.save(epoch + 1)
        return self.history

    def run_epoch(self, epoch):
        from tqdm import tqdm
        t0 = time.perf_counter()
        self.model.train()
        self.loader.set_epoch(epoch)
        sums, count, running = {}, 0, None
        lr = float(_main_group(self.optimizer)["lr"])
        bar = tqdm(self.loader, desc=f"{self.desc} {epoch + 1}/{self.epochs}",
                   disable=not self.progress or self.rank != 0, leave=False, dynamic_ncols=True)
        for batch in bar:
            loss, stats = self.step(self.model, batch)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            value = float(loss.item())
            if not math.isfinite(value):
                raise FloatingPointError(f"{self.desc}: the loss became {value} in epoch "
                                         f"{epoch + 1}")
            running = value if running is None else 0.9 * running + 0.1 * value
            bar.set_postfix(loss=f"{running:.4f}")
            for k, v in {"loss": value, **stats}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            count += 1
        bar.close()
        record = {"epoch": epoch + 1}
        sums = distributed.mean_over_ranks(sums)
        record.update({k: v / max(count, 1) for k, v in sums.items()})
        record["lr"] = lr
        if self.evaluate is not None:
            record.update(self.evaluate(self.model))
        record["seconds"] = time.perf_counter() - t0
        log.info(f"{self.desc} {epoch + 1}/{self.epochs}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in record.items() if k != "epoch"
            and isinstance(v, (int, float))))
        return record


def _main_group(optimizer):
    """The parameter group trained at the optimizer's own lr (multiplier 1 in
    :func:`lr_mult_groups`; a scheduler keeps its starting lr as 'initial_lr'), else
    the first group."""
    base = optimizer.defaults.get("lr")
    for g in optimizer.param_groups:
        if g.get("initial_lr", g["lr"]) == base:
            return g
    return optimizer.param_groups[0]


def finished(out_dir):
    """True when ``out_dir`` holds the checkpoint of a run that completed all epochs."""
    path = os.path.join(os.fspath(out_dir), CHECKPOINT_NAME)
    if not os.path.exists(path):
        return False
    return bool(serialization.read_checkpoint(path)["extra"].get("finished", False))
