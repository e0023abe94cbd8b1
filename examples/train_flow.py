"""Train the small FlowNetSimple, baseline or segmentation-aware (Sec. 5.2, Table 3).

    python examples/train_flow.py --out runs/flow
    python examples/train_flow.py --segaware --embedder runs/embeddings/checkpoint.npz \
        --init runs/flow/checkpoint.npz --out runs/flow-segaware

--segaware makes the final prediction layer segmentation-aware and adds a 9x9
segmentation-aware bilateral filter, both with the embeddings of frame 1 (the
embedding network of --embedder, fine-tuned).  Logs EPE and AAE on the test data after
every epoch.
"""
import os
import sys

try:
    import segnp  # noqa: F401
except ImportError:  # a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segnp.experiments.cli import (add_data_args, add_finetune_args, add_train_args,
                                   base_parser, load_data, load_finetune, run_folder,
                                   run_script, setup)
from segnp.experiments.paper import add_arch_args


def main(argv=None):
    p = base_parser(__doc__.split("\n")[0])
    add_data_args(p)
    add_train_args(p, "runs/flow", epochs=20, lr=2e-3)
    p.add_argument("--segaware", action="store_true", help="segmentation-aware prediction "
                   "layer and bilateral filter (needs --embedder)")
    p.add_argument("--upsample", choices=("bilinear", "segaware", "segaware+decoder"),
                   default="bilinear", help="with --segaware: the final (and the decoder's) "
                   "flow upsampling, bilinear or segmentation-aware (issue 22)")
    add_finetune_args(p)
    add_arch_args(p, "flow", argv)
    args = p.parse_args(argv)
    if args.segaware and not args.embedder:
        p.error("--segaware needs --embedder (run train_embeddings.py first)")
    if args.upsample != "bilinear" and not args.segaware:
        p.error("--upsample needs --segaware (the embeddings guide it)")
    setup(args)
    embedder, init, model = load_finetune(args, "flow")
    model["arch"] = args.arch
    if args.upsample != "bilinear":
        model["upsample"] = args.upsample
    from segnp.experiments import run_flow
    with run_folder(args, "flow"):
        train, test = load_data(args, "flow")
        _, hist = run_flow(args.out, train, test, segaware=args.segaware,
                           epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                           seed=args.seed, embedder=embedder, init=init,
                           lam_mult=args.lam_mult, model=model,
                           embedder_mult=args.embedder_mult,
                           progress=not args.no_progress, resume=args.resume)
    last = hist[-1] if hist else {}
    print(f"epoch {last.get('epoch')}: train loss {last.get('loss', float('nan')):.4f}, "
          f"EPE {last.get('epe', float('nan')):.3f}, AAE {last.get('aae', float('nan')):.2f}")
    return hist


if __name__ == "__main__":
    sys.exit(run_script(main, hint="; --resume continues from the last finished epoch"))
