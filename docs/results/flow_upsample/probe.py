"""Flow-only probe of issue 22 part 4: the reproduction's flow row (default preset,
seed 0), fine-tuned from the saved baseline checkpoint and motion embedder of one run,
with settings changed; validation EPE (test printed for the record, not for choosing).

    python probe.py CKPT_DIR CACHE OUT [KEY=VALUE ...]

CKPT_DIR holds flow_embedding.npz and flow_pretrain.npz (a run's
``runs/seed0/flow_embedding`` and ``flow_pretrain`` checkpoints); KEY is a key of the
reproduction's config (``keep_flow=0.95``, ``flow_emb_mult=0.1``) or
``flownet.KEY`` (``flownet.up_lam_init=2``); ``row=baseline`` runs the control."""
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "examples"))
import reproduce  # noqa: E402
from segnp.experiments.protocol import job_flow_row  # noqa: E402

ckpt, cache, out = sys.argv[1:4]
cfg = dict(reproduce.PRESETS["default"], **reproduce.COMMON, preset="default", cache=cache)
cfg["flownet"] = dict(cfg["flownet"])
row = "segaware"
for item in sys.argv[4:]:
    key, value = item.split("=", 1)
    if key == "row":
        row = value
    elif key.startswith("flownet."):
        cfg["flownet"][key[8:]] = json.loads(value) if value[0] in "0123456789-[" else value
    else:
        cfg[key] = json.loads(value)
deps = {"embedding": {"checkpoint": os.path.join(ckpt, "flow_embedding.npz")},
        "baseline": {"checkpoint": os.path.join(ckpt, "flow_pretrain.npz")}}
t = time.time()
res = job_flow_row(out, cfg, 0, row, deps)
res["seconds"] = time.time() - t
# CPU seconds: the wall time depends on what else runs on the machine
res["cpu_seconds"] = resource.getrusage(resource.RUSAGE_SELF).ru_utime
res["settings"] = sys.argv[4:]
print(json.dumps({k: v for k, v in res.items() if k != "calibration"}))
