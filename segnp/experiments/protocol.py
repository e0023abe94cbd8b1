"""The reproduction protocol of ``examples/reproduce.py``: every run of one seed as a
graph of jobs (:mod:`.schedule`), and what each job measures.

Per seed:

1. **Embedders** (Sec. 3.1, 4.1).  One learns semantic regions from the class labels
   (for segmentation); one learns motion regions from the generator's instance labels
   (for flow: two objects of one class move apart, so their boundary is a motion
   boundary).  Mask quality (Fig. 3) is the ROC AUC of embedding vs colour distance
   on test scenes, with the median same- and different-region distances.
2. **Baseline** segmentation network, trained from scratch.
3. **Table 1 rows**, each fine-tuned from that baseline for the same number of steps
   with the same data order; the "baseline" row is the control, fine-tuned in exactly
   the same way, and every Δ is paired with it.  The embedder is frozen, except in
   "all segaware, end to end", where it is fine-tuned through the task loss (the
   paper's Fig. 5) at ``e2e_emb_mult`` times the lr, with ``e2e_aux_weight`` times
   the embedding loss added, its lams calibrated at ``keep_e2e`` (default:
   ``keep_all``).  The lams of the segmentation-aware convolutions are set
   once from embedding statistics of training scenes (:func:`segnp.nn.calibrate_lams`)
   and kept fixed (in the end-to-end row too: its embedder can scale its distances,
   which is what a trained lam would do, and learning lam from 0 fails); the row "lam
   learned from 0" learns them from 0 with Adam instead, and the row "ground-truth
   masks" masks with one-hot labels (the ceiling of what masks can give).
   ``keep_all_fc6`` gives FC6 of the all-layers rows (the end-to-end row's too) its
   own keep.  With ``keep_all_end``, the calibrated lams of the all-layers rows rise
   linearly over the fine-tuning, so that a same-region tap keeps the row's keep
   (``keep_all``, or ``keep_e2e``) at the start and ``keep_all_end`` at the end.  Each
   row with segmentation-aware layers reports the mean mask of same- and
   different-region taps on test.
4. **Flow**: a baseline FlowNetS, then the control and the segmentation-aware variant
   fine-tuned from it for the same steps with the same data order; the
   segmentation-aware variant's motion embedder is fine-tuned through the flow loss
   at ``flow_emb_mult`` times the lr (0: frozen).  Both fine-tune on ``flow_ft_loss``
   (``"final"``: the full-resolution EPE alone; ``"multiscale"``: FlowNet's loss, as
   the baseline trains).  The EPE of the best constant flow per image (its mean) is the
   floor a network must beat.

Every row is evaluated on the validation split and on the test split: choices (the
mask hardness ``keep``, the number of steps) are made on validation
(docs/results/probes.md), never on test.
"""
import os

import numpy as np

from ..metrics import angular_error, end_point_error
from .data import load_split
from .masks import layer_mask_means, mask_quality
from ..models import FlowNetS
from ..models.segnet import SEGAWARE_LAYERS as SEGNET_LAYERS
from ..nn.calibrate import tap_distances
from .runs import (CRF_KWARGS, load_state, network_lams, run_embedding, run_flow,
                   run_segmentation, segnet_lams, test_arrays)
from .schedule import Job
from .tasks import _tuples, embed, evaluate_flow, evaluate_segmentation, label_embeddings

__all__ = ["SEG_ROWS", "FLOW_ROWS", "seed_jobs", "CHECKPOINT"]

CHECKPOINT = "checkpoint.npz"

# The rows of Table 1: name -> (SegNet switches, how the masks are set).
#   "calibrated": lams from calibrate_lams at the preset's keep, fixed;
#   "learned": lams from 0, learned with Adam (the failure the calibration avoids);
#   "oracle": one-hot ground-truth labels as embeddings;
#   "end to end": calibrated and fixed, the embedder fine-tuned through the task loss.
SEG_ROWS = {
    "baseline": ({}, None),
    "+9x9 BF": ({"bf": [1, 9]}, None),
    "+9x9 BF x4": ({"bf": [4, 9]}, None),
    "FC6 segaware": ({"segaware": "fc6"}, "calibrated"),
    "all segaware": ({"segaware": "all"}, "calibrated"),
    "all segaware, end to end": ({"segaware": "all"}, "end to end"),
    "all + BF": ({"segaware": "all", "bf": [1, 9]}, "calibrated"),
    "all + CRF": ({"segaware": "all", "crf": True, "crf_kwargs": CRF_KWARGS}, "calibrated"),
    "ground-truth masks": ({"segaware": "all"}, "oracle"),
    "lam learned from 0": ({"segaware": "all"}, "learned"),
}
FLOW_ROWS = ("baseline", "segaware")

# The scheduler's cost of each job (schedule.py: of the ready jobs, the one with the
# costliest chain ahead of it starts first): its epochs times the seconds per epoch that
# job took in the full run at 9d76a0c (one core), scaled by its training scenes over
# that run's (_EPOCH_SCENES), so that a --count or --flow-count of other proportions
# still orders the jobs by their length.  Only the ratios count.  Started in the list's
# order instead, that run left a core idle for the last 2 minutes.
_EPOCH_SECONDS = {
    "embedding": 14.7, "flow_embedding": 14.7, "seg_baseline": 8.6, "flow_baseline": 5.1,
    "seg/baseline": 8.8, "seg/+9x9 BF": 21.0, "seg/+9x9 BF x4": 39.0,
    "seg/FC6 segaware": 12.0, "seg/all segaware": 16.0,
    "seg/all segaware, end to end": 32.0, "seg/all + BF": 26.5, "seg/all + CRF": 31.0,
    "seg/ground-truth masks": 13.0, "seg/lam learned from 0": 16.5,
    "flow/baseline": 5.0, "flow/segaware": 72.0,
}
_EPOCH_SCENES = {"count": 1024, "flow_count": 2048}
# one-hot embeddings are 0 apart within a class and 2 across: lam 2 gives exp(-4)
ORACLE_LAM = 2.0


def _slug(name):
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def _counts(cfg, kind):
    """(split, scene count) of ``kind``: flow learns from more pairs than segmentation
    from scenes (it needs them: with 1,024 its validation EPE stops falling)."""
    train = cfg["flow_count"] if kind == "flow" else cfg["count"]
    return (("train", train), ("val", cfg["val_count"]), ("test", cfg["test_count"]))


def _splits(kind, cfg, fields=None):
    sets = {}
    for split, count in _counts(cfg, kind):
        sets[split] = load_split(kind, None, split, count, cfg["size"], cfg["cache"],
                                 fields=fields)
    return sets


def _seg_metrics(net, split, inp, num_classes, oracle, curve):
    images, labels = test_arrays(split, ("image", "label"), inp)
    e = label_embeddings(labels, num_classes) if oracle else None
    m, _ = evaluate_segmentation(net, images, labels, num_classes, widths=(3, 10),
                                 curve=curve, embeddings=e)
    return m


# ---- jobs (module-level functions: they run in worker processes) ----------------------
def job_embedding(out, cfg, seed, labels, deps):
    """Train an embedder on ``labels`` ('label' or 'instances'); mask quality on test."""
    fields = ("images", labels if labels == "instances" else "labels")
    sets = _splits("segmentation", cfg, fields)
    train = sets["train"]
    if labels == "instances":
        # the flow networks' preprocessing, so that the flow embedder sees what they see
        train.mean = _splits("flow", cfg)["train"].mean
    epochs = cfg["emb_epochs"] if labels == "labels" else cfg["flow_emb_epochs"]
    net, hist = run_embedding(out, train, epochs=epochs, lr=cfg["emb_lr"],
                              batch_size=cfg["batch_size"], seed=seed, progress=False,
                              resume=True)
    state = load_state(os.path.join(out, CHECKPOINT))
    inp = state[1]["input"]
    key = "label" if labels == "labels" else "instances"
    test = sets["test"]
    images = test_arrays(test, ("image",), inp)[0]
    lab = test.stack(key).astype(np.int64)
    quality = _quality(embed(net, images), images, lab)
    quality["final_loss"] = float(hist[-1]["loss"]) if hist else float("nan")
    return {"masks": quality, "checkpoint": os.path.join(out, CHECKPOINT)}


def _quality(e, images, labels):
    """Mask quality of embeddings e on labelled images (:func:`.masks.mask_quality`)
    with the median distances of same- and different-region neighbours."""
    quality = mask_quality(e, images, labels)
    d, same = tap_distances(e, labels, 3, 1)
    quality.update(same_median=float(np.median(d[same])),
                   diff_median=float(np.median(d[~same])))
    return quality


def _pretrain(run, kind, out, cfg, seed, epochs, lr, batch_size, model):
    """Train a task's plain network from scratch (the rows' shared baseline)."""
    run(out, _splits(kind, cfg)["train"], epochs=epochs, lr=lr, batch_size=batch_size,
        seed=seed, model=model, progress=False, resume=True)
    return {"checkpoint": os.path.join(out, CHECKPOINT)}


def job_seg_baseline(out, cfg, seed, deps):
    return _pretrain(run_segmentation, "segmentation", out, cfg, seed, cfg["seg_epochs"],
                     cfg["seg_lr"], cfg["seg_batch_size"], cfg["segnet"])


def job_seg_row(out, cfg, seed, name, deps, curve=tuple(range(1, 21))):
    """Fine-tune one Table 1 row from the baseline; metrics on val and test."""
    variant, masks = SEG_ROWS[name]
    sets = _splits("segmentation", cfg)
    train = sets["train"]
    emb = load_state(deps["embedding"]["checkpoint"])
    init = load_state(deps["baseline"]["checkpoint"])[0]
    oracle = masks == "oracle"
    end_to_end = masks == "end to end"
    lams, train_lams, stats, sharpen = None, True, None, 1.0
    if masks in ("calibrated", "end to end"):
        keep = cfg["keep_fc6"] if variant.get("segaware") == "fc6" else cfg["keep_all"]
        if end_to_end and cfg.get("keep_e2e") is not None:
            # its own keep: sharper masks cost the frozen rows, but pay where the
            # embedder is tuned (validation, docs/results/probes.md, third round)
            keep = cfg["keep_e2e"]
        lams, stats = segnet_lams(train, emb, keep, cfg["segnet"])
        train_lams = False
        if variant.get("segaware") == "all" and cfg.get("keep_all_fc6"):
            fc6, fc6_stats = segnet_lams(train, emb, cfg["keep_all_fc6"], cfg["segnet"])
            lams["fc6"], stats["fc6"] = fc6["fc6"], fc6_stats["fc6"]
        if variant.get("segaware") == "all" and cfg.get("keep_all_end"):
            # lam is proportional to -ln(keep): the masks sharpen to keep_all_end
            sharpen = np.log(cfg["keep_all_end"]) / np.log(keep)
    elif oracle:
        lams = dict.fromkeys(SEGNET_LAYERS, ORACLE_LAM)
        train_lams = False
    net, _ = run_segmentation(
        out, train, variant=variant, epochs=cfg["ft_epochs"], lr=cfg["ft_lr"],
        batch_size=cfg["seg_batch_size"], seed=seed, model=cfg["segnet"], embedder=emb,
        init=init, lam_mult=cfg["lam_mult"],
        embedder_mult=cfg["e2e_emb_mult"] if end_to_end else 0.0,
        aux_weight=cfg["e2e_aux_weight"] if end_to_end else 0.0, progress=False,
        resume=True, lams=lams, train_lams=train_lams, oracle=oracle, sharpen=sharpen)
    inp = emb[1]["input"]
    res = {"val": _seg_metrics(net, sets["val"], inp, train.num_classes, oracle, None),
           "test": _seg_metrics(net, sets["test"], inp, train.num_classes, oracle, curve),
           "lams": {k: float(np.asarray(v)) for k, v in net.state_dict().items()
                    if k.endswith("lam") and not k.startswith("embedder.")},
           "checkpoint": os.path.join(out, CHECKPOINT)}
    if stats is not None:
        res["calibration"] = stats
    res.update(_mask_report(net, sets["test"], inp, train.num_classes, oracle, end_to_end))
    return res


def _mask_report(net, test, inp, num_classes, oracle, end_to_end):
    """On test: the mean mask of same- and different-region taps of the row's
    segmentation-aware layers ("mask_values"), and for a row whose embedder trained,
    the mask quality of its fine-tuned embeddings ("embedder_masks", as the
    embedding job measures the frozen ones)."""
    layers = net.segaware_layers()
    if not layers:
        return {}
    images, labels = test_arrays(test, ("image", "label"), inp)
    e = label_embeddings(labels, num_classes) if oracle else embed(net.embedder, images)
    out = {"mask_values": layer_mask_means(layers, e, labels)}
    if end_to_end:
        out["embedder_masks"] = _quality(e, images, labels)
    return out


def job_flow_baseline(out, cfg, seed, deps):
    return _pretrain(run_flow, "flow", out, cfg, seed, cfg["flow_epochs"], cfg["flow_lr"],
                     cfg["batch_size"], cfg["flownet"])


def job_flow_row(out, cfg, seed, name, deps):
    sets = _splits("flow", cfg)
    emb = load_state(deps["embedding"]["checkpoint"])
    init = load_state(deps["baseline"]["checkpoint"])[0]
    segaware = name == "segaware"
    lams, stats = None, None
    if segaware:
        regions = _splits("segmentation", cfg, ("images", "instances"))["train"]
        probe = FlowNetS(**dict(_tuples(cfg["flownet"]), segaware=True))
        lams, stats = network_lams(probe.segaware_layers(), regions, emb,
                                   cfg["keep_flow"], "instances")
    net, _ = run_flow(out, sets["train"], segaware=segaware, epochs=cfg["flow_ft_epochs"],
                      lr=cfg["flow_ft_lr"], batch_size=cfg["batch_size"], seed=seed,
                      model=cfg["flownet"], embedder=emb if segaware else None, init=init,
                      lam_mult=cfg["lam_mult"], embedder_mult=cfg["flow_emb_mult"],
                      progress=False, resume=True, lams=lams, train_lams=not segaware,
                      loss=cfg["flow_ft_loss"])
    inp = emb[1]["input"]
    res = {"checkpoint": os.path.join(out, CHECKPOINT)}
    if stats is not None:
        res["calibration"] = stats
    for split in ("val", "test"):
        i1, i2, fl = test_arrays(sets[split], ("image1", "image2", "flow"), inp)
        res[split] = evaluate_flow(net, i1, i2, fl)[0]
    return res


def constant_flow(cfg, split="test"):
    """EPE and AAE of the best constant flow of each image (its mean): the floor."""
    fl = test_arrays(_splits("flow", cfg)[split], ("flow",), None)[0]
    const = np.broadcast_to(fl.mean(axis=(2, 3), keepdims=True), fl.shape)
    return {"epe": end_point_error(const, fl), "aae": angular_error(const, fl)}


def seed_jobs(out, cfg, seed):
    """The jobs of one seed, each after its dependencies; keys are prefixed 's<seed>/'.
    Each costs its expected seconds (for the scheduler; see ``_EPOCH_SECONDS``)."""
    runs = os.path.join(out, "runs", f"seed{seed}")
    p = f"s{seed}/"
    kw = {"cfg": cfg, "seed": seed}
    # (epochs, the cfg key of the scene count it trains on): every embedder learns from
    # the segmentation scenes, the flow networks from the flow pairs
    work = {"embedding": ("emb_epochs", "count"),
            "flow_embedding": ("flow_emb_epochs", "count"),
            "seg_baseline": ("seg_epochs", "count"), "seg": ("ft_epochs", "count"),
            "flow_baseline": ("flow_epochs", "flow_count"),
            "flow": ("flow_ft_epochs", "flow_count")}

    def job(name, fn, kwargs, deps=()):
        epochs, scenes = work[name.split("/")[0]]
        cost = _EPOCH_SECONDS[name] * cfg[epochs] * cfg[scenes] / _EPOCH_SCENES[scenes]
        return Job(p + name, fn, dict(kw, **kwargs), tuple(p + d for d in deps), cost)

    jobs = [job("embedding", job_embedding,
                {"out": os.path.join(runs, "embedding"), "labels": "labels"}),
            job("seg_baseline", job_seg_baseline, {"out": os.path.join(runs, "seg_pretrain")}),
            job("flow_embedding", job_embedding,
                {"out": os.path.join(runs, "flow_embedding"), "labels": "instances"}),
            job("flow_baseline", job_flow_baseline,
                {"out": os.path.join(runs, "flow_pretrain")})]
    for name in SEG_ROWS:
        jobs.append(job("seg/" + name, _seg_row_job,
                        {"out": os.path.join(runs, "seg_" + _slug(name)), "name": name,
                         "prefix": p}, ("embedding", "seg_baseline")))
    for name in FLOW_ROWS:
        jobs.append(job("flow/" + name, _flow_row_job,
                        {"out": os.path.join(runs, "flow_" + name), "name": name,
                         "prefix": p}, ("flow_embedding", "flow_baseline")))
    return jobs


def _seg_row_job(out, cfg, seed, name, prefix, deps):
    return job_seg_row(out, cfg, seed, name, {"embedding": deps[prefix + "embedding"],
                                              "baseline": deps[prefix + "seg_baseline"]})


def _flow_row_job(out, cfg, seed, name, prefix, deps):
    return job_flow_row(out, cfg, seed, name, {"embedding": deps[prefix + "flow_embedding"],
                                               "baseline": deps[prefix + "flow_baseline"]})


def prepare_data(cfg, progress=False):
    """Generate every split the jobs read, once, before the workers start."""
    from .data import synthetic_split
    for split, count in set(_counts(cfg, "segmentation") + _counts(cfg, "flow")):
        synthetic_split(split, count, cfg["size"], cfg["cache"], progress=progress)
