"""The embeddings of a frozen embedder, computed once per distinct training image.

A Table 1 row with a frozen embedder (every row but the end-to-end one) sees each of
its training scenes once per epoch, as it is or flipped, and the embedder maps the same
image to the same embeddings each time: 6 epochs compute them 6 times where the two
versions would do.  :class:`EmbeddingCache` remembers them by the image's bytes.

Exact, not approximate, where the arrays are NumPy's (the ``numpy`` and
``cuda-emulator`` backends): an image's embeddings do not depend on which batch it came
in.  The convolutions multiply one image's unfolded block at a time
(``backends/numpy/conv.py``; the emulator's launcher multiplies image by image too), and
the one product that spans the batch, the bilinear upsampling's ``(N*C*H, W) @ A_w^T``
(``functions/resize.py``), sums each row's entries in the same order whatever the number
of rows.  The cached array is then bitwise the one the embedder gives inside any batch
(tests/test_embedding_cache.py), and a training run with the cache takes the very same
steps as one without.  CuPy's products choose their cuBLAS kernel by the sizes, batch
included, so there an image's embeddings may round differently in another batch:
:func:`~segnp.experiments.run_segmentation` uses the cache only on NumPy arrays.
"""
import hashlib

import numpy as np

from ..autograd import Tensor
from ..backends import get_backend
from ..grad_mode import no_grad

__all__ = ["EmbeddingCache"]


class EmbeddingCache:
    """``cache(images)``: ``embedder(images)``'s final embeddings (N, D, H, W), on the
    backend's device, each image's computed once and then looked up by its bytes
    (images: a NumPy array (N, C, H, W), as the data loader gives them).

    Args:
        embedder: a module mapping images (N, C, H, W) to ``(e, side_outputs)``, whose
            parameters do not change while the cache is used (a frozen embedder), and
            whose output for one image does not depend on the others in its batch (no
            batch statistics), as with every embedder of :mod:`segnp.models`.
        most_bytes: the most the stored embeddings may take; past it, new images are
            embedded but not stored.

    ``misses`` counts the images embedded, ``hits`` the others.
    """

    def __init__(self, embedder, most_bytes=2 << 30):
        self.embedder = embedder
        self.most_bytes = int(most_bytes)
        self.stored_bytes = 0
        self.hits = self.misses = 0
        self._store = {}

    @staticmethod
    def _key(image):
        # a 128-bit digest of the bytes, with the shape and dtype: equal keys mean
        # equal images (a collision is as likely as 2^-64 after 2^32 images)
        h = hashlib.blake2b(image.tobytes(), digest_size=16)  # C order, whatever the strides
        return h.digest(), image.shape, image.dtype.str

    def __call__(self, images):
        backend = get_backend()
        images = np.asarray(images)
        keys = [self._key(im) for im in images]
        first = {}  # each new key's first image in the batch: a repeat is embedded once
        for i, k in enumerate(keys):
            if k not in self._store:
                first.setdefault(k, i)
        todo = list(first.values())
        self.hits += len(images) - len(todo)
        self.misses += len(todo)
        new = {}
        if todo:
            with no_grad():
                e, _ = self.embedder(Tensor(backend.asarray(images[todo])))
            for i, ei in zip(todo, e.data):
                new[keys[i]] = ei
        out = backend.xp.stack([new[k] if k in new else self._store[k] for k in keys])
        for k, ei in new.items():
            if self.stored_bytes + ei.nbytes <= self.most_bytes:
                self._store[k] = ei.copy()  # not a view that keeps the batch alive
                self.stored_bytes += ei.nbytes
        return out
