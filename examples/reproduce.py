"""Reproduce the paper's comparisons on FlyingShapes (generated; nothing to download).

    python examples/reproduce.py --quick      # one seed, small: about 2 min on 2 idle CPU cores
    python examples/reproduce.py              # 3 seeds, mean and spread: about 40 min
    python examples/reproduce.py --seeds 0 1 2 3 4 --out results-5

The protocol (``segnp/experiments/protocol.py`` has the details), for every seed:

1. two embedding networks are trained with the embedding loss (Sec. 3.1, 4.1), one on
   class labels and one on the generator's instance labels (motion regions, for flow);
   (a) the ROC AUC of embedding vs colour distance for same-region pixel pairs is
   measured on test scenes (the claim of Fig. 3);
2. the baseline segmentation network is trained; every row of Table 1 is fine-tuned
   from it for the same number of steps with the same data order, the "baseline" row
   being the control fine-tuned in exactly the same way; (b) mIoU and trimap mIoU
   (Fig. 7) are measured on validation and test scenes, and every Δ is paired with the
   same seed's control.  The masks' lams are set from embedding statistics of training
   scenes (``segnp.nn.calibrate_lams``) and fixed; the row "all segaware, end to end"
   also fine-tunes the embedder through the task loss; two extra rows show the ceiling
   (ground-truth masks) and what learning lam from 0 does (it stays near 0);
3. a FlowNetS is trained, then the control and the segmentation-aware variant are
   fine-tuned from it; (c) EPE and AAE next to the floor of a constant flow per image.

The runs of all seeds are independent jobs, spread over ``--workers`` processes (one
BLAS thread each).  Choices are made on the validation split: compare the "val"
columns of one-seed runs (``--seeds 0 --rows ... --no-flow``) with other settings
(docs/results/probes.md lists those behind the defaults); test is only reported.
Writes ``--out/REPORT.md``, ``results.json``, the figures
``fig3_embeddings.png``, ``fig4_bilateral.png``, ``fig7_trimap.png``,
``fig8_flow.png``, and each run's checkpoint and log under ``--out/runs``;
``--resume`` reuses finished runs, and refuses settings other than those they were made
with (``--out/options.json``; seeds, rows and ``--no-flow`` may change).
"""
import json
import os
import sys
import time

try:
    import segnp  # noqa: F401
except ImportError:  # a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from segnp.command import (fraction, nonnegative_float, nonnegative_int,  # noqa: E402
                           positive_float, positive_int)
from segnp.experiments.cli import (OPTIONS_NAME, RunError, base_parser,  # noqa: E402
                                   read_options, run_script, setup, write_json)
from segnp.models import FlowNetS  # noqa: E402
from segnp.experiments.protocol import (FLOW_ROWS, SEG_ROWS, constant_flow,  # noqa: E402
                                        prepare_data, seed_jobs)
from segnp.experiments.tasks import FLOW_LOSSES  # noqa: E402
from segnp.experiments.report import report_lines, summary_lines  # noqa: E402
from segnp.experiments.schedule import run_jobs  # noqa: E402
from segnp.io import atomic_path  # noqa: E402

# Each preset: data, the length of every stage, widths.  The steps are what a CPU
# budget limits; the numbers were set on the validation split.
SEGNET = {"widths": [16, 32, 48, 64], "fc_width": 128, "fc6_dilation": 2, "dropout": 0.0,
          "output_stride": 8, "segaware_normalize": False}
# The flow row's 9x9 bilateral filter first ran 4 times (bf_repeat: 16 now, below) at
# lam 5 (then trained), and the prediction layer's mask keeps 0.9 (keep_flow): validation
# EPE, seed 0, after the same 512 fine-tuning steps: control 1.351; keep 0.5 with the
# filter x4 1.323, keep 0.9 1.301; the filter once at lam 1 (trained), keep 0.5: 1.354.
# lam 5 was the best of 0.5-40 for the filter applied to the baseline's flow.  The motion
# embedder trains 6 epochs: that filter's validation EPE was 1.306 with 4 and 1.297 with 6.
# Its upsamplings (1/16 -> 1/8 -> 1/4 -> 1) are segmentation-aware, their lams starting
# at 10, and so are the decoder's convolutions (aware_decoder); the motion embedder is
# fine-tuned through the flow loss at flow_emb_mult (COMMON) x the lr.  Validation EPE,
# seed 0 (docs/results/flow_upsample; control 1.3564): bilinear 1.2975; the upsamplings,
# lams from 0: 1.2818, from 10: 1.2745; with the decoder's convolutions 1.2730; the
# embedder fine-tuned x1 1.2605, x3 1.2544, x10 1.2536; both 1.2585 (x1), 1.2539 (x3).
# Then the filter x16 (bf_repeat), flow_ft_lr 2e-3 and the full-resolution loss alone
# (flow_ft_loss "final"), val / control by seed 0, 1, 2: x4 at 1e-3, multi-scale (the
# earlier default) 0.925, 0.918, 0.929; x16 at 2e-3 0.905, 0.904, 0.915; with "final"
# 0.893, 0.896, 0.906 (seed 2: lr 3e-3 0.907; flow_emb_mult 1, 1.5, 10: 0.911, 0.908,
# 0.927; keep_flow 0.8, 0.95: 0.906, 0.906; the filter's lam from 10: 0.906; the
# upsamplings' from 20: 0.911).  Then the fine-tuning's length (flow_ft_epochs, both
# rows): 3 epochs 0.889, 0.884, 0.904; 4 epochs 0.883, 0.882, 0.899 (the default
# preset's 4).  A 13x13 filter (2 epochs, seed 2): 0.911.
# docs/results/flow_upsample/README.md.
FLOWNET = {"widths": [16, 24, 32, 48], "bf_repeat": 16, "bf_lam_init": 5.0,
           "upsample": "segaware+decoder", "up_lam_init": 10.0,
           "aware_decoder": ["up3", "predict3", "up2"]}
PRESETS = {
    # the README's main job: no flow (it shows Table 1's point in under 5 minutes)
    "quick": {"size": 64, "count": 1024, "flow_count": 1024, "val_count": 128,
              "test_count": 128, "seeds": [0], "emb_epochs": 4, "flow_emb_epochs": 2,
              "seg_epochs": 6, "ft_epochs": 2, "flow_epochs": 8, "flow_ft_epochs": 2,
              "flow": False,
              "rows": ["baseline", "+9x9 BF", "all segaware", "ground-truth masks"]},
    # 16 baseline epochs and 1,536 fine-tuning steps (docs/results/probes.md): the
    # control on validation 36.4 % (8 epochs, 768 steps) -> 47.8 %
    "default": {"size": 64, "count": 1024, "flow_count": 2048, "val_count": 128,
                "test_count": 128, "seeds": [0, 1, 2], "emb_epochs": 6,
                "flow_emb_epochs": 6, "seg_epochs": 16, "ft_epochs": 6, "flow_epochs": 16,
                "flow_ft_epochs": 4, "flow": True, "rows": list(SEG_ROWS)},
    # tests: end to end in seconds
    "tiny": {"size": 32, "count": 16, "flow_count": 16, "val_count": 8, "test_count": 8,
             "seeds": [0], "emb_epochs": 1, "flow_emb_epochs": 1, "seg_epochs": 1,
             "ft_epochs": 1, "flow_epochs": 1, "flow_ft_epochs": 1, "flow": True,
             "rows": list(SEG_ROWS)},
}
# The end-to-end row: embedder at 1 x the lr, plus the embedding loss at weight 1
# (validation, seed 0, docs/results/probes.md: without it the task loss pulls the
# embeddings together, AUC 0.88 -> 0.77), lams calibrated at keep 0.85 (keep_e2e):
# validation Δ over seeds 0-2 (docs/results/probes.md, third round), keep 0.9 x 0.3
# (the earlier default) +2.70, 0.9 x 1 +2.77, 0.9 x 3 +2.53, 0.8 x 0.3 +2.90, 0.85 x 1
# +3.31, 0.8 x 1 +3.14, 0.7 x 1 +2.10, 0.8 x 3 +2.78; the frozen row: +2.77 at 0.9,
# +2.40 at 0.8.  keep_all_end, keep_all_fc6: off (a sharpening schedule lost 1.4
# points; a sharper FC6 gains mostly what an FC6 cut to its centre tap gains).
# Fine-tuning lr 2e-3, for every row: validation, 3 seeds (docs/results/probes.md),
# against 1e-3 the control 47.3 -> 48.9 %, all segaware +2.34 -> +2.77, +9x9 BF +2.82
# -> +2.36 (seed 0 alone, 3e-3 / 4e-3: all segaware +2.75 / +2.61, BF +2.79 / +2.20).
COMMON = {"batch_size": 8, "seg_batch_size": 4, "emb_lr": 5e-3, "seg_lr": 3e-3,
          "ft_lr": 2e-3, "flow_lr": 5e-3, "flow_ft_lr": 2e-3, "lam_mult": 10.0,
          "flow_emb_mult": 3.0, "flow_ft_loss": "final",
          "keep_all": 0.9, "keep_fc6": 0.5, "keep_flow": 0.9, "keep_all_end": None,
          "keep_all_fc6": None, "keep_e2e": 0.85, "e2e_emb_mult": 1.0,
          "e2e_aux_weight": 1.0,
          "segnet": SEGNET, "flownet": FLOWNET}
OVERRIDES = ("size", "count", "flow_count", "emb_epochs", "flow_emb_epochs", "seg_epochs",
             "ft_epochs", "flow_epochs", "flow_ft_epochs")
FLOAT_OVERRIDES = ("keep_all", "keep_all_end", "keep_all_fc6", "keep_e2e", "keep_fc6",
                   "keep_flow", "e2e_emb_mult", "e2e_aux_weight", "flow_emb_mult", "ft_lr",
                   "flow_ft_lr")


# What a resumed run may change: which seeds, rows and comparisons run.  Every other
# setting shapes the runs themselves, and a finished run trained with another value
# would be reused under the new one's name.
RESUME_FREE = ("seeds", "rows", "flow", "preset")
SETTINGS = OPTIONS_NAME  # where every script records what --resume compares


def _as_run(settings):
    """Settings as the runs used them: runs recorded before keep_e2e existed (or with
    None) calibrated the end-to-end row at keep_all, so that is what they compare as."""
    if settings.get("keep_e2e") is None and "keep_all" in settings:
        return dict(settings, keep_e2e=settings["keep_all"])
    return settings


def check_settings(out, cfg, resume):
    """Refuse to resume the runs in ``out`` with settings other than theirs; return the
    settings to record there."""
    mine = json.loads(json.dumps({k: v for k, v in cfg.items() if k not in RESUME_FREE}))
    saved = read_options(out) if resume else None
    if saved is not None:
        old, new = _as_run(saved), _as_run(mine)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            was = ", ".join(f"{k}={old.get(k)!r} (now {new.get(k)!r})" for k in changed)
            raise RunError(f"--resume: the runs in {out!r} were made with {was}; resume "
                           f"them with those settings, or choose another --out")
    return mine


def config(args):
    preset = args.preset or ("quick" if args.quick else "default")
    cfg = dict(PRESETS[preset], **COMMON, preset=preset, cache=args.cache)
    for k in OVERRIDES + FLOAT_OVERRIDES:
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    if args.seeds:
        cfg["seeds"] = list(args.seeds)
    if args.no_flow:
        cfg["flow"] = False
    if args.rows:
        cfg["rows"] = [r for r in SEG_ROWS if r in args.rows or r == "baseline"]
    if args.flow_upsample is not None:
        cfg["flownet"] = dict(cfg["flownet"], upsample=args.flow_upsample)
    if args.flow_bf_repeat is not None:
        cfg["flownet"] = dict(cfg["flownet"], bf_repeat=args.flow_bf_repeat)
    if args.flow_ft_loss is not None:
        cfg["flow_ft_loss"] = args.flow_ft_loss
    return cfg


# what a segmentation row may report besides its metrics: the lams' calibration, the
# mean masks of same- and different-region taps, a fine-tuned embedder's mask quality
ROW_EXTRAS = ("calibration", "mask_values", "embedder_masks")


def collect(cfg, results):
    """Per seed: masks, segmentation rows and flow rows, in the layout of results.json."""
    floor = constant_flow(cfg) if cfg["flow"] else None
    out = []
    for seed in cfg["seeds"]:
        p = f"s{seed}/"
        r = {"seed": seed, "masks": results[p + "embedding"]["masks"], "segmentation": {}}
        if cfg["flow"]:
            r["flow_masks"] = results[p + "flow_embedding"]["masks"]
            r["flow"] = {"constant flow": floor}
        for name in cfg["rows"]:
            row = results[p + "seg/" + name]
            r["segmentation"][name] = dict(row["test"], val=row["val"], lams=row["lams"],
                                           **{k: row[k] for k in ROW_EXTRAS if k in row})
        for name in FLOW_ROWS if cfg["flow"] else ():
            row = results[p + "flow/" + name]
            r["flow"][name] = dict(row["test"], val=row["val"])
        out.append(r)
    return out


def figures(out, cfg, results, job_results):
    """Figs. 3, 4, 7 and 8 from the first seed's checkpoints (Fig. 7: every seed)."""
    from segnp.data.flyingshapes import FLYINGSHAPES_CLASSES as names
    from segnp.experiments import embed, load_run, predict_flow, test_arrays
    from segnp.experiments.data import load_split
    from segnp.experiments.figures import (figure_bilateral, figure_embeddings,
                                           figure_flow, figure_trimap)
    p = f"s{cfg['seeds'][0]}/"
    path = lambda name: os.path.join(out, name)  # noqa: E731
    emb, emb_cfg, _ = load_run(job_results[p + "embedding"]["checkpoint"])
    inp = emb_cfg["input"]
    test = load_split("segmentation", None, "test", cfg["test_count"], cfg["size"],
                      cfg["cache"])
    images, labels = test_arrays(test, ("image", "label"), inp)
    figs = [figure_embeddings(path("fig3_embeddings.png"), images[:8], labels[:8],
                              embed(emb, images[:8]), inp["mean"], inp["scale"],
                              class_names=names)]
    if "+9x9 BF" in cfg["rows"]:
        bf, _, _ = load_run(job_results[p + "seg/+9x9 BF"]["checkpoint"])
        figs.append(figure_bilateral(path("fig4_bilateral.png"), bf, images, labels,
                                     inp["mean"], inp["scale"], class_names=names))
    curves = {}
    for name in cfg["rows"]:
        ms = [r["segmentation"][name] for r in results]
        curves[name] = (np.asarray(ms[0]["curve_widths"]),
                        100 * np.asarray([m["curve_miou"] for m in ms]))
    figs.append(figure_trimap(path("fig7_trimap.png"), curves, reference="baseline"))
    if not cfg["flow"]:
        return [os.path.basename(f) for f in figs]
    flows, finp = {}, None
    for name in FLOW_ROWS:
        net, fcfg, _ = load_run(job_results[p + "flow/" + name]["checkpoint"])
        finp = fcfg["input"]
        ftest = load_split("flow", None, "test", cfg["test_count"], cfg["size"],
                           cfg["cache"])
        i1, i2, fl = test_arrays(ftest, ("image1", "image2", "flow"), finp)
        flows[name] = predict_flow(net, i1[:3], i2[:3])
    epes = {k: results[0]["flow"][k]["epe"] for k in flows}
    figs.append(figure_flow(path("fig8_flow.png"), i1[:3], fl[:3], flows, finp["mean"],
                            finp["scale"], epes=epes))
    return [os.path.basename(f) for f in figs]


def main(argv=None):
    p = base_parser(__doc__.split("\n")[0], seed=False)   # each job seeds from --seeds
    p.add_argument("--quick", action="store_true", help="one seed, small data, short runs")
    p.add_argument("--preset", choices=list(PRESETS), help="overrides --quick")
    p.add_argument("--seeds", type=nonnegative_int, nargs="+", help="seeds (default: the preset's)")
    p.add_argument("--out", default="results", help="folder for REPORT.md and figures")
    p.add_argument("--cache", default=None, help="cache folder for generated data")
    p.add_argument("--resume", action="store_true", help="reuse finished runs in --out")
    p.add_argument("--workers", type=positive_int, default=2, help="worker processes (1: all "
                   "runs in this process)")
    p.add_argument("--keep-all", type=fraction, help="mask weight that a same-region tap "
                   "keeps in the all-layers rows (sets their lams)")
    p.add_argument("--keep-all-end", type=fraction, help="sharpen the all-layers rows' "
                   "masks over the fine-tuning, to this keep at its end")
    p.add_argument("--keep-all-fc6", type=fraction, help="FC6's keep in the all-layers rows, "
                   "the end-to-end row's included (default: their own keep)")
    p.add_argument("--keep-e2e", type=fraction, help="the keep of the end-to-end row, "
                   "whose embedder is tuned (default: %g)" % COMMON["keep_e2e"])
    p.add_argument("--keep-fc6", type=fraction, help="the same for the FC6 row")
    p.add_argument("--keep-flow", type=fraction, help="the same for the flow network")
    p.add_argument("--ft-lr", type=positive_float, help="learning rate of every Table 1 "
                   "row's fine-tuning, the control's included (default: %g)" % COMMON["ft_lr"])
    p.add_argument("--e2e-emb-mult", type=nonnegative_float, help="lr multiplier of the "
                   "embedder in the end-to-end row")
    p.add_argument("--e2e-aux-weight", type=nonnegative_float, help="weight of the "
                   "embedding loss added to the end-to-end row's task loss")
    p.add_argument("--rows", nargs="+", choices=list(SEG_ROWS), metavar="ROW",
                   help="Table 1 rows to run (the control always runs); default: the "
                   "preset's")
    p.add_argument("--flow-emb-mult", type=nonnegative_float, help="lr multiplier of the "
                   "motion embedder in the segmentation-aware flow row (0: frozen)")
    p.add_argument("--flow-ft-lr", type=positive_float, help="learning rate of both flow "
                   "rows' fine-tuning (default: %g)" % COMMON["flow_ft_lr"])
    p.add_argument("--flow-ft-loss", choices=FLOW_LOSSES, help="loss of both flow rows' "
                   "fine-tuning: the full-resolution EPE alone ('final') or FlowNet's "
                   f"multi-scale one (default: {COMMON['flow_ft_loss']})")
    p.add_argument("--flow-bf-repeat", type=positive_int, help="passes of the "
                   "segmentation-aware flow row's 9x9 bilateral filter (default: "
                   f"{FLOWNET['bf_repeat']})")
    p.add_argument("--no-flow", action="store_true", help="skip the flow comparison")
    p.add_argument("--flow-upsample", choices=FlowNetS.UPSAMPLE, help="upsampling of the "
                   "segmentation-aware flow row's 1/4-resolution prediction and decoder "
                   "(FlowNetS upsample; the control stays bilinear); default: "
                   f"{FLOWNET['upsample']}")
    for k in OVERRIDES:
        p.add_argument("--" + k.replace("_", "-"), type=positive_int,
                       help="override the preset")
    args = p.parse_args(argv)
    if args.seeds and len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds must be distinct; got {args.seeds}")
    setup(args)
    cfg = config(args)
    if os.path.exists(os.path.join(args.out, "runs")) and not args.resume:
        raise RunError(f"{args.out!r} already holds runs; pass --resume to reuse them or "
                       f"choose another --out")
    settings = check_settings(args.out, cfg, args.resume)
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, SETTINGS), settings)
    t0 = time.perf_counter()
    prepare_data(cfg, progress=not args.no_progress)
    jobs = [j for s in cfg["seeds"] for j in seed_jobs(args.out, cfg, s)
            if ("/seg/" not in j.key or j.key.split("/seg/")[1] in cfg["rows"])
            and (cfg["flow"] or "flow" not in j.key)]
    job_results = run_jobs(jobs, workers=args.workers,
                           log=lambda line: print(f"[{time.perf_counter() - t0:6.0f} s] "
                                                  f"{line}", flush=True))
    results = collect(cfg, job_results)
    figs = figures(args.out, cfg, results, job_results)
    seconds = time.perf_counter() - t0
    command = "python examples/reproduce.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    write_json(os.path.join(args.out, "results.json"),
               {"config": {k: v for k, v in cfg.items() if k != "cache"},
                "seconds": seconds, "results": results})
    lines = report_lines(results, cfg, command.strip(), seconds, figs)
    with atomic_path(os.path.join(args.out, "REPORT.md")) as tmp:
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
    print("\n".join(summary_lines(results)))
    print(f"\nwrote {os.path.join(args.out, 'REPORT.md')} and {len(figs)} figures "
          f"({seconds / 60:.1f} min)")
    return results


if __name__ == "__main__":
    sys.exit(run_script(main, hint="; --resume reuses the finished runs"))
