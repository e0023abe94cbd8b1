"""Joint upsampling of optical flow (issue 22, part 3; ``examples/joint_upsampling.py``).

The true flow of FlyingShapes scenes, average-pooled by a factor f, is brought back to
full resolution by bilinear interpolation or by :class:`JointUpsampler`: a
segmentation-aware bilinear upsampling (``nn.SegAwareUpsample``, block grid) guided by
frame 1, followed by back-projection steps ``y <- y + U(pooled - avgpool_f(y))`` with
the same masks, each preceded (``smooth``, SMOOTH) by a segmentation-aware average at
stride 1 (Eq. 4).  With masks that follow the objects, a pixel next to a motion boundary
takes the flow of the samples on its own side, the smoothing step carries a region's
flow to pixels whose nearest samples all lie across the boundary, and back-projection
removes what the pooled samples that straddle the boundary mixed in.  The guide is the
concatenation of frame 1 (times a weight) and the embeddings of a motion embedder
trained on the generator's instance labels of frame 1 (Eqs. 1-2).  The upsampler's
lams are learned with the end-point error (through the back-projection steps) over the
frozen embedder; then the embedder and both factors' lams are fine-tuned together
through the sum of their errors (``finetune``).  The embedder (frozen or fine-tuned),
the image weight and the number of steps at test time are chosen on the validation
split.

Optionally (``flow_input``, :func:`embedder_input`) the embedder also sees the pooled
flow, upsampled bilinearly, as 2 channels next to frame 1: from the start
(``flow_stage="pretrain"``) or only end to end, its weights zero at first
(``"end_to_end"``, :func:`with_flow_input`).  On validation this did not help (see
docs/results/joint_upsampling/README.md), so the script's default is frame 1 alone.
"""
import time

import numpy as np

from .. import functions as F
from .. import nn
from ..autograd import Tensor, no_grad
from ..backends import get_backend
from ..data.flyingshapes import render_scene
from ..metrics import end_point_error
from ..models import EmbeddingNet
from ..optim import Adam
from ..random import manual_seed
from .data import INPUT_SCALE, SPLIT_SEEDS, preprocess
from .tasks import embedding_loss_terms

__all__ = ["JointUpsampler", "scenes", "avg_pool_flow", "embedder_input", "pretrain_embedder",
           "with_flow_input", "embed_images", "guide", "upsample", "upsample_steps",
           "step_errors", "learn_lam", "finetune", "run", "figure"]

# The motion embedder of the reproduction's flow row (protocol: flow_embedding).
FACTORS = (4, 8)
EMBEDDER = {"widths": (8, 16, 32), "embed_dim": 16, "side_dim": 8}
FLOW_SCALE = 0.5  # the flow's std is ~1.7 px: unit-ish embedder inputs, as INPUT_SCALE
# Whose pooled flow the embedder sees next to frame 1 (``run``, ``embedder_input``):
# none, each factor its own, or the x8 one for both (for x4 the means of its 2 x 2 blocks).
FLOW_INPUTS = {"none": {4: None, 8: None}, "own": {4: 4, 8: 8}, "x8": {4: 8, 8: 8}}


def scenes(split, count, size):
    """(frames uint8 (N, H, W, 3), instances int64 (N, H, W), flow float32 (N, 2, H, W))
    of FlyingShapes ``split`` (the generator seeds of ``experiments.data``)."""
    out = [render_scene(SPLIT_SEEDS[split], i, (size, size)) for i in range(count)]
    return (np.stack([s["image1"] for s in out]),
            np.stack([s["instances"] for s in out]).astype(np.int64),
            np.stack([s["flow"] for s in out]).transpose(0, 3, 1, 2).copy())


def avg_pool_flow(flow, factor):
    """(N, 2, H, W) -> (N, 2, H/f, W/f): the mean flow of each f x f block."""
    N, C, H, W = flow.shape
    return flow.reshape(N, C, H // factor, factor, W // factor, factor).mean(axis=(3, 5))


class JointUpsampler(nn.Module):
    """Pooled flow lo (N, 2, H/f, W/f) and a guide (N, D, H, W) -> flow (N, 2, H, W):
    ``nn.SegAwareUpsample`` (block grid), then ``iterations`` back-projection steps
    ``y <- y + up(lo - avgpool_f(y))`` with the same masks.

    With ``smooth`` (ksize, dilation), each back-projection step is preceded by
    ``y <- S(y)``: ``nn.SegAwareAvgPool2d`` at stride 1 (the bilateral filter of Eq. 4
    with the masks of Eq. 3, its own lam).  A pixel whose nearest samples all straddle a
    boundary, or lie across it, gets from the upsampling alone a mixed flow; S pulls in
    the flow of its own region from a few pixels further, and the back-projection after
    it restores the pooled means.  The lams (one, or two with ``smooth``) are the only
    parameters."""

    def __init__(self, factor, lam_init=2.0, smooth=None):
        super().__init__()
        self.factor = factor
        self.up = nn.SegAwareUpsample(factor, "block", lam_init=lam_init)
        self.smooth = None
        if smooth is not None:
            ksize, dilation = smooth
            self.smooth = nn.SegAwareAvgPool2d(ksize, stride=1, dilation=dilation,
                                               lam_init=lam_init)

    def forward(self, lo, guide, iterations):
        for y in self.steps(lo, guide, iterations):
            pass
        return y

    def steps(self, lo, guide, iterations):
        """The flow after 0, 1, .., ``iterations`` back-projection steps (a generator):
        one pass gives what ``forward`` gives for each number of steps."""
        y = self.up(lo, guide)
        yield y
        for _ in range(iterations):
            if self.smooth is not None:
                y = self.smooth(y, guide)
            y = y + self.up(lo - F.avg_pool2d(y, self.factor), guide)
            yield y

    def lams(self):
        """The learned lams, as floats: {"up": .., "smooth": ..} (no "smooth" without it)."""
        out = {"up": float(self.up.lam.item())}
        if self.smooth is not None:
            out["smooth"] = float(self.smooth.lam.item())
        return out


def _batches(rng, n, batch_size, steps):
    """``steps`` index batches of an epoch-wise shuffled range(n)."""
    order = []
    for _ in range(steps):
        if len(order) < batch_size:
            order = order + list(rng.permutation(n))
        yield np.asarray(order[:batch_size])
        order = order[batch_size:]


def _fit(params, loss_of, n, steps, batch_size, seed, lr, poly=True):
    """Adam on ``params`` for ``steps`` batches of an epoch-wise shuffled range(n), the
    loss of a batch of indices being ``loss_of(idx)``; with ``poly``, the poly schedule
    from ``lr``.  Returns the loss of each step."""
    opt = Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    losses = []
    for i, idx in enumerate(_batches(rng, n, batch_size, steps)):
        if poly:
            for group in opt.param_groups:
                group["lr"] = lr * (1 - i / max(1, steps)) ** 0.9
        loss = loss_of(idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return losses


def embedder_input(images, lo=None):
    """The embedder's input: frame 1 (N, 3, H, W) alone, or, given a pooled flow lo
    (N, 2, H/f, W/f), with 2 channels more: lo upsampled bilinearly to (H, W) times
    FLOW_SCALE.  The coarse flow is constant inside a moving object, so it tells the
    guide which of frame 1's textured patches belong together."""
    if lo is None:
        return images
    return np.concatenate([images, _bilinear(lo, images.shape[2]) * np.float32(FLOW_SCALE)],
                          axis=1)


def pretrain_embedder(images, instances, steps, batch_size, seed, lr=5e-3, dilations=(1, 2, 5),
                      widths=EMBEDDER["widths"]):
    """An EmbeddingNet (input channels those of ``images`` (N, C, H, W): frame 1 and
    perhaps a flow input, :func:`embedder_input`) trained on frame 1's instances with the
    embedding loss of the final embedding and the side outputs (Sec. 4.1; pairs at
    ``dilations``), Adam with a poly schedule."""
    manual_seed(seed)
    net = EmbeddingNet(**dict(EMBEDDER, widths=tuple(widths)), in_channels=images.shape[1])
    xp = get_backend().xp

    def loss_of(idx):
        e, sides = net(Tensor(xp.asarray(images[idx])))
        terms = embedding_loss_terms(e, sides, xp.asarray(instances[idx]),
                                     {"dilations": tuple(dilations)})
        loss = terms[0]
        for term in terms[1:]:
            loss = loss + term
        return loss

    _fit(net.parameters(), loss_of, len(images), steps, batch_size, seed, lr)
    return net


def with_flow_input(embedder):
    """A copy of ``embedder`` that takes 2 input channels more (the flow of
    :func:`embedder_input`), their weights in conv1_1 and in the final fuse (which sees
    the input) zero: the same embeddings until end-to-end training learns to use them."""
    net = EmbeddingNet(widths=embedder.widths, embed_dim=embedder.embed_dim,
                       side_dim=embedder.side1.weight.shape[0],
                       in_channels=embedder.in_channels + 2)
    state = embedder.state_dict()
    for key in ("conv1_1.weight", "fuse.weight"):
        w = state[key]
        state[key] = np.concatenate([w, np.zeros_like(w[:, :2])], axis=1)
    net.load_state_dict(state)
    return net


def embed_images(embedder, images, batch_size=16):
    """Final embeddings (N, D, H, W) of preprocessed images, without gradients."""
    xp, out = get_backend().xp, []
    with no_grad():
        for i in range(0, len(images), batch_size):
            e, _ = embedder(Tensor(xp.asarray(images[i:i + batch_size])))
            out.append(get_backend().to_numpy(e.data))
    return np.concatenate(out)


def guide(images, embeddings, image_weight):
    """[image_weight * frame 1, embeddings] (N, 3 + D, H, W) float32."""
    return np.concatenate([images * np.float32(image_weight), embeddings], axis=1)


def upsample(model, lo, guides, iterations, batch_size=16):
    """``model(lo, guides, iterations)`` (N, 2, H, W), in batches, without gradients."""
    return upsample_steps(model, lo, guides, iterations, batch_size, last_only=True)[0]


def upsample_steps(model, lo, guides, iterations, batch_size=16, last_only=False):
    """[the upsampled flow after T back-projection steps for T = 0 .. iterations]: one
    pass of ``model.steps`` per batch, without gradients.  With ``last_only``, [the flow
    after ``iterations`` steps] alone: the earlier steps are not copied out."""
    xp = get_backend().xp
    out = {T: [] for T in ([iterations] if last_only else range(iterations + 1))}
    with no_grad():
        for i in range(0, len(lo), batch_size):
            ys = model.steps(Tensor(xp.asarray(lo[i:i + batch_size])),
                             Tensor(xp.asarray(guides[i:i + batch_size])), iterations)
            for T, y in enumerate(ys):
                if T in out:
                    out[T].append(get_backend().to_numpy(y.data))
    return [np.concatenate(o) for o in out.values()]


def step_errors(model, lo, guides, flow, iterations):
    """{T: the end-point error against ``flow`` after T back-projection steps} for
    T = 0 .. iterations, from one pass (:func:`upsample_steps`)."""
    return {T: end_point_error(y, flow)
            for T, y in enumerate(upsample_steps(model, lo, guides, iterations))}


def learn_lam(model, guides, lo, flow, steps, iterations, batch_size, seed, lr=0.05):
    """The model's lams learned with the end-point error of the upsampled pooled training
    flows ``lo`` (Adam, a constant lr); the guide is fixed, so no gradient flows to the
    embeddings."""
    xp = get_backend().xp

    def loss_of(idx):
        y = model(Tensor(xp.asarray(lo[idx])), Tensor(xp.asarray(guides[idx])), iterations)
        return F.epe_loss(y, xp.asarray(flow[idx]))

    _fit(model.parameters(), loss_of, len(guides), steps, batch_size, seed, lr, poly=False)
    return model


def finetune(embedder, models, image_weights, inputs, lo, flow, steps, iterations,
             batch_size, seed, lr=1e-2):
    """The embedder and every model's lams trained end to end (Adam, poly schedule) with
    the sum over factors of the end-point error of ``models[f]`` (guide
    ``[image_weights[f] * frame 1, embedder(inputs[f])]``, frame 1 being the first 3
    channels of ``inputs[f]``, :func:`embedder_input`) on the pooled training flows
    ``lo[f]``.  ``inputs`` is one (N, C, H, W) array for all factors or a dict of them
    per factor; factors that share one array share one forward pass of the embedder.
    Returns the loss of each step."""
    if not isinstance(inputs, dict):
        inputs = {f: inputs for f in models}
    params = list(embedder.parameters()) + [p for m in models.values() for p in m.parameters()]
    xp = get_backend().xp

    def loss_of(idx):
        loss, seen = None, {}
        for f, model in models.items():
            if id(inputs[f]) not in seen:
                x = xp.asarray(inputs[f][idx])
                seen[id(inputs[f])] = x, embedder(Tensor(x))[0]
            x, e = seen[id(inputs[f])]
            g = F.concat([Tensor(x[:, :3] * np.float32(image_weights[f])), e], axis=1)
            y = model(Tensor(xp.asarray(lo[f][idx])), g, iterations)
            term = F.epe_loss(y, xp.asarray(flow[idx]))
            loss = term if loss is None else loss + term
        return loss

    return _fit(params, loss_of, len(flow), steps, batch_size, seed, lr)


IMAGE_WEIGHTS = (0.0, 0.5, 1.0)
# The smoothing step of each factor's upsampler (JointUpsampler: ksize, dilation), chosen
# on validation (docs/results/joint_upsampling/README.md); ``--no-smooth`` drops it.
SMOOTH = {4: (5, 1), 8: (5, 2)}
# Back-projection steps tried at test time (chosen on validation): 0 .. this x the
# training's.  With the smoothing step, validation EPE still falls past twice them.
TEST_ITERATIONS = 4


def run(args):
    """The experiment of ``examples/joint_upsampling.py``: (results, details, figure
    arguments).  Per factor and image weight, the lams are learned on the training split
    over the frozen embedder; from each factor's best image weight on validation, a copy
    of that upsampler and the embedder are fine-tuned end to end (:func:`finetune`).
    Frozen or fine-tuned, the image weight and the back-projection steps are chosen on
    validation.
    ``args.flow_input`` (a key of FLOW_INPUTS) and ``args.flow_stage`` say whose pooled
    flow the embedder sees next to frame 1 and from when; ``args.widths`` its widths."""
    t = time.time()
    sets = {split: scenes(split, n, args.size) for split, n in
            (("train", args.count), ("val", args.val_count), ("test", args.test_count))}
    mean = sets["train"][0].reshape(-1, 3).mean(axis=0)
    images = {k: preprocess(v[0], mean, INPUT_SCALE) for k, v in sets.items()}
    details = {"data_seconds": round(time.time() - t, 1), "size": args.size,
               "counts": {k: len(v[0]) for k, v in sets.items()}, "seed": args.seed,
               "embedder": {"flow_input": args.flow_input, "flow_stage": args.flow_stage,
                            "widths": list(args.widths), "steps": args.emb_steps}}
    # the pooled flows, per factor and split
    lo = {f: {k: avg_pool_flow(v[2], f) for k, v in sets.items()} for f in FACTORS}
    t = time.time()
    # whose pooled flow the embedder sees (FLOW_INPUTS), in its training with the
    # embedding loss (pre) and end to end (source): the same, or none before
    source = FLOW_INPUTS[args.flow_input]
    pre = source if args.flow_stage == "pretrain" else FLOW_INPUTS["none"]
    # the embedder's inputs, per source of its flow channels and split
    inputs = {s: {k: embedder_input(v, None if s is None else lo[s][k])
                  for k, v in images.items()}
              for s in sorted(set(source.values()) | set(pre.values()), key=str)}
    # one embedder for all sources: trained on each scene once per source
    pre_sources = sorted(set(pre.values()), key=str)
    embedder = pretrain_embedder(np.concatenate([inputs[s]["train"] for s in pre_sources]),
                                 np.tile(sets["train"][1], (len(pre_sources), 1, 1)),
                                 args.emb_steps, args.batch_size, args.seed,
                                 widths=args.widths)
    emb = {s: {k: embed_images(embedder, x) for k, x in inputs[s].items()}
           for s in pre_sources}
    details["embedder_seconds"] = round(time.time() - t, 1)
    smooth = SMOOTH if args.smooth else {f: None for f in FACTORS}
    most_steps = TEST_ITERATIONS * args.iterations  # tried at test: 0 .. most_steps
    frozen = {}  # per factor: val EPE of (image weight, steps), the upsampler per weight
    for f in FACTORS:
        t = time.time()
        val, learned = {}, {}
        for a in IMAGE_WEIGHTS:
            manual_seed(args.seed)
            model = learn_lam(JointUpsampler(f, smooth=smooth[f]),
                              guide(images["train"], emb[pre[f]]["train"], a),
                              lo[f]["train"], sets["train"][2], args.steps, args.iterations,
                              args.batch_size, args.seed)
            model.eval()
            learned[a] = model
            g = guide(images["val"], emb[pre[f]]["val"], a)
            errors = step_errors(model, lo[f]["val"], g, sets["val"][2], most_steps)
            val.update({(a, T): v for T, v in errors.items()})
        frozen[f] = {"val": val, "models": learned, "seconds": round(time.time() - t, 1)}
    # end to end, from each factor's best image weight and its lams on the frozen embedder
    t = time.time()
    weights = {f: min(frozen[f]["val"], key=lambda k: (frozen[f]["val"][k], k))[0]
               for f in FACTORS}
    models = {}
    for f in FACTORS:  # a copy: the frozen-embedder upsampler stays a choice at test
        models[f] = JointUpsampler(f, smooth=smooth[f])
        models[f].load_state_dict(frozen[f]["models"][weights[f]].state_dict())
    if pre != source:
        embedder = with_flow_input(embedder)
    losses = finetune(embedder, models, weights, {f: inputs[source[f]]["train"] for f in FACTORS},
                      {f: lo[f]["train"] for f in FACTORS}, sets["train"][2], args.ft_steps,
                      args.iterations, args.batch_size, args.seed, lr=args.ft_lr)
    tuned = {s: {k: embed_images(embedder, inputs[s][k]) for k in ("val", "test")}
             for s in set(source.values())}
    details["end_to_end"] = {"steps": args.ft_steps, "lr": args.ft_lr,
                             "image_weights": {f"x{f}": w for f, w in weights.items()},
                             "loss_first_last_10": [float(np.mean(losses[:10])),
                                                    float(np.mean(losses[-10:]))]
                             if losses else [],
                             "seconds": round(time.time() - t, 1)}
    results, shown = {}, {}
    for f in FACTORS:
        a = weights[f]
        models[f].eval()
        g_tuned = guide(images["val"], tuned[source[f]]["val"], a)
        val_tuned = step_errors(models[f], lo[f]["val"], g_tuned, sets["val"][2], most_steps)
        choices = {("frozen", w, T): v for (w, T), v in frozen[f]["val"].items()}
        choices.update({("end_to_end", a, T): v for T, v in val_tuned.items()})
        kind, a, T = min(choices, key=lambda k: (choices[k], k))
        if kind == "frozen":
            model = frozen[f]["models"][a]
            e_test = emb[pre[f]]["test"]
        else:
            model, e_test = models[f], tuned[source[f]]["test"]
        seg_test = upsample(model, lo[f]["test"], guide(images["test"], e_test, a), T)
        bil_test = _bilinear(lo[f]["test"], args.size)
        key = f"x{f}"
        results[key] = {"bilinear": end_point_error(bil_test, sets["test"][2]),
                        "segaware": end_point_error(seg_test, sets["test"][2])}
        details[key] = {
            "val": {"bilinear": end_point_error(_bilinear(lo[f]["val"], args.size),
                                                sets["val"][2]),
                    "segaware_frozen_embedder": {
                        f"image_weight={w} iterations={n}": v
                        for (w, n), v in frozen[f]["val"].items()},
                    "segaware_end_to_end": {f"image_weight={weights[f]} iterations={n}": v
                                            for n, v in val_tuned.items()}},
            "chosen": {"embedder": kind, "image_weight": a, "iterations": T,
                       "smooth": smooth[f], "lams": model.lams()},
            "lams_frozen_embedder": {str(w): m.lams() for w, m in frozen[f]["models"].items()},
            "lams_end_to_end": models[f].lams(),
            "seconds_frozen_embedder": frozen[f]["seconds"]}
        shown[f"bilinear x{f}"], shown[f"segaware x{f}"] = bil_test, seg_test
    figure_data = (images["test"], sets["test"][2], shown, mean)
    return results, details, figure_data


def _bilinear(lo, size):
    with no_grad():
        return get_backend().to_numpy(F.resize_bilinear(lo, (size, size)).data)


def figure(path, images, flow, shown, mean, count=3):
    """Test scenes: frame 1, the true flow and each upsampling (``figure_flow``)."""
    from .figures import figure_flow
    epes = {k: end_point_error(v, flow) for k, v in shown.items()}
    return figure_flow(path, images[:count], flow[:count], {k: v[:count] for k, v in shown.items()},
                       mean, INPUT_SCALE, count=count, epes=epes,
                       title="Joint upsampling of flow: average-pooled by 4 and 8, "
                             "bilinear vs segmentation-aware")
