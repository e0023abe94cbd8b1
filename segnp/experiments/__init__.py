"""The paper's experiments on generated or user data: datasets for the examples, the
three tasks (embedding learning, segmentation, optical flow) as training recipes, a
trainer with exact resume, mask-quality analysis and the paper's figures
(``segnp.experiments.figures``, drawn with matplotlib)."""
from .data import (INPUT_SCALE, InMemory, default_cache, load_split, make_loader, preprocess,
                   synthetic_split)
from .masks import mask_quality, pair_distances, roc_auc
from .tasks import (TASKS, build_model, downsample_flow, downsample_labels, embed,
                    embedding_step, evaluate_embedding, evaluate_flow, evaluate_segmentation,
                    flow_step, load_run, predict_flow, segment, segmentation_step,
                    transfer_weights)
from .trainer import CHECKPOINT_NAME, Trainer, finished, lr_mult_groups, write_logs
from .runs import (EMBEDDING_DEFAULTS, FLOWNET_DEFAULTS, SEG_VARIANTS, SEGNET_DEFAULTS,
                   load_state, run_embedding, run_flow, run_segmentation, test_arrays)

__all__ = ["INPUT_SCALE", "InMemory", "default_cache", "load_split", "make_loader",
           "preprocess", "synthetic_split", "mask_quality", "pair_distances", "roc_auc",
           "TASKS", "build_model", "downsample_flow", "downsample_labels", "embed",
           "embedding_step", "evaluate_embedding", "evaluate_flow", "evaluate_segmentation",
           "flow_step", "load_run", "predict_flow", "segment", "segmentation_step",
           "transfer_weights", "CHECKPOINT_NAME", "Trainer", "finished", "lr_mult_groups",
           "write_logs", "EMBEDDING_DEFAULTS", "FLOWNET_DEFAULTS", "SEG_VARIANTS",
           "SEGNET_DEFAULTS", "load_state", "run_embedding", "run_flow", "run_segmentation",
           "test_arrays"]
