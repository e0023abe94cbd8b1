"""Models of the paper: the embedding network (Sec. 4.1, Fig. 5), a DeepLab-LargeFOV-style
segmentation network with the segmentation-aware switches of Table 1, and a small
FlowNetSimple with the segmentation-aware head of Sec. 5.2; and the paper's own networks
at full scale, built like torchvision's models: ``deeplab_largefov`` (VGG-16, Sec. 5.1),
``flownet_simple`` (Sec. 5.2) and ``embedding_vgg16``."""
from .embedding import EmbeddingNet, embedding_vgg16
from .segnet import SegNet
from .flownet import FlowNetS
from .deeplab import DeepLabLargeFOV, deeplab_largefov
from .flownet_simple import FlowNetSimple, flownet_simple
from .vgg import load_vgg16

__all__ = ["EmbeddingNet", "SegNet", "FlowNetS", "DeepLabLargeFOV", "FlowNetSimple",
           "load_vgg16", "embedding_vgg16", "deeplab_largefov", "flownet_simple"]
