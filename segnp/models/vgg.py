"""Loading VGG-16's convolutions: the first seven into an :class:`EmbeddingNet` (Sec. 4.1:
"the first seven layers share the design of the earliest convolution layers in VGG-16,
and are initialized with that network's weights"), all thirteen into DeepLab-LargeFOV
(Sec. 5.1, :func:`~segnp.models.deeplab_largefov`).

Two file layouts are read, neither needing a deep-learning framework:

* **Keras** (HDF5, read with h5py): ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``
  (58 MB; the file without ``_notop`` also works), from the keras-applications
  releases, e.g. ``https://storage.googleapis.com/tensorflow/keras-applications/vgg16/
  vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, or written with
  ``tf.keras.applications.VGG16(weights='imagenet', include_top=False)
  .save_weights('vgg16.h5')``.  Groups ``block1_conv1`` ... ``block5_conv3`` (at the
  top, or under ``model_weights/`` or ``layers/``), each with a kernel (KH, KW, C, F)
  and a bias (F,).  These are Caffe's weights: they expect **BGR** input in 0..255
  with the ImageNet mean (103.939, 116.779, 123.68) subtracted.
* **torchvision** (``.npz``): arrays ``features.N.weight`` (F, C, KH, KW) and
  ``features.N.bias`` with N in 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28 (the
  odd N are ReLUs, 4, 9, 16, 23 and 30 pools), made with::

      import numpy as np, torchvision
      sd = torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()
      np.savez("vgg16_features.npz", **{k: v.numpy() for k, v in sd.items()
                                        if k.startswith("features.")})

  They expect **RGB** input scaled to 0..1, minus the mean (0.485, 0.456, 0.406),
  divided by the std (0.229, 0.224, 0.225).

Both frameworks compute cross-correlation, as :func:`segnp.functions.conv2d` does, so
a Keras kernel is only transposed to (F, C, KH, KW), never flipped.  ``rgb`` names the
channel order of the model's input; conv1_1's input channels are reversed when the file
was trained on the other order.  The model's widths must be VGG's (64, 128, 256) for
the real files; a file with other widths loads into a model with those widths (the
tests use small fake files).
"""
import os

import h5py
import numpy as np

from ..backends import get_backend

__all__ = ["load_vgg16"]

# VGG-16's thirteen convolutions in order; a model's vgg_layers() takes the first few.
KERAS_NAMES = ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2",
               "block3_conv1", "block3_conv2", "block3_conv3",
               "block4_conv1", "block4_conv2", "block4_conv3",
               "block5_conv1", "block5_conv2", "block5_conv3")
TORCH_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def _keras_group(f, name):
    for root in (f, f.get("model_weights"), f.get("layers")):
        if root is not None and name in root:
            return root[name]
    raise ValueError(f"load_vgg16: {f.filename} has no group {name!r}; expected a Keras "
                     f"VGG-16 weights file (groups {', '.join(KERAS_NAMES)})")


def _keras_arrays(path, count):
    out = []
    with h5py.File(path, "r") as f:
        for name in KERAS_NAMES[:count]:
            arrays = []
            _keras_group(f, name).visititems(
                lambda k, v: arrays.append(np.asarray(v)) if isinstance(v, h5py.Dataset)
                else None)
            kernels = [a for a in arrays if a.ndim == 4]
            biases = [a for a in arrays if a.ndim == 1]
            if len(kernels) != 1 or len(biases) != 1:
                raise ValueError(f"load_vgg16: group {name!r} of {path} must hold one 4-d "
                                 f"kernel and one bias; got shapes "
                                 f"{[a.shape for a in arrays]}")
            # (KH, KW, C, F) -> (F, C, KH, KW)
            out.append((kernels[0].transpose(3, 2, 0, 1), biases[0]))
    return out


def _torch_arrays(path, count):
    with np.load(path) as z:
        out = []
        for i in TORCH_INDICES[:count]:
            w, b = f"features.{i}.weight", f"features.{i}.bias"
            if w not in z or b not in z:
                raise ValueError(f"load_vgg16: {path} lacks {w!r} or {b!r}; expected "
                                 f"torchvision-style VGG-16 'features.N' arrays")
            out.append((z[w], z[b]))
    return out


def load_vgg16(path, model=None, rgb=True, count=None):
    """VGG-16's first ``count`` convolutions from ``path``, a Keras ``.h5`` or torchvision
    ``.npz``: conv1_1 ... conv3_3 for an :class:`EmbeddingNet` (7), conv1_1 ...
    conv5_3 for DeepLab-LargeFOV (13).

    Returns the ``count`` ``(weight (F, C, 3, 3), bias (F,))`` NumPy pairs, in order,
    with conv1_1's input channels in RGB order if ``rgb`` (else BGR).  With ``model``
    (anything with ``vgg_layers()``, a list of Conv2d-like layers in VGG's order) the
    pairs are copied into those layers, and the model is returned; ``count`` is then
    ``len(model.vgg_layers())``, and 7 without a model.  Shapes must match the model's;
    a mismatch raises ValueError naming both, and leaves the model unchanged.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_vgg16: no such file: {path}")
    layers = None if model is None else model.vgg_layers()
    if count is None:
        count = 7 if layers is None else len(layers)
    if count not in range(1, len(KERAS_NAMES) + 1) or (
            layers is not None and count != len(layers)):
        raise ValueError(f"load_vgg16: count must be 1 ... {len(KERAS_NAMES)}, and the "
                         f"number of the model's vgg_layers() when a model is given; got "
                         f"{count!r} for {'no model' if layers is None else len(layers)}")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".h5", ".hdf5"):
        arrays, file_rgb = _keras_arrays(path, count), False
    elif ext == ".npz":
        arrays, file_rgb = _torch_arrays(path, count), True
    else:
        raise ValueError(f"load_vgg16: expected a .h5 (Keras) or .npz (torchvision) file; "
                         f"got {path}")
    if bool(rgb) != file_rgb:
        w, b = arrays[0]
        arrays[0] = (w[:, ::-1], b)
    arrays = [(np.ascontiguousarray(w), np.ascontiguousarray(b)) for w, b in arrays]
    if model is None:
        return arrays
    backend = get_backend()
    for k, (layer, (w, b)) in enumerate(zip(layers, arrays)):
        if tuple(w.shape) != layer.weight.shape or layer.bias is None \
                or tuple(b.shape) != layer.bias.shape:
            want_b = None if layer.bias is None else layer.bias.shape
            raise ValueError(
                f"load_vgg16: layer {KERAS_NAMES[k]} of {path} has weight {tuple(w.shape)} "
                f"and bias {tuple(b.shape)}; the model expects {layer.weight.shape} and "
                f"{want_b}")
    for layer, (w, b) in zip(layers, arrays):
        if getattr(layer, "normalize", False):
            # a SegAwareConv2d dividing by its k*k valid taps (Eq. 7): at lam = 0 it then
            # computes VGG's convolution away from the borders
            w = w * (w.shape[2] * w.shape[3])
        layer.weight.data[...] = backend.asarray(w.astype(layer.weight.dtype))
        layer.bias.data[...] = backend.asarray(b.astype(layer.bias.dtype))
    return model
