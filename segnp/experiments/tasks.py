"""The three tasks of the paper as data -> model -> loss -> metrics recipes: embedding
learning (Sec. 3.1), semantic segmentation (Sec. 5.1) and optical flow (Sec. 5.2).

A run is described by a JSON-like ``config``::

    {"task": "segmentation",
     "model": {...SegNet keyword arguments...},
     "embedder": {...EmbeddingNet keyword arguments...} or None,
     "input": {"mean": [r, g, b], "scale": 1/64}}

where "model" and "embedder" may hold ``"arch": "paper"`` for the paper's own networks
(DeepLabLargeFOV, FlowNetSimple, embedding_vgg16 and their keyword arguments; see
``ARCHS``) instead of the small default ones (``"arch": "small"``)

which every checkpoint stores, so :func:`load_run` rebuilds the network from the file
alone.  Batches are tuples of NumPy arrays from :func:`segnp.data.collate`.
"""
import logging

import numpy as np

from .. import functions as F
from .. import serialization
from ..autograd import Tensor, no_grad
from ..backends import get_backend
from ..metrics import (angular_error, confusion_matrix, end_point_error, miou,
                       pixel_accuracy, trimap_scores)
from ..models import (DeepLabLargeFOV, EmbeddingNet, FlowNetS, FlowNetSimple, SegNet,
                      embedding_vgg16)
from ..models.grids import subsample_point
from ..nn import SegAwareConv2d

__all__ = ["TASKS", "FLOW_LOSSES", "build_model", "load_run", "transfer_weights",
           "embedding_step", "segmentation_step", "oracle_segmentation_step", "end_to_end_step",
           "label_embeddings", "frozen_embedder_step",
           "flow_step", "embed", "segment", "predict_flow", "evaluate_embedding",
           "evaluate_segmentation", "evaluate_flow", "downsample_labels",
           "downsample_flow"]

TASKS = ("embedding", "segmentation", "flow")
# FlowNet's multi-scale loss: full resolution, then 1/4, 1/8, 1/16 (and 1/32, 1/64 for
# the full FlowNetSimple), each scale half the weight of the next finer one.
FLOW_SCALE_WEIGHTS = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125)
# The flow losses of flow_step: "multiscale" (FlowNet's, above) or "final", the
# full-resolution EPE alone (the reproduction's flow rows fine-tune on it: the coarse
# terms pin the 1/4 prediction to the pooled flow, where the segmentation-aware
# upsampling and filter are better served by a coarse flow of their own).
FLOW_LOSSES = ("multiscale", "final")
log = logging.getLogger("segnp")


def _tuples(kwargs):
    # JSON turns tuples into lists; the models want tuples for widths and bf.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in (kwargs or {}).items()}


# config['model']['arch'] (and config['embedder']['arch']): the small networks that train
# on a CPU, or the paper's own (Sec. 5: DeepLab-LargeFOV on VGG-16, FlowNetSimple).
ARCHS = {"small": {"embedding": EmbeddingNet, "segmentation": SegNet, "flow": FlowNetS},
         "paper": {"embedding": embedding_vgg16, "segmentation": DeepLabLargeFOV,
                   "flow": FlowNetSimple}}


def _arch(kwargs):
    arch = kwargs.pop("arch", "small")
    if arch not in ARCHS:
        raise ValueError(f"build_model: 'arch' must be one of {tuple(ARCHS)}; got {arch!r}")
    return arch


def build_model(config):
    """A freshly initialised network for ``config`` (see the module docstring).

    ``config['model']['segaware_normalize']`` (default True) sets ``normalize`` of every
    :class:`SegAwareConv2d` of a segmentation or flow network (not of its embedder).
    False keeps Eq. 7's numerator only, which at lam = 0 is exactly the plain
    convolution, borders included: the way to fine-tune from a trained plain network
    on small images, where most feature-map pixels lie near a border and Eq. 7's
    division by the valid taps would change what the transferred layers compute.
    """
    task = config.get("task")
    if task not in TASKS:
        raise ValueError(f"build_model: config['task'] must be one of {TASKS}; got {task!r}")
    kwargs = _tuples(config.get("model"))
    arch = _arch(kwargs)
    if task == "embedding":
        return ARCHS[arch]["embedding"](**kwargs)
    normalize = bool(kwargs.pop("segaware_normalize", True))
    emb = config.get("embedder")
    embedder = None
    if emb is not None:
        emb = _tuples(emb)
        embedder = ARCHS[_arch(emb)]["embedding"](**emb)
    net = ARCHS[arch][task](embedder=embedder, **kwargs)
    if not normalize:
        for name, layer in net.named_modules():
            if isinstance(layer, SegAwareConv2d) and not name.startswith("embedder"):
                # the initial weights were scaled for the normalised form (k*k taps)
                if layer.normalize:
                    layer.weight.data[...] /= layer.kernel_size ** 2
                layer.normalize = False
    return net


def load_run(path):
    """(model in eval mode, config, extra) from a checkpoint written by a Trainer."""
    ckpt = serialization.read_checkpoint(path)
    config = ckpt["extra"].get("config")
    if not config:
        raise ValueError(f"load_run: {path!r} holds no run config; was it written by "
                         f"segnp.experiments.Trainer?")
    model = build_model(config)
    model.load_state_dict(ckpt["model"])
    return model.eval(), config, ckpt["extra"]


def _module_of(model, name):
    m = model
    for part in name.split(".")[:-1]:
        m = getattr(m, part)
    return m


def transfer_weights(model, state, src_prefix="", dst_prefix=""):
    """Copy the arrays of ``state`` (name -> array) into ``model`` where the names match
    (``src_prefix`` + rest -> ``dst_prefix`` + rest); returns the destination names set.

    A plain convolution's weight going into a normalised :class:`SegAwareConv2d` (whose
    ``lam`` is absent from ``state``) is multiplied by k*k, so that at lam = 0 the layer
    computes what the convolution did (Eq. 7 divides by the k*k valid taps of an
    interior window).  Shapes must match.

    Logs (``segnp`` logger) how many tensors were transferred and which were skipped;
    raises ValueError when ``state`` is not empty and none of its tensors matches (a
    checkpoint of another task or architecture).
    """
    targets = model.state_dict()
    out = {}
    used = set()
    for name in targets:
        if not name.startswith(dst_prefix):
            continue
        key = src_prefix + name[len(dst_prefix):]
        if key not in state:
            continue
        value = np.asarray(state[key])
        if value.shape != targets[name].shape:
            raise ValueError(f"transfer_weights: {key!r} has shape {value.shape}; "
                             f"{name!r} needs {targets[name].shape}")
        layer = _module_of(model, name)
        if (isinstance(layer, SegAwareConv2d) and layer.normalize and name.endswith(".weight")
                and key[:-len("weight")] + "lam" not in state):
            value = value * (layer.kernel_size ** 2)
        out[name] = value
        used.add(key)
    skipped = [k for k in state if k not in used]
    where = f" into {dst_prefix!r}" if dst_prefix else ""
    if state and not out:
        raise ValueError(f"transfer_weights: none of the {len(state)} tensors matches a "
                         f"tensor of the {type(model).__name__}{where} (given "
                         f"{_names(state)}; the model has {_names(targets)}): a checkpoint "
                         f"of another task or architecture?")
    fresh = [n for n in targets if n.startswith(dst_prefix) and n not in out]
    log.info(f"transfer_weights: {len(out)} tensors transferred{where}, {len(skipped)} "
             f"skipped{' (' + _names(skipped) + ')' if skipped else ''}, {len(fresh)} "
             f"model tensors not set from it")
    model.load_state_dict(out, strict=False)
    return list(out)


def _names(names, most=4):
    names = list(names)
    more = f", ... ({len(names)} in all)" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _tensor(a):
    return Tensor(get_backend().asarray(a))


def downsample_labels(labels, factor):
    """Labels (N, H, W) sampled every ``factor`` pixels: the resolution of an embedding
    side output after ceil-mode pooling."""
    return np.ascontiguousarray(labels[:, ::factor, ::factor])


def downsample_flow(flow, stride):
    """Flow (N, 2, H, W) at the pixels of a stride-``stride`` point grid (pixel s i),
    where FlowNetS's strided, padded convolutions sample it (:mod:`segnp.models.grids`).
    Averaging s x s blocks instead would centre the target (s - 1) / 2 pixels off each
    prediction.  Flow stays in input pixels, as the predictions are."""
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"downsample_flow: stride must be a positive int; got {stride!r}")
    return np.ascontiguousarray(subsample_point(flow, stride))


# ---- embedding learning (Sec. 3.1) ----------------------------------------------------
def embedding_loss_terms(e, sides, labels, loss_kwargs=None):
    """The embedding loss of the final embedding plus one per side output (Sec. 4.1)."""
    kw = loss_kwargs or {}
    terms = [F.embedding_loss(e, labels, **kw)]
    H = labels.shape[1]
    for s in sides:
        factor = -(-H // s.shape[2])
        terms.append(F.embedding_loss(s, downsample_labels(labels, factor), **kw))
    return terms


def _embedding_total(e, sides, labels):
    """(the sum of :func:`embedding_loss_terms`, the final embedding's term)."""
    terms = embedding_loss_terms(e, sides, labels)
    loss = terms[0]
    for t in terms[1:]:
        loss = loss + t
    return loss, terms[0]


def embedding_step(model, batch):
    images, labels = batch
    e, sides = model(_tensor(images))
    loss, final = _embedding_total(e, sides, labels)
    return loss, {"final_loss": float(final.item())}


def embed(model, images, batch_size=16):
    """Final embeddings (N, D, H, W) of preprocessed images, as a NumPy array."""
    to_numpy = get_backend().to_numpy
    model.eval()
    with no_grad():
        out = [to_numpy(model(_tensor(images[i:i + batch_size]))[0].data)
               for i in range(0, len(images), batch_size)]
    return np.concatenate(out)


def evaluate_embedding(model, images, labels, batch_size=16):
    """The mean final-embedding loss on preprocessed images and labels."""
    model.eval()
    total = 0.0
    with no_grad():
        for i in range(0, len(images), batch_size):
            e, _ = model(_tensor(images[i:i + batch_size]))
            total += float(F.embedding_loss(e, labels[i:i + batch_size]).item()) * len(e.data)
    return {"embedding_loss": total / len(images)}


# ---- semantic segmentation (Sec. 5.1) -------------------------------------------------
def label_embeddings(labels, num_classes, ignore_index=255):
    """One-hot class embeddings (N, L, H, W) float32 of labels (N, H, W): the
    embeddings of the "ground-truth masks" row, an oracle that bounds what masks can
    give (L1 distance 0 within a class, 2 across; ignored pixels all zeros)."""
    labels = np.asarray(labels)
    e = (labels[:, None] == np.arange(num_classes)[None, :, None, None])
    e &= (labels != ignore_index)[:, None]
    return np.ascontiguousarray(e.astype(np.float32))


def segmentation_step(model, batch):
    images, labels = batch
    scores = model(_tensor(images))
    return F.softmax_cross_entropy(scores, labels), {}


def frozen_embedder_step(model, batch, cache):
    """:func:`segmentation_step` of a network whose embedder is frozen, the embeddings
    taken from ``cache`` (an :class:`~segnp.experiments.embedding_cache.EmbeddingCache`
    of ``model.embedder``): on NumPy arrays bitwise the same step (see
    :mod:`~segnp.experiments.embedding_cache`), without embedding an image again.  Bind
    ``cache`` with functools.partial."""
    images, labels = batch
    scores = model(_tensor(images), _tensor(cache(images)))
    return F.softmax_cross_entropy(scores, labels), {}


def oracle_segmentation_step(model, batch):
    """:func:`segmentation_step` with the ground-truth embeddings of
    :func:`label_embeddings` in place of the embedder's."""
    images, labels = batch
    e = _tensor(label_embeddings(labels, model.num_classes))
    scores = model(_tensor(images), e)
    return F.softmax_cross_entropy(scores, labels), {}


def end_to_end_step(model, batch, aux_weight=0.0):
    """:func:`segmentation_step` of a network whose embedder trains through the task
    loss (the end of Sec. 3.1: "the final objective backpropagates through both
    networks"), plus ``aux_weight`` times the embedding loss of the embedder's final
    and side outputs (Sec. 4.1), which keeps the embeddings tied to the regions while
    the task reshapes them.  Bind ``aux_weight`` with functools.partial."""
    images, labels = batch
    x = _tensor(images)
    e, sides = model.embedder(x)
    loss = F.softmax_cross_entropy(model(x, e), labels)
    if not aux_weight:
        return loss, {}
    aux, _ = _embedding_total(e, sides, labels)
    return loss + float(aux_weight) * aux, {"embedding_loss": float(aux.item())}


def segment(model, images, batch_size=16, embeddings=None):
    """Class scores (N, L, H, W) of preprocessed images, as a NumPy array;
    ``embeddings`` (N, D, H, W) replace the embedder's."""
    to_numpy = get_backend().to_numpy
    model.eval()
    out = []
    with no_grad():
        for i in range(0, len(images), batch_size):
            args = [_tensor(images[i:i + batch_size])]
            if embeddings is not None:
                args.append(_tensor(embeddings[i:i + batch_size]))
            out.append(to_numpy(model(*args).data))
    return np.concatenate(out)


def evaluate_segmentation(model, images, labels, num_classes, widths=(3, 10),
                          batch_size=16, curve=None, embeddings=None):
    """mIoU, pixel accuracy and trimap mIoU at ``widths`` on preprocessed images.

    ``curve``: half-widths for the whole trimap curve (Fig. 7), returned as lists
    under 'curve_widths' and 'curve_miou'.  ``embeddings``: see :func:`segment`.
    Returns (metrics dict, predictions).
    """
    pred = segment(model, images, batch_size, embeddings).argmax(axis=1)
    conf = confusion_matrix(pred, labels, num_classes)
    out = {"miou": miou(conf), "pixel_acc": pixel_accuracy(conf)}
    all_widths = sorted(set(widths) | set(curve or ()))
    tri = trimap_scores(pred, labels, num_classes, widths=all_widths)
    for w in widths:
        out[f"trimap{w}_miou"] = tri[w][1]
    if curve:
        out["curve_widths"] = [int(w) for w in curve]
        out["curve_miou"] = [tri[w][1] for w in curve]
    return out, pred


# ---- optical flow (Sec. 5.2) ----------------------------------------------------------
def _frames(image1, image2):
    return np.ascontiguousarray(np.concatenate([image1, image2], axis=1))


def flow_step(model, batch, loss="multiscale"):
    """The flow training step: ``loss`` of ``FLOW_LOSSES`` (checked by the caller)."""
    image1, image2, flow = batch
    pred, scales = model(_tensor(_frames(image1, image2)))
    total = F.epe_loss(pred, flow)
    if loss == "final":
        return total, {}
    for w, p, s in zip(FLOW_SCALE_WEIGHTS[1:], reversed(scales),
                       reversed(model.SCALE_STRIDES)):
        total = total + w * F.epe_loss(p, downsample_flow(flow, s))
    return total, {}


def predict_flow(model, image1, image2, batch_size=16):
    """Flow (N, 2, H, W) for preprocessed frame pairs, as a NumPy array."""
    to_numpy = get_backend().to_numpy
    model.eval()
    with no_grad():
        out = [to_numpy(model(_tensor(_frames(image1[i:i + batch_size],
                                              image2[i:i + batch_size])))[0].data)
               for i in range(0, len(image1), batch_size)]
    return np.concatenate(out)


def evaluate_flow(model, image1, image2, flow, batch_size=16):
    """Average end-point error and angular error (Table 3). Returns (metrics, pred)."""
    pred = predict_flow(model, image1, image2, batch_size)
    return {"epe": end_point_error(pred, flow), "aae": angular_error(pred, flow)}, pred
