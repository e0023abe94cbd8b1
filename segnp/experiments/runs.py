"""One training run of each task, as the example scripts and ``reproduce.py`` start it:
data -> model -> optimizer -> :class:`Trainer`, with the run config stored in every
checkpoint so that :func:`segnp.experiments.load_run` rebuilds the network.

Each ``run_*`` function takes in-memory datasets (:func:`load_split`), writes
``checkpoint.npz``, ``log.json`` and ``log.csv`` under ``out_dir`` and returns
``(model, history)``.  ``resume=True`` continues from the checkpoint there (a finished
run is only reloaded), and ends with the parameters of an uninterrupted run.
"""
import copy
import functools

import numpy as np

from .. import serialization
from ..backends import get_backend
from ..optim import SGD, Adam, PolyLR
from ..random import manual_seed
from .data import INPUT_SCALE, make_loader, preprocess
from .embedding_cache import EmbeddingCache
from .paper import PAPER_CROPS, PAPER_INPUT_SCALE, is_paper
from .tasks import (FLOW_LOSSES, build_model, embed, embedding_step, end_to_end_step,
                    evaluate_embedding, evaluate_flow, evaluate_segmentation, flow_step,
                    frozen_embedder_step, label_embeddings,
                    oracle_segmentation_step, segmentation_step, transfer_weights)
from .trainer import Trainer, lr_mult_groups

__all__ = ["EMBEDDING_DEFAULTS", "SEGNET_DEFAULTS", "FLOWNET_DEFAULTS", "SEG_VARIANTS",
           "run_embedding", "run_segmentation", "run_flow", "test_arrays",
           "load_state"]

# Small widths so that every run trains on a CPU in minutes.
EMBEDDING_DEFAULTS = {"widths": [8, 16, 32], "embed_dim": 16, "side_dim": 8}
# No dropout: on a few hundred scenes and tens of epochs it only slowed training
# (FlyingShapes 64x64, 10 epochs: 8.8 % mIoU with 0.1, 11.1 % without).
SEGNET_DEFAULTS = {"widths": [8, 16, 24, 32], "fc_width": 64, "fc6_dilation": 2,
                   "dropout": 0.0}
FLOWNET_DEFAULTS = {"widths": [16, 24, 32, 48]}
# CRF windows that suit images of tens of pixels (the paper's 13x13 at dilation 9 is
# for 321x321 inputs).  No position term in the bilateral mask (bilateral_sigma_init):
# on validation (seed 0, all + CRF after 768 steps) it lowered mIoU from 40.00 to 39.68
# at 8 px and 39.29 at 3 px; the 7x7 window at dilation 2 is local enough.
CRF_KWARGS = {"bilateral_ksize": 7, "bilateral_dilation": 2, "spatial_ksize": 5,
              "iterations": 2}
# The rows of Table 1: name -> SegNet switches.
SEG_VARIANTS = {
    "baseline": {},
    "+9x9 BF": {"bf": [1, 9]},
    "+9x9 BF x4": {"bf": [4, 9]},
    "FC6 segaware": {"segaware": "fc6"},
    "all segaware": {"segaware": "all"},
    "all + BF": {"segaware": "all", "bf": [1, 9]},
    "all + CRF": {"segaware": "all", "crf": True, "crf_kwargs": CRF_KWARGS},
}


def _input(train, paper=False):
    return {"mean": [float(v) for v in train.mean],
            "scale": PAPER_INPUT_SCALE if paper else INPUT_SCALE}


def _loader(train, batch_size, seed, config, paper):
    """Training batches, preprocessed as ``config['input']`` says; the paper's networks
    train on random crops of the paper's size (:mod:`.paper`)."""
    crop = PAPER_CROPS[config["task"]] if paper else None
    return make_loader(train, batch_size, seed, True, config["input"]["mean"],
                       scale=config["input"]["scale"], crop=crop)


def test_arrays(dataset, keys, input_cfg):
    """Preprocessed test arrays of ``dataset`` (images as network input), by ``keys``."""
    out = []
    for k in keys:
        a = dataset.stack(k)
        if k.startswith("image"):
            a = preprocess(a, input_cfg["mean"], input_cfg["scale"])
        elif k == "flow":
            a = np.ascontiguousarray(a.transpose(0, 3, 1, 2))
        else:
            a = a.astype(np.int64)
        out.append(a)
    return out


def load_state(path):
    """(model state dict, config) of a checkpoint, e.g. a pre-trained embedder."""
    ckpt = serialization.read_checkpoint(path)
    return ckpt["model"], ckpt["extra"]["config"]


def _task_network(task, model_cfg, train, embedder, init, vgg16=None):
    """(network, run config) of a segmentation or flow run.  ``embedder``: None or the
    (state, config) of a pre-trained embedding run, which becomes the network's embedder
    and sets the input preprocessing.  ``vgg16``: a VGG-16 weights file loaded into the
    network's VGG layers.  ``init``: a state dict copied in (after VGG-16) where names
    match, except the embedder's."""
    emb_state, emb_cfg = embedder if embedder is not None else (None, None)
    config = {"task": task, "model": model_cfg,
              "embedder": emb_cfg["model"] if emb_cfg else None,
              "input": emb_cfg["input"] if emb_cfg else _input(train, is_paper(model_cfg))}
    net = build_model(config)
    if vgg16:
        net.load_vgg16(vgg16)
    if emb_state is not None:
        transfer_weights(net, emb_state, dst_prefix="embedder.")
    if init is not None:
        transfer_weights(net, {k: v for k, v in init.items() if not k.startswith("embedder.")})
    return net, config


def _set_masks(net, lams, train_lams):
    """Set the lams of ``net.segaware_layers()`` by name; freeze them unless
    ``train_lams``."""
    if not lams and train_lams:
        return
    layers = dict((name, layer) for name, layer, _ in net.segaware_layers())
    for name, lam in (lams or {}).items():
        if name in layers:
            layers[name].lam.data[...] = lam
    if not train_lams:
        for layer in layers.values():
            layer.lam.requires_grad = False


def _param_groups(net, lr, lam_mult, embedder_mult):
    """Optimizer groups: lams at ``lam_mult`` x lr, the embedder at ``embedder_mult`` x lr.
    ``embedder_mult=0`` freezes the embedder: no gradient is computed through it (nor
    through the embedding distances), which makes a fine-tuning step much cheaper."""
    if embedder_mult == 0 and getattr(net, "embedder", None) is not None:
        for p in net.embedder.parameters():
            p.requires_grad = False
    return lr_mult_groups(net, lr, {r"(^|\.)lam$": lam_mult, r"^embedder\.": embedder_mult})


def _caches_embeddings(paper):
    """Whether a segmentation run embeds each training image once when its embedder is
    frozen (:class:`EmbeddingCache`): only where that is exact, on NumPy arrays (see
    :mod:`.embedding_cache`), and not for the paper's networks, whose random crops
    hardly ever bring an image back (the cache would fill with crops never seen again)."""
    return not paper and get_backend().xp is np


class _SharpeningPolyLR(PolyLR):
    """A poly lr schedule that also raises the (frozen) lams of ``layers`` linearly over
    it, from their values when it starts to ``factor`` times them at its end: masks
    that sharpen while the network adapts to them (a sudden sharp mask breaks a
    network trained without masks)."""

    def __init__(self, optimizer, max_iters, layers, factor):
        self._ramp = [(layer, float(layer.lam.data)) for layer in layers]
        self._factor = float(factor)
        super().__init__(optimizer, max_iters)

    def _apply(self):
        super()._apply()
        t = min(1.0, self.last_epoch / self.max_iters)
        for layer, lam in self._ramp:
            layer.lam.data[...] = lam * (1.0 + (self._factor - 1.0) * t)

    def state_dict(self):
        return {k: v for k, v in super().state_dict().items() if not k.startswith("_")}


def _fit(model, optimizer, loader, step, out_dir, epochs, config, evaluate, progress,
         resume, desc, poly=True, sharpen=None):
    iters = max(1, epochs * len(loader))
    scheduler = PolyLR(optimizer, max_iters=iters) if poly else None
    if sharpen is not None:
        scheduler = _SharpeningPolyLR(optimizer, iters, *sharpen)
    trainer = Trainer(model, optimizer, loader, step, out_dir, epochs, scheduler=scheduler,
                      evaluate=evaluate, config=config, progress=progress, desc=desc)
    return trainer.fit(resume=resume)


def run_embedding(out_dir, train, test=None, epochs=4, batch_size=8, lr=1e-3, seed=0,
                  model=None, progress=True, resume=False, eval_count=16, vgg16=None):
    """Pre-train an :class:`EmbeddingNet` with the embedding loss (Sec. 3.1, 4.1): Adam,
    poly-decayed lr, flips.  ``test``: logs the final-embedding loss on it per epoch.
    ``model={"arch": "paper"}``: embedding_vgg16 (:mod:`.paper`), its seven VGG
    layers from the VGG-16 weights file ``vgg16`` when given."""
    manual_seed(seed)
    paper = is_paper(model)
    config = {"task": "embedding",
              "model": dict({} if paper else EMBEDDING_DEFAULTS, **(model or {})),
              "embedder": None, "input": _input(train, paper)}
    net = build_model(config)
    if vgg16:
        net.load_vgg16(vgg16)
    opt = Adam(net.parameters(), lr=lr)
    loader = _loader(train, batch_size, seed, config, paper)
    evaluate = None
    if test is not None:
        images, labels = test_arrays(test, ("image", "label"), config["input"])
        images, labels = images[:eval_count], labels[:eval_count]
        evaluate = lambda m: evaluate_embedding(m, images, labels)  # noqa: E731
    hist = _fit(net, opt, loader, embedding_step, out_dir, epochs, config, evaluate,
                progress, resume, "embedding")
    return net, hist


def run_segmentation(out_dir, train, test=None, variant=None, epochs=6, batch_size=8,
                     lr=3e-3, seed=0, model=None, embedder=None, init=None,
                     lam_mult=10.0, embedder_mult=0.1, progress=True, resume=False,
                     optimizer="adam", lams=None, train_lams=True, oracle=False,
                     vgg16=None, aux_weight=0.0, sharpen=1.0):
    """Train a :class:`SegNet` with softmax cross-entropy (Sec. 5.1).

    variant: SegNet switches (a row of :data:`SEG_VARIANTS`).  embedder: (state, config)
    of a pre-trained embedding run (needed by every switch), fine-tuned end to end at
    ``embedder_mult`` times the lr (0: frozen).  init: a state dict (e.g. the trained
    baseline) copied in where names match, plain convolutions becoming
    segmentation-aware ones at lam = 0.
    lams: {layer name: lam} of the segmentation-aware convolutions (e.g. from
    :func:`segnp.nn.calibrate_lams`), set after ``init``; ``train_lams`` False freezes
    them (see :mod:`segnp.nn.calibrate` for why lam is not learned from 0).  The lams
    that train (those, and the bilateral filter's) do so at ``lam_mult`` times the lr.
    oracle: the segmentation-aware layers see one-hot ground-truth labels as embeddings
    (:func:`~segnp.experiments.tasks.label_embeddings`), the "ground-truth masks" row.
    aux_weight: with an embedder that trains (``embedder_mult`` > 0), add this times
    the embedding loss of its outputs to the task loss
    (:func:`~segnp.experiments.tasks.end_to_end_step`).
    sharpen: > 1 raises the frozen lams (``train_lams`` False) linearly over the
    schedule, from ``lams`` to ``sharpen`` times them.
    SGD with momentum 0.9 (or Adam) and a poly schedule, as DeepLab.
    ``model={"arch": "paper"}``: DeepLab-LargeFOV on VGG-16 (:mod:`.paper`), its 13
    VGG layers from the weights file ``vgg16`` when given.
    """
    manual_seed(seed)
    paper = is_paper(model)
    mcfg = dict({} if paper else SEGNET_DEFAULTS, num_classes=train.num_classes,
                **(model or {}))
    mcfg.update(copy.deepcopy(variant or {}))
    if paper:   # the paper's CRF windows (SegAwareCRF's defaults) suit 321x321 inputs
        mcfg.pop("crf_kwargs", None)
    needs = (mcfg.get("segaware", "none") != "none" or mcfg.get("bf") is not None
             or bool(mcfg.get("crf")))
    if needs and embedder is None and not oracle:
        raise ValueError(f"run_segmentation: the variant {variant} needs a pre-trained "
                         f"embedder")
    if aux_weight and (not needs or oracle or not embedder_mult > 0):
        raise ValueError(f"run_segmentation: aux_weight={aux_weight} needs an embedder "
                         f"that trains (embedder_mult > 0; got {embedder_mult}), a variant "
                         f"that uses it and no oracle")
    net, config = _task_network("segmentation", mcfg, train,
                                embedder if needs and not oracle else None, init, vgg16)
    config["oracle"] = bool(oracle)
    _set_masks(net, lams, train_lams)
    groups = _param_groups(net, lr, lam_mult, embedder_mult)
    opt = (SGD(groups, lr=lr, momentum=0.9, weight_decay=5e-4) if optimizer == "sgd"
           else Adam(groups, lr=lr))
    loader = _loader(train, batch_size, seed, config, paper)
    evaluate = None
    if test is not None:
        images, labels = test_arrays(test, ("image", "label"), config["input"])
        e = label_embeddings(labels, train.num_classes) if oracle else None
        evaluate = lambda m: evaluate_segmentation(  # noqa: E731
            m, images, labels, train.num_classes, embeddings=e)[0]
    step = oracle_segmentation_step if oracle else segmentation_step
    if needs and not oracle and embedder_mult == 0 and _caches_embeddings(paper):
        step = functools.partial(frozen_embedder_step, cache=EmbeddingCache(net.embedder))
    if aux_weight:
        step = functools.partial(end_to_end_step, aux_weight=float(aux_weight))
    ramp = None
    if float(sharpen) != 1.0:
        if train_lams or float(sharpen) < 1.0:
            raise ValueError(f"run_segmentation: sharpen={sharpen} needs frozen lams "
                             f"(train_lams False) and a value >= 1")
        ramp = ([layer for _, layer, _ in net.segaware_layers()], sharpen)
    hist = _fit(net, opt, loader, step, out_dir, epochs, config, evaluate,
                progress, resume, "segmentation", sharpen=ramp)
    return net, hist


def network_lams(layers, train, embedder, keep, labels="label", count=128):
    """lam of each of ``layers`` ([(name, layer, stride)]) from the embedding
    distances of ``count`` training scenes, so that a same-region tap keeps ``keep``
    of its weight (:func:`segnp.nn.calibrate_lams`; ``labels``: the sample key that
    defines the regions).  embedder: (state, config) of an embedding run.  The layers'
    lams are set and frozen.  Returns ({name: lam}, {name: statistics})."""
    from ..nn import calibrate_lams
    emb_state, emb_cfg = embedder
    net = build_model({"task": "embedding", "model": emb_cfg["model"]})
    net.load_state_dict(emb_state)
    images = test_arrays(train, ("image",), emb_cfg["input"])[0][:count]
    lab = train.stack(labels)[:count].astype(np.int64)
    stats = calibrate_lams(layers, embed(net, images), lab, keep)
    return {k: v["lam"] for k, v in stats.items()}, stats


def segnet_lams(train, embedder, keep, model=None, count=128):
    """lam of every segmentation-aware convolution of a SegNet (all layers) from the
    embedding distances of ``count`` training scenes, so that a same-region tap keeps
    ``keep`` of its weight at each layer's resolution and dilation
    (:func:`segnp.nn.calibrate_lams`).  embedder: (state, config) of an embedding run.
    Returns ({layer name: lam}, {layer name: statistics})."""
    mcfg = dict(SEGNET_DEFAULTS, num_classes=train.num_classes, **(model or {}))
    mcfg.update(segaware="all", bf=None, crf=False)
    mcfg.pop("segaware_normalize", None)
    probe = build_model({"task": "segmentation", "model": mcfg, "embedder": None})
    return network_lams(probe.segaware_layers(), train, embedder, keep, "label", count)


def run_flow(out_dir, train, test=None, segaware=False, epochs=6, batch_size=8, lr=1e-3,
             seed=0, model=None, embedder=None, init=None, lam_mult=10.0,
             embedder_mult=0.1, progress=True, resume=False, lams=None, train_lams=True,
             loss="multiscale"):
    """Train a :class:`FlowNetS` with the multi-scale end-point error (Sec. 5.2), or with
    ``loss="final"`` the full-resolution one alone (``tasks.FLOW_LOSSES``), Adam (as
    FlowNet) with a poly schedule.  ``segaware``: the segmentation-aware prediction
    layer and bilateral filter, with ``embedder`` = (state, config) pre-trained;
    ``lams``, ``train_lams``: as in :func:`run_segmentation`.
    ``model={"arch": "paper"}``: the full FlowNetSimple (:mod:`.paper`)."""
    if loss not in FLOW_LOSSES:
        raise ValueError(f"run_flow: loss must be one of {FLOW_LOSSES}; got {loss!r}")
    manual_seed(seed)
    paper = is_paper(model)
    mcfg = dict({} if paper else FLOWNET_DEFAULTS, **(model or {}), segaware=bool(segaware))
    if not segaware:  # the control keeps bilinear upsampling and plain convolutions
        for key in ("upsample", "up_lam_init", "aware_decoder"):
            mcfg.pop(key, None)
    if segaware and embedder is None:
        raise ValueError("run_flow: segaware=True needs a pre-trained embedder")
    net, config = _task_network("flow", mcfg, train, embedder if segaware else None, init)
    _set_masks(net, lams, train_lams)
    groups = _param_groups(net, lr, lam_mult, embedder_mult)
    opt = Adam(groups, lr=lr)
    loader = _loader(train, batch_size, seed, config, paper)
    evaluate = None
    if test is not None:
        i1, i2, fl = test_arrays(test, ("image1", "image2", "flow"), config["input"])
        evaluate = lambda m: evaluate_flow(m, i1, i2, fl)[0]  # noqa: E731
    hist = _fit(net, opt, loader, functools.partial(flow_step, loss=loss), out_dir, epochs,
                config, evaluate, progress, resume, "flow")
    return net, hist
