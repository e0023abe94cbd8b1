"""The tables of ``reproduce.py``: Markdown lines from its per-seed results.

Every Δ is paired: a row's metric minus the control's ("baseline" row) of the same
seed, so that what the seeds share (the trained baseline, the data order) cancels.
Tables give the mean ± sample standard deviation over seeds, and how many seeds had
a positive Δ.
"""
import numpy as np

__all__ = ["stat", "report_lines", "summary_lines"]


def stat(values, scale=1.0, digits=2):
    """'mean ± std' over seeds (the value alone for one seed)."""
    v = np.asarray(values, float) * scale
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _positive(d):
    return f"{int(np.sum(np.asarray(d) > 0))}/{len(d)}"


def _test(r, name):
    return r["segmentation"][name]


def _val(r, name):
    return r["segmentation"][name]["val"]


def _paired(results, row, base, pick=_test):
    """Per seed, (Δ mIoU, Δ trimap-3 mIoU) of ``row`` minus ``base`` of the same seed."""
    d = [pick(r, row)["miou"] - pick(r, base)["miou"] for r in results]
    d3 = [pick(r, row)["trimap3_miou"] - pick(r, base)["trimap3_miou"] for r in results]
    return d, d3


CEILING = "ground-truth masks"


def _seg_table(results, split):
    """Table 1 on ``split``; with the ground-truth row, each row's share of its
    ceiling: Δ row / Δ ground-truth masks, per seed."""
    rows = list(results[0]["segmentation"])
    pick = _test if split == "test" else _val
    ceiling = _paired(results, CEILING, "baseline", pick)[0] if CEILING in rows else None
    lines = ["| method | mIoU | trimap-3 mIoU | Δ mIoU | Δ trimap-3 | Δ > 0 |"
             + (" share of the ground-truth ceiling |" if ceiling else ""),
             "|---|---|---|---|---|---|" + ("---|" if ceiling else "")]
    for name in rows:
        ms = [pick(r, name) for r in results]
        d, d3 = _paired(results, name, "baseline", pick)
        line = (f"| {name} | {stat([m['miou'] for m in ms], 100)} | "
                f"{stat([m['trimap3_miou'] for m in ms], 100)} | {stat(d, 100)} | "
                f"{stat(d3, 100)} | {'—' if name == 'baseline' else _positive(d)} |")
        if ceiling:
            with np.errstate(divide="ignore", invalid="ignore"):   # a ceiling of 0
                share = np.divide(d, ceiling)
            line += " — |" if name == "baseline" else f" {stat(share, 100, 0)} % |"
        lines.append(line)
    return lines


def _mask_table(results):
    """Each row with segmentation-aware layers: the mean mask of same- and
    different-region taps on test (the mean over its layers)."""
    seg = results[0]["segmentation"]
    rows = [n for n in seg if "mask_values" in seg[n]]
    if not rows:
        return []
    lines = ["", "### (b3) What the masks keep: mean mask of the taps of the "
             "segmentation-aware layers (mean over layers), test", "",
             "| method | same region | different region | different / same |",
             "|---|---|---|---|"]
    for name in rows:
        mv = [_test(r, name)["mask_values"] for r in results]
        lines.append(f"| {name} | {stat([m['same'] for m in mv], 1, 3)} | "
                     f"{stat([m['diff'] for m in mv], 1, 3)} | "
                     f"{stat([m['diff'] / m['same'] for m in mv], 1, 3)} |")
    return lines


# Fig. 7's question: does a filter help more near boundaries?  Each filter row against
# the row it is added to, so that the CRF is judged by what it adds to "all segaware".
FILTER_PAIRS = (("+9x9 BF", "baseline"), ("+9x9 BF x4", "baseline"),
                ("all + BF", "all segaware"), ("all + CRF", "all segaware"))


def _filter_table(results):
    seg = results[0]["segmentation"]
    lines = ["| filter row | added to | Δ mIoU | Δ trimap-3 | trimap-3 Δ > mIoU Δ |",
             "|---|---|---|---|---|"]
    for row, base in FILTER_PAIRS:
        if row not in seg or base not in seg:
            continue
        d, d3 = _paired(results, row, base)
        lines.append(f"| {row} | {base} | {stat(d, 100)} | {stat(d3, 100)} | "
                     f"{_positive(np.subtract(d3, d))} |")
    return lines


END_TO_END = "all segaware, end to end"
# table (a)'s embedders: (label, its mask quality in a seed's results or None)
_EMBEDDERS = (
    ("semantic (class labels)", lambda r: r.get("masks")),
    (f"semantic, fine-tuned in \"{END_TO_END}\"",
     lambda r: r["segmentation"].get(END_TO_END, {}).get("embedder_masks")),
    # the flow row then tunes its copy of this embedder (flow_emb_mult)
    ("motion (instance labels), before the flow row tunes it", lambda r: r.get("flow_masks")))


def summary_lines(results):
    """The three tables (test split)."""
    n = len(results)
    seeds = ", ".join(str(r["seed"]) for r in results)
    lines = [f"Seeds: {seeds} ({'mean ± std over seeds' if n > 1 else 'one seed'}); "
             f"Δ: paired with the same seed's fine-tuned control.", "",
             "### (a) Mask quality: ROC AUC of same-region vs different-region pixel "
             f"pairs at distance {results[0]['masks']['distance']} (test)", "",
             "| embedding | learned (L1) | colour (RGB, L2) | learned − colour | median "
             "distance same / different region |", "|---|---|---|---|---|"]
    for label, get in _EMBEDDERS:
        if get(results[0]) is None:
            continue
        ms = [get(r) for r in results]
        lines.append(f"| {label} | {stat([m['embedding_auc'] for m in ms], 1, 3)} | "
                     f"{stat([m['colour_auc'] for m in ms], 1, 3)} | "
                     f"{stat([m['embedding_auc'] - m['colour_auc'] for m in ms], 1, 3)} | "
                     f"{stat([m['same_median'] for m in ms])} / "
                     f"{stat([m['diff_median'] for m in ms])} |")
    lines += ["", "### (b) Table 1 analogue: semantic segmentation, test (%)", ""]
    lines += _seg_table(results, "test") + _mask_table(results)
    filters = _filter_table(results)
    if len(filters) > 3:   # two filter rows or more (one would repeat table (b))
        lines += ["", "### (b2) What each filter adds to the row it is added to, test (%)",
                  ""] + filters
    if "flow" not in results[0]:
        return lines
    lines += ["", "### (c) Table 3 analogue: optical flow, test", "",
              "| method | EPE (px) | AAE (deg) | Δ EPE vs baseline | Δ EPE (%) | Δ < 0 | "
              "EPE / constant flow |",
              "|---|---|---|---|---|---|---|"]
    for name in ("constant flow", "baseline", "segaware"):
        rows = [r["flow"][name] for r in results]
        d = [r["flow"][name]["epe"] - r["flow"]["baseline"]["epe"] for r in results]
        ratio = [r["flow"][name]["epe"] / r["flow"]["constant flow"]["epe"]
                 for r in results]
        rel = [x / r["flow"]["baseline"]["epe"] for x, r in zip(d, results)]
        seg = name == "segaware"
        lines.append(f"| {name} | {stat([x['epe'] for x in rows], 1, 3)} | "
                     f"{stat([x['aae'] for x in rows], 1, 2)} | "
                     f"{stat(d, 1, 3) if seg else '—'} | {stat(rel, 100, 1) if seg else '—'} | "
                     f"{_positive(np.negative(d)) if seg else '—'} | {stat(ratio, 1, 3)} |")
    return lines


def report_lines(results, cfg, command, seconds, figures):
    """REPORT.md: the command, settings, the tables on test and on validation, each
    seed's rows, the lams and the figures."""
    lines = ["# segnp: the paper's comparisons on FlyingShapes", "",
             f"Command: `{command}`  ", f"Wall time: {seconds / 60:.1f} min", "",
             "Settings: " + ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "cache"),
             ""] + summary_lines(results)
    lines += ["", "### Validation split (where choices are made), (%)", ""]
    lines += _seg_table(results, "val")
    rows = list(results[0]["segmentation"])
    flow = "flow" in results[0]
    lines += ["", "### Each seed: test mIoU / trimap-3 mIoU (%), AUC, EPE", "",
              "| seed | " + " | ".join(rows) + " | AUC learned / colour |"
              + (" EPE const / base / segaware |" if flow else ""),
              "|---" * (len(rows) + 2 + flow) + "|"]
    for r in results:
        seg = r["segmentation"]
        line = (f"| {r['seed']} | " + " | ".join(
            f"{100 * seg[n]['miou']:.2f} / {100 * seg[n]['trimap3_miou']:.2f}"
            for n in rows) + f" | {r['masks']['embedding_auc']:.3f} / "
            f"{r['masks']['colour_auc']:.3f} |")
        if flow:
            f = r["flow"]
            line += (f" {f['constant flow']['epe']:.3f} / {f['baseline']['epe']:.3f} / "
                     f"{f['segaware']['epe']:.3f} |")
        lines.append(line)
    first = results[0]["segmentation"]
    lines += ["", f"lams after fine-tuning (seed {results[0]['seed']}):", ""]
    for name, m in first.items():
        if m["lams"]:
            lines.append(f"- {name}: " + ", ".join(f"{k} {v:.3f}"
                                                   for k, v in m["lams"].items()))
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    return lines
