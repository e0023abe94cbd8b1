"""Reproduce the paper's comparisons on FlyingShapes (generated; nothing to download).

    python examples/reproduce.py --quick      # one seed, small: under 3 min on 2 CPU cores
    python examples/reproduce.py              # 3 seeds, mean and spread: ~23 min on 2 cores
    python examples/reproduce.py --seeds 0 1 2 3 4 --out results-5

For every seed:

1. the embedding network is pre-trained with the embedding loss (Sec. 3.1, 4.1), and
   (a) the ROC AUC of embedding distance vs colour distance for same-region pixel pairs
   is measured on test images (the claim of Fig. 3);
2. the baseline segmentation network is trained; then every row of Table 1 (baseline,
   +9x9 BF, +9x9 BF x4, FC6 segaware, all segaware, all + BF, all + CRF) is fine-tuned
   from it for the same number of epochs, with the pre-trained embedder fine-tuned end
   to end and every lam starting at 0 (the bilateral filters and the CRF at 1), and
   (b) mIoU and trimap mIoU at half-widths 3 and 10 are measured (and the whole trimap
   curve, Fig. 7).
   The segmentation-aware convolutions keep Eq. 7's numerator only (no division by
   the mask sum) unless ``--normalize-segaware``: at lam = 0 they then compute exactly
   what the trained baseline computes, where the normalised form would change every
   output near a border -- most of a feature map at these image sizes;
3. the baseline FlowNetS is trained, then fine-tuned plain and segmentation-aware for
   the same number of epochs, and (c) EPE and AAE are measured (Table 3).

Writes ``--out/REPORT.md`` (tables: mean +- standard deviation over seeds, and each
seed), ``results.json``, figures ``fig3_embeddings.png``, ``fig4_bilateral.png``,
``fig7_trimap.png``, ``fig8_flow.png``, and each run's checkpoint and log under
``--out/runs``.  ``--resume`` reuses finished runs and continues interrupted ones.
"""
import os
import sys
import time

import numpy as np

try:
    import segnp  # noqa: F401
except ImportError:  # a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segnp.experiments import (CHECKPOINT_NAME, SEG_VARIANTS, embed, evaluate_flow,
                               evaluate_segmentation, load_split, load_state, mask_quality,
                               run_embedding, run_flow, run_segmentation, test_arrays)
from segnp.experiments.cli import base_parser, setup, write_json
from segnp.experiments.figures import (figure_bilateral, figure_embeddings, figure_flow,
                                       figure_trimap)
from segnp.io import atomic_path

# Each preset: data size, epochs of every stage, batch sizes, learning rates.  The
# segmentation runs use batches of 4: what limits them on a CPU budget is the number of
# steps (FlyingShapes 64x64, 256 scenes, 30 epochs: 17 % mIoU at batch 8, 24 % at 4,
# for about the same time).  The embedding network, too, is limited by its steps: at lr
# 5e-3 its mask ROC AUC climbs from 0.73 (colour's) to 0.84 in 16 epochs of 256 scenes,
# where 2e-3 had reached only 0.73 after 8.  ``embedder_mult`` 0 freezes the embedder while the rows
# of Table 1 are fine-tuned, which the quick preset does to fit in its time; the
# default fine-tunes it end to end, as the paper.
PRESETS = {
    "quick": {"size": 64, "count": 160, "test_count": 32, "seeds": [0], "emb_epochs": 12,
              "seg_epochs": 16, "ft_epochs": 1, "flow_epochs": 10, "flow_ft_epochs": 1,
              "embedder_mult": 0.0},
    "default": {"size": 64, "count": 256, "test_count": 64, "seeds": [0, 1, 2],
                "emb_epochs": 14, "seg_epochs": 30, "ft_epochs": 2, "flow_epochs": 30,
                "flow_ft_epochs": 2, "embedder_mult": 0.1},
    # tests: end to end in seconds
    "tiny": {"size": 32, "count": 16, "test_count": 8, "seeds": [0], "emb_epochs": 1,
             "seg_epochs": 1, "ft_epochs": 1, "flow_epochs": 1, "flow_ft_epochs": 1,
             "embedder_mult": 0.1},
}
COMMON = {"batch_size": 8, "seg_batch_size": 4, "emb_lr": 5e-3, "seg_lr": 3e-3,
          "ft_lr": 1e-3, "flow_lr": 2e-3, "flow_ft_lr": 1e-3, "lam_mult": 10.0,
          "segaware_normalize": False}
CURVE = tuple(range(1, 21))
WIDTHS = (3, 10)


def _slug(name):
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def run_seed(seed, cfg, out, resume, progress, log):
    """Every run of one seed; returns its results dict and the models for the figures."""
    runs = os.path.join(out, "runs", f"seed{seed}")
    kw = {"progress": progress, "resume": resume, "batch_size": cfg["batch_size"],
          "seed": seed}
    seg_train = load_split("segmentation", None, "train", cfg["count"], cfg["size"],
                           cfg["cache"])
    seg_test = load_split("segmentation", None, "test", cfg["test_count"], cfg["size"],
                          cfg["cache"])
    res, models = {"seed": seed}, {}

    t0 = time.perf_counter()
    emb_net, _ = run_embedding(os.path.join(runs, "embedding"), seg_train,
                               epochs=cfg["emb_epochs"], lr=cfg["emb_lr"], **kw)
    emb = load_state(os.path.join(runs, "embedding", CHECKPOINT_NAME))
    inp = emb[1]["input"]
    images, labels = test_arrays(seg_test, ("image", "label"), inp)
    e = embed(emb_net, images)
    res["masks"] = mask_quality(e, images, labels)
    models["embedding"] = (images, labels, e)
    log(f"seed {seed}: embeddings {time.perf_counter() - t0:.0f} s, mask AUC "
        f"{res['masks']['embedding_auc']:.3f} (colour {res['masks']['colour_auc']:.3f})")

    t0 = time.perf_counter()
    skw = dict(kw, batch_size=cfg["seg_batch_size"])
    base, _ = run_segmentation(os.path.join(runs, "seg_pretrain"), seg_train,
                               epochs=cfg["seg_epochs"], lr=cfg["seg_lr"], **skw)
    init = base.state_dict()
    res["segmentation"] = {}
    for name, variant in SEG_VARIANTS.items():
        t1 = time.perf_counter()
        net, _ = run_segmentation(
            os.path.join(runs, "seg_" + _slug(name)), seg_train, variant=variant,
            epochs=cfg["ft_epochs"], lr=cfg["ft_lr"], embedder=emb, init=init,
            lam_mult=cfg["lam_mult"], embedder_mult=cfg["embedder_mult"],
            model={"segaware_normalize": cfg["segaware_normalize"]}, **skw)
        m, _ = evaluate_segmentation(net, images, labels, seg_train.num_classes,
                                     widths=WIDTHS, curve=CURVE)
        m["lams"] = {k: float(np.asarray(v)) for k, v in net.state_dict().items()
                     if k.endswith("lam") and not k.startswith("embedder.")}
        m["seconds"] = time.perf_counter() - t1
        res["segmentation"][name] = m
        if name == "+9x9 BF":
            models["bf"] = net
        log(f"seed {seed}: {name:14s} mIoU {100 * m['miou']:.2f} trimap3 "
            f"{100 * m['trimap3_miou']:.2f} ({m['seconds']:.0f} s)")
    log(f"seed {seed}: segmentation {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    flow_train = load_split("flow", None, "train", cfg["count"], cfg["size"], cfg["cache"])
    flow_test = load_split("flow", None, "test", cfg["test_count"], cfg["size"], cfg["cache"])
    fbase, _ = run_flow(os.path.join(runs, "flow_pretrain"), flow_train,
                        epochs=cfg["flow_epochs"], lr=cfg["flow_lr"], **kw)
    finit = fbase.state_dict()
    i1, i2, fl = test_arrays(flow_test, ("image1", "image2", "flow"), inp)
    res["flow"], flows = {}, {}
    for name, segaware in (("baseline", False), ("segaware", True)):
        net, _ = run_flow(os.path.join(runs, f"flow_{name}"), flow_train, segaware=segaware,
                          epochs=cfg["flow_ft_epochs"], lr=cfg["flow_ft_lr"], embedder=emb,
                          init=finit, lam_mult=cfg["lam_mult"],
                          embedder_mult=cfg["embedder_mult"],
                          model={"segaware_normalize": cfg["segaware_normalize"]}, **kw)
        res["flow"][name], flows[name] = evaluate_flow(net, i1, i2, fl)
    models["flow"] = (i1, fl, flows)
    log(f"seed {seed}: flow {time.perf_counter() - t0:.0f} s, EPE baseline "
        f"{res['flow']['baseline']['epe']:.3f} segaware {res['flow']['segaware']['epe']:.3f}")
    return res, models, inp


def _stat(values, scale=1.0, digits=2):
    v = np.asarray(values, float) * scale
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def tables(results):
    """The three tables as Markdown lines (mean ± sample standard deviation)."""
    n = len(results)
    lines = [f"Seeds: {', '.join(str(r['seed']) for r in results)} "
             f"({'mean ± std over seeds' if n > 1 else 'one seed'}).", "",
             "### (a) Mask quality: ROC AUC of same-region vs different-region pixel pairs "
             f"at distance {results[0]['masks']['distance']}", "",
             "| distance used | ROC AUC |", "|---|---|",
             f"| colour (RGB, L2) | {_stat([r['masks']['colour_auc'] for r in results], 1, 3)} |",
             f"| learned embedding (L1) | "
             f"{_stat([r['masks']['embedding_auc'] for r in results], 1, 3)} |", "",
             "### (b) Table 1 analogue: semantic segmentation (%)", "",
             "| method | mIoU | trimap-3 mIoU | trimap-10 mIoU | Δ mIoU | Δ trimap-3 |",
             "|---|---|---|---|---|---|"]
    base = [r["segmentation"]["baseline"] for r in results]
    for name in SEG_VARIANTS:
        rows = [r["segmentation"][name] for r in results]
        d = [a["miou"] - b["miou"] for a, b in zip(rows, base)]
        d3 = [a["trimap3_miou"] - b["trimap3_miou"] for a, b in zip(rows, base)]
        lines.append(f"| {name} | {_stat([x['miou'] for x in rows], 100)} | "
                     f"{_stat([x['trimap3_miou'] for x in rows], 100)} | "
                     f"{_stat([x['trimap10_miou'] for x in rows], 100)} | "
                     f"{_stat(d, 100)} | {_stat(d3, 100)} |")
    lines += ["", "### (c) Table 3 analogue: optical flow", "",
              "| method | EPE (px) | AAE (deg) |", "|---|---|---|"]
    for name in ("baseline", "segaware"):
        rows = [r["flow"][name] for r in results]
        lines.append(f"| {name} | {_stat([x['epe'] for x in rows], 1, 3)} | "
                     f"{_stat([x['aae'] for x in rows], 1, 2)} |")
    return lines


def write_report(out, results, cfg, command, seconds, figures):
    lines = ["# segnp: the paper's comparisons on FlyingShapes", "",
             f"Command: `{command}`  ", f"Wall time: {seconds / 60:.1f} min", "",
             "Settings: " + ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "cache"),
             ""] + tables(results)
    if len(results) > 1:
        lines += ["", "### Each seed: mIoU / trimap-3 mIoU (%), mask AUC, flow EPE", "",
                  "| seed | " + " | ".join(SEG_VARIANTS) + " | AUC emb / colour | EPE base / "
                  "segaware |", "|---" * (len(SEG_VARIANTS) + 3) + "|"]
        for r in results:
            seg = r["segmentation"]
            lines.append(f"| {r['seed']} | " + " | ".join(
                f"{100 * seg[n]['miou']:.2f} / {100 * seg[n]['trimap3_miou']:.2f}"
                for n in SEG_VARIANTS) + f" | {r['masks']['embedding_auc']:.3f} / "
                f"{r['masks']['colour_auc']:.3f} | {r['flow']['baseline']['epe']:.3f} / "
                f"{r['flow']['segaware']['epe']:.3f} |")
    lines += ["", "Learned lams (seed of the first run): " + ", ".join(
        f"{name}: " + " ".join(f"{k}={v:.3f}" for k, v in m["lams"].items())
        for name, m in results[0]["segmentation"].items() if m["lams"]), ""]
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    with atomic_path(os.path.join(out, "REPORT.md")) as tmp:
        with open(tmp, "w") as f:
            f.write("\n".join(lines))


def figures(out, results, models, inp):
    from segnp.data.flyingshapes import FLYINGSHAPES_CLASSES as names
    images, labels, e = models["embedding"]
    mean, scale = inp["mean"], inp["scale"]
    path = lambda name: os.path.join(out, name)  # noqa: E731
    figs = [figure_embeddings(path("fig3_embeddings.png"), images, labels, e, mean, scale,
                              class_names=names)]
    if "bf" in models:
        figs.append(figure_bilateral(path("fig4_bilateral.png"), models["bf"], images, labels,
                                     mean, scale, class_names=names))
    curves = {}   # per seed: the figure draws the mean and the spread of paired differences
    for name in SEG_VARIANTS:
        ms = [r["segmentation"][name] for r in results]
        curves[name] = (np.asarray(ms[0]["curve_widths"]),
                        100 * np.asarray([m["curve_miou"] for m in ms]))
    figs.append(figure_trimap(path("fig7_trimap.png"), curves, reference="baseline"))
    i1, fl, flows = models["flow"]   # of the first seed, as results[0]
    epes = {k: results[0]["flow"][k]["epe"] for k in flows if k in results[0]["flow"]}
    figs.append(figure_flow(path("fig8_flow.png"), i1, fl, flows, mean, scale, epes=epes))
    return [os.path.basename(f) for f in figs]


def main(argv=None):
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one seed, small data, short runs")
    p.add_argument("--preset", choices=list(PRESETS), help="overrides --quick")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the preset's)")
    p.add_argument("--out", default="results", help="folder for REPORT.md and figures")
    p.add_argument("--cache", default=None, help="cache folder for generated data")
    p.add_argument("--resume", action="store_true", help="reuse finished runs in --out")
    p.add_argument("--normalize-segaware", action="store_true",
                   help="fine-tune into Eq. 7's normalised segmentation-aware convolutions "
                   "(default: unnormalised, exactly the trained plain ones at lam = 0)")
    for k in ("size", "count", "emb_epochs", "seg_epochs", "ft_epochs", "flow_epochs",
              "flow_ft_epochs"):
        p.add_argument("--" + k.replace("_", "-"), type=int, help="override the preset")
    args = p.parse_args(argv)
    setup(args)
    preset = args.preset or ("quick" if args.quick else "default")
    cfg = dict(PRESETS[preset], **COMMON, preset=preset, cache=args.cache)
    for k in ("size", "count", "emb_epochs", "seg_epochs", "ft_epochs", "flow_epochs",
              "flow_ft_epochs"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    if args.seeds:
        cfg["seeds"] = list(args.seeds)
    if args.normalize_segaware:
        cfg["segaware_normalize"] = True
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress
    log = print
    t0 = time.perf_counter()
    results, models, inp = [], None, None
    for s in cfg["seeds"]:
        res, mods, inp_s = run_seed(s, cfg, args.out, args.resume, progress, log)
        results.append(res)
        if models is None:
            models, inp = mods, inp_s
    figs = figures(args.out, results, models, inp)
    seconds = time.perf_counter() - t0
    command = "python examples/reproduce.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    write_json(os.path.join(args.out, "results.json"),
               {"config": {k: v for k, v in cfg.items() if k != "cache"},
                "seconds": seconds, "results": results})
    write_report(args.out, results, cfg, command.strip(), seconds, figs)
    print("\n".join(tables(results)))
    print(f"\nwrote {os.path.join(args.out, 'REPORT.md')} and {len(figs)} figures "
          f"({seconds / 60:.1f} min)")
    return results


if __name__ == "__main__":
    main()
