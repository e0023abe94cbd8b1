"""Models of the paper: the embedding network (Sec. 4.1, Fig. 5), a DeepLab-LargeFOV-style
segmentation network with the segmentation-aware switches of Table 1, and a small
FlowNetSimple with the segmentation-aware head of Sec. 5.2."""
from .embedding import EmbeddingNet
from .segnet import SegNet
from .flownet import FlowNetS
from .vgg import load_vgg16

__all__ = ["EmbeddingNet", "SegNet", "FlowNetS", "load_vgg16"]
