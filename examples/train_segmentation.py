"""Train the segmentation network, baseline or a segmentation-aware variant (Table 1).

    python examples/train_embeddings.py --out runs/embeddings
    python examples/train_segmentation.py --out runs/baseline
    python examples/train_segmentation.py --variant all --embedder runs/embeddings/checkpoint.npz \
        --init runs/baseline/checkpoint.npz --out runs/all

Variants: baseline, bf (+9x9 BF), bf4 (+9x9 BF x4), fc6, all, all-bf, all-crf.  Every
variant but the baseline needs --embedder (a train_embeddings.py checkpoint), which is
fine-tuned end to end.  --init copies weights where names match (a trained baseline:
its convolutions become segmentation-aware ones at lam = 0).  Logs mIoU, pixel accuracy
and trimap mIoU at half-widths 3 and 10 on the test data after every epoch.
"""
import os
import sys

try:
    import segnp  # noqa: F401
except ImportError:  # a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segnp.experiments.cli import (add_data_args, add_finetune_args, add_train_args,
                                   base_parser, load_data, load_finetune, record_classes,
                                   run_folder, run_script, setup)
from segnp.experiments.paper import add_arch_args

VARIANTS = ("baseline", "bf", "bf4", "fc6", "all", "all-bf", "all-crf")


def main(argv=None):
    p = base_parser(__doc__.split("\n")[0])
    add_data_args(p)
    add_train_args(p, "runs/segmentation", epochs=30, lr=3e-3, batch_size=4)
    p.add_argument("--variant", choices=VARIANTS, default="baseline",
                   help="the row of Table 1 (see above)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                   help="sgd: momentum 0.9 and weight decay 5e-4, as DeepLab")
    add_finetune_args(p)
    add_arch_args(p, "segmentation", argv)
    args = p.parse_args(argv)
    if args.variant != "baseline" and not args.embedder:
        p.error(f"--variant {args.variant} needs --embedder (run train_embeddings.py first)")
    setup(args)
    embedder, init, model = load_finetune(args, "segmentation")
    model["arch"] = args.arch
    from segnp.experiments import SEG_VARIANTS, run_segmentation
    name = dict(zip(VARIANTS, SEG_VARIANTS))[args.variant]
    with run_folder(args, "segmentation"):
        train, test = load_data(args, "segmentation")
        record_classes(args, train)
        _, hist = run_segmentation(
            args.out, train, test, variant=SEG_VARIANTS[name], epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, seed=args.seed, embedder=embedder,
            init=init, model=model, lam_mult=args.lam_mult,
            embedder_mult=args.embedder_mult,
            progress=not args.no_progress, resume=args.resume, optimizer=args.optimizer,
            vgg16=args.vgg16)
    last = hist[-1] if hist else {}
    print(f"{name}, epoch {last.get('epoch')}: train loss {last.get('loss', float('nan')):.4f}"
          f", mIoU {100 * last.get('miou', float('nan')):.2f}, trimap-3 mIoU "
          f"{100 * last.get('trimap3_miou', float('nan')):.2f}")
    return hist


if __name__ == "__main__":
    sys.exit(run_script(main, hint="; --resume continues from the last finished epoch"))
