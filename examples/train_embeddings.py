"""Pre-train the embedding network with the embedding loss (Sec. 3.1, 4.1).

    python examples/train_embeddings.py                      # FlyingShapes, generated
    python examples/train_embeddings.py --train-data voc_train.h5 --test-data voc_val.h5
    python examples/train_embeddings.py --resume             # continue an interrupted run

Writes --out/checkpoint.npz (every epoch, atomically), log.json and log.csv (per epoch:
the training loss and the final-embedding loss on the test data) and prints the mask
quality (ROC AUC of embedding vs colour distance, Fig. 3) on the test data.
"""
import os
import sys

try:
    import segnp  # noqa: F401
except ImportError:  # a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segnp.experiments.cli import (add_data_args, add_train_args, base_parser, load_data,
                                   record_classes, run_folder, run_script, setup,
                                   write_json)
from segnp.command import positive_int
from segnp.experiments.paper import add_arch_args


def main(argv=None):
    p = base_parser(__doc__.split("\n")[0])
    add_data_args(p)
    add_train_args(p, "runs/embeddings", epochs=16, lr=5e-3)
    p.add_argument("--embed-dim", type=positive_int, default=16,
                   help="D of the final embedding")
    p.add_argument("--widths", type=positive_int, nargs=3, default=[8, 16, 32],
                   help="channels of the three VGG blocks")
    add_arch_args(p, "embedding", argv)
    args = p.parse_args(argv)
    setup(args)
    from segnp.experiments import (INPUT_SCALE, embed, mask_quality, run_embedding,
                                   test_arrays)
    with run_folder(args, "embedding"):
        train, test = load_data(args, "segmentation")
        record_classes(args, train)
        model, hist = run_embedding(
            args.out, train, test, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, seed=args.seed, model={"embed_dim": args.embed_dim,
                                               "widths": list(args.widths),
                                               "arch": args.arch},
            progress=not args.no_progress, resume=args.resume, vgg16=args.vgg16)
        images, = test_arrays(test, ("image",), {"mean": train.mean,
                                                 "scale": INPUT_SCALE})
        q = mask_quality(embed(model, images), images, test.stack("label"))
        write_json(os.path.join(args.out, "mask_quality.json"), q)
    last = hist[-1] if hist else {}
    print(f"epoch {last.get('epoch')}: train loss {last.get('loss', float('nan')):.4f}, "
          f"test embedding loss {last.get('embedding_loss', float('nan')):.4f}")
    print(f"mask ROC AUC at distance {q['distance']}: embeddings {q['embedding_auc']:.3f}, "
          f"colour {q['colour_auc']:.3f}")
    return hist


if __name__ == "__main__":
    sys.exit(run_script(main, hint="; --resume continues from the last finished epoch"))
