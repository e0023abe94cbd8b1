"""The Window a test hands to a segmentation-aware kernel, built as the public functions
build it (the kernels take the Window and nothing else about the window)."""
from segnp.window import Window


def win(a, ksize, stride=1, padding=None, dilation=1, fn="kernel"):
    """The :class:`segnp.window.Window` of a (N, ., H, W) input ``a``."""
    return Window.segaware(fn, a.shape[-2], a.shape[-1], ksize, stride, padding, dilation)
