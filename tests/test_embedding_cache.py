"""EmbeddingCache: a frozen embedder's embeddings, computed once per distinct image and
bitwise those the embedder gives inside any batch."""
import numpy as np
import pytest

from segnp.autograd import Tensor
from segnp.experiments.embedding_cache import EmbeddingCache
from segnp.models import EmbeddingNet


@pytest.fixture(scope="module")
def net():
    import segnp
    segnp.manual_seed(0)
    net = EmbeddingNet(widths=(4, 6, 8), embed_dim=4, side_dim=2)
    for p in net.parameters():
        p.requires_grad = False
    return net


def _images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 20, 24)).astype(np.float32)


@pytest.fixture(params=["numpy", "numpy, 2 threads", "cuda-emulator"])
def exact_backend(request):
    """The backends on which run_segmentation uses the cache (NumPy arrays), the NumPy
    kernels also with their pieces spread over two threads."""
    from segnp.backends import using_backend
    if request.param.endswith("threads"):
        request.getfixturevalue("spread")
    with using_backend(request.param.split(",")[0]) as b:
        yield b


def test_lookups_are_bitwise_the_embedders_batch_output(net, exact_backend):
    x = _images(5)
    whole = net(Tensor(x))[0].data
    cache = EmbeddingCache(net)
    np.testing.assert_array_equal(cache(x[[3, 1]]), whole[[3, 1]])
    assert (cache.hits, cache.misses) == (0, 2)
    # a batch of known and new images, one of them twice and one flipped
    flipped = x[1, :, :, ::-1]
    batch = np.stack([x[1], x[0], x[3], x[0], flipped])
    out = cache(batch)
    np.testing.assert_array_equal(out[:4], whole[[1, 0, 3, 0]])
    np.testing.assert_array_equal(out[4], net(Tensor(flipped[None].copy()))[0].data[0])
    assert not np.array_equal(out[4], whole[1, :, :, ::-1])  # so the flip is its own key
    assert (cache.hits, cache.misses) == (3, 4)    # x[0] twice in one batch: embedded once
    assert len(cache._store) == 4
    np.testing.assert_array_equal(cache(x), whole)
    assert (cache.hits, cache.misses) == (6, 6)


def test_a_full_cache_embeds_but_stores_no_more(net):
    x = _images(3, seed=1)
    whole = net(Tensor(x))[0].data
    one = whole[0].nbytes
    cache = EmbeddingCache(net, most_bytes=2 * one)
    np.testing.assert_array_equal(cache(x), whole)
    assert cache.stored_bytes == 2 * one and len(cache._store) == 2
    np.testing.assert_array_equal(cache(x), whole)
    assert (cache.hits, cache.misses) == (2, 4)
    nothing = EmbeddingCache(net, most_bytes=0)
    np.testing.assert_array_equal(nothing(x), whole)
    assert nothing.stored_bytes == 0 and not nothing._store


def test_the_same_bytes_in_another_shape_are_another_key(net):
    x = _images(1, seed=2)
    cache = EmbeddingCache(net)
    cache(x)
    tall = np.ascontiguousarray(x.reshape(1, 3, 24, 20))   # same bytes, other shape
    np.testing.assert_array_equal(cache(tall), net(Tensor(tall))[0].data)
    assert cache.misses == 2 and cache.hits == 0


def test_a_caller_writing_into_the_output_leaves_the_stored_embeddings_alone(net):
    # the step may write into its embeddings; the store must neither share the returned
    # array nor keep a view of the embedder's batch output
    x = _images(2, seed=3)
    whole = net(Tensor(x))[0].data
    cache = EmbeddingCache(net)
    for _ in range(2):   # a miss, then a hit
        out = cache(x)
        np.testing.assert_array_equal(out, whole)
        out[...] = np.nan
    assert all(e.base is None for e in cache._store.values())
    np.testing.assert_array_equal(cache(x), whole)
