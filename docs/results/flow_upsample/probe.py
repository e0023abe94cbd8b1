"""Flow-only probe of issue 22 part 4: the reproduction's flow row (default preset,
seed 0), fine-tuned from the same baseline checkpoint and motion embedder, with each
upsampling variant; validation EPE (test printed for the record, not for choosing)."""
import json, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "examples"))
import reproduce
from segnp.experiments.protocol import job_flow_row
variant, out = sys.argv[1], sys.argv[2]
cfg = dict(reproduce.PRESETS["default"], **reproduce.COMMON, preset="default",
           cache="/tmp/probe/cache")
cfg["flownet"] = dict(cfg["flownet"])
name = "baseline" if variant == "control" else "segaware"
if variant not in ("control", "bilinear"):
    cfg["flownet"]["upsample"] = variant.split(":")[0]
    if ":" in variant:
        cfg["flownet"]["up_lam_init"] = float(variant.split(":")[1])
deps = {"embedding": {"checkpoint": "/tmp/probe/ckpt/flow_embedding.npz"},
        "baseline": {"checkpoint": "/tmp/probe/ckpt/flow_pretrain.npz"}}
t = time.time()
res = job_flow_row(out, cfg, 0, name, deps)
res["seconds"] = time.time() - t
res["variant"] = variant
print(json.dumps({k: v for k, v in res.items() if k != "calibration"}))
