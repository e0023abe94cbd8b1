"""Loading VGG-16's first seven convolutions into an :class:`EmbeddingNet` (Sec. 4.1).

Two file layouts are read, neither needing a deep-learning framework:

* Keras: ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` (or the file without
  ``_notop``), from the keras-applications releases or saved with
  ``tf.keras.applications.VGG16(weights='imagenet').save_weights(...)``.  Groups
  ``block1_conv1`` ... ``block3_conv3``, kernels (KH, KW, C, F) and biases (F,).
  Keras' VGG expects BGR input with the ImageNet mean subtracted (caffe preprocessing).
* NumPy ``.npz`` of torchvision-style arrays ``features.N.weight`` (F, C, KH, KW) and
  ``features.N.bias``, with N in 0, 2, 5, 7, 10, 12, 14; make it with
  ``np.savez(path, **{k: v.numpy() for k, v in torchvision.models.vgg16(
  weights='IMAGENET1K_V1').state_dict().items() if k.startswith('features.')})``.
  torchvision's VGG expects RGB input normalised by the ImageNet mean and std.

The model's widths must be VGG's (64, 128, 256) for the full file; a file with other
widths loads into a model with those widths (the tests use small fake files).
"""
import os

import h5py
import numpy as np

from ..backends import get_backend

__all__ = ["load_vgg16"]

KERAS_NAMES = ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2",
               "block3_conv1", "block3_conv2", "block3_conv3")
TORCH_INDICES = (0, 2, 5, 7, 10, 12, 14)


def _keras_arrays(path):
    out = []
    with h5py.File(path, "r") as f:
        for name in KERAS_NAMES:
            if name not in f:
                raise ValueError(f"load_vgg16: {path} has no group {name!r}; expected a Keras "
                                 f"VGG-16 weights file (groups {', '.join(KERAS_NAMES)})")
            g = f[name]
            names = [n.decode() if isinstance(n, bytes) else n
                     for n in g.attrs.get("weight_names", [])]
            if names:  # Keras stores the order: kernel then bias
                kernel, bias = (np.asarray(g[n]) for n in names[:2])
            else:
                arrays = {}
                g.visititems(lambda k, v: arrays.__setitem__(k, np.asarray(v))
                             if isinstance(v, h5py.Dataset) else None)
                kernel = next(v for v in arrays.values() if v.ndim == 4)
                bias = next(v for v in arrays.values() if v.ndim == 1)
            out.append((kernel.transpose(3, 2, 0, 1), bias))  # (KH, KW, C, F) -> (F, C, KH, KW)
    return out


def _torch_arrays(path):
    with np.load(path) as z:
        out = []
        for i in TORCH_INDICES:
            w, b = f"features.{i}.weight", f"features.{i}.bias"
            if w not in z or b not in z:
                raise ValueError(f"load_vgg16: {path} lacks {w!r} or {b!r}; expected "
                                 f"torchvision-style VGG-16 'features.N' arrays")
            out.append((z[w], z[b]))
    return out


def load_vgg16(model, path):
    """Copy VGG-16's conv1_1 ... conv3_3 from ``path`` into ``model.vgg_layers()``.

    ``path`` ends in ``.h5`` (Keras layout) or ``.npz`` (torchvision names).  Shapes
    must match the model's; a mismatch raises ValueError naming both.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_vgg16: no such file: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".h5", ".hdf5"):
        arrays = _keras_arrays(path)
    elif ext == ".npz":
        arrays = _torch_arrays(path)
    else:
        raise ValueError(f"load_vgg16: expected a .h5 (Keras) or .npz (torchvision) file; "
                         f"got {path}")
    backend = get_backend()
    layers = model.vgg_layers()
    for k, (layer, (w, b)) in enumerate(zip(layers, arrays)):
        if tuple(w.shape) != layer.weight.shape or tuple(b.shape) != layer.bias.shape:
            raise ValueError(
                f"load_vgg16: layer {KERAS_NAMES[k]} of {path} has weight {tuple(w.shape)} "
                f"and bias {tuple(b.shape)}; the model expects {layer.weight.shape} and "
                f"{layer.bias.shape}")
        layer.weight.data[...] = backend.asarray(w.astype(layer.weight.dtype))
        layer.bias.data[...] = backend.asarray(b.astype(layer.bias.dtype))
    return model
