"""Datasets for training and evaluation: the HDF5 format (docs/datasets.md), lazy
datasets over it, a data loader with augmentation, and the FlyingShapes generator."""
from .hdf5 import FORMAT_VERSION, IGNORE_LABEL, SegmentationWriter, FlowWriter
from .datasets import HDF5SegmentationDataset, HDF5FlowDataset
from .transforms import (Compose, RandomScale, RandomCrop, RandomHorizontalFlip,
                         SubtractMean, resize_bilinear, resize_nearest)
from .loader import DataLoader, collate
from .flyingshapes import (FLYINGSHAPES_CLASSES, SyntheticPaths, ensure_synthetic,
                           generate, render_scene)

__all__ = ["FORMAT_VERSION", "IGNORE_LABEL", "SegmentationWriter", "FlowWriter",
           "HDF5SegmentationDataset", "HDF5FlowDataset", "Compose", "RandomScale",
           "RandomCrop", "RandomHorizontalFlip", "SubtractMean", "resize_bilinear",
           "resize_nearest", "DataLoader", "collate", "FLYINGSHAPES_CLASSES",
           "SyntheticPaths", "ensure_synthetic", "generate", "render_scene"]
