"""DataLoader and collate: batching, seeded shuffling, drop_last, augmentations applied
consistently to whole batches, and identical batches with a prefetch thread or workers."""
import numpy as np
import pytest

from segnp.data import (Compose, DataLoader, HDF5FlowDataset, HDF5SegmentationDataset,
                        RandomCrop, RandomHorizontalFlip, RandomScale, SegmentationWriter,
                        SubtractMean, collate, generate)


class ListDataset:
    """Samples whose pixels encode their index, so a batch shows which samples it holds."""

    def __init__(self, n, size=(5, 6)):
        self.samples = []
        for i in range(n):
            image = np.full(size + (3,), i, np.uint8)
            image[..., 1] = np.arange(size[1])          # a left-right ramp for flips
            self.samples.append({"image": image,
                                 "label": np.full(size, i % 7, np.uint8)})

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def _ids(batch):
    return batch[0][:, 0, 0, 0].astype(int).tolist()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("fs"), 12, (40, 48), seed=3)


def test_batching_order_and_drop_last():
    ds = ListDataset(10)
    loader = DataLoader(ds, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and [_ids(b) for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                                [8, 9]]
    images, labels = batches[0]
    assert images.shape == (4, 3, 5, 6) and images.dtype == np.float32
    assert labels.shape == (4, 5, 6) and labels.dtype == np.int64
    np.testing.assert_array_equal(images[2], ds[2]["image"].transpose(2, 0, 1))
    np.testing.assert_array_equal(labels[3], ds[3]["label"])
    dropped = DataLoader(ds, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(b[0]) for b in dropped] == [4, 4]
    assert len(DataLoader(ds, batch_size=5, drop_last=True)) == 2
    assert len(DataLoader(ds, batch_size=11, drop_last=True)) == 0


def test_shuffling_is_seeded_per_epoch_and_resumable():
    ds = ListDataset(10)
    a = DataLoader(ds, batch_size=3, shuffle=True, seed=7)
    epochs = [sum((_ids(b) for b in a), []) for _ in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(10))
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    b = DataLoader(ds, batch_size=3, shuffle=True, seed=7)
    assert sum((_ids(x) for x in b), []) == epochs[0]
    b.set_epoch(2)
    assert sum((_ids(x) for x in b), []) == epochs[2]
    other = DataLoader(ds, batch_size=3, shuffle=True, seed=8)
    assert sum((_ids(x) for x in other), []) != epochs[0]
    # with drop_last, which samples are left out changes from epoch to epoch
    d = DataLoader(ds, batch_size=4, shuffle=True, seed=1, drop_last=True)
    left_out = [frozenset(range(10)) - frozenset(sum((_ids(x) for x in d), []))
                for _ in range(4)]
    assert all(len(s) == 2 for s in left_out) and len(set(left_out)) > 1


def test_collate_pads_variable_sizes_with_ignore():
    rng = np.random.default_rng(0)
    samples = [{"image": rng.integers(0, 256, (h, w, 3)).astype(np.uint8),
                "label": rng.integers(0, 5, (h, w)).astype(np.uint8)}
               for h, w in [(4, 6), (5, 3)]]
    images, labels = collate(samples)
    assert images.shape == (2, 3, 5, 6) and labels.shape == (2, 5, 6)
    np.testing.assert_array_equal(images[1, :, :5, :3], samples[1]["image"].transpose(2, 0, 1))
    assert (images[0, :, 4:] == 0).all() and (images[1, :, :, 3:] == 0).all()
    assert (labels[0, 4:] == 255).all() and (labels[1, :, 3:] == 255).all()
    np.testing.assert_array_equal(labels[0, :4], samples[0]["label"])
    labels_only, = collate(samples, keys=["label"])
    np.testing.assert_array_equal(labels_only, labels)
    flows = [{"flow": np.zeros((4, 4, 2), np.float32)},
             {"flow": np.zeros((4, 5, 2), np.float32)}]
    with pytest.raises(ValueError, match=r"collate: flow samples .* share one size"):
        collate(flows)


def test_flip_in_the_loader_flips_images_labels_and_flow_together(shapes):
    flow_ds = HDF5FlowDataset(shapes.flow, fields=("image1", "image2", "flow", "occluded"))
    plain = next(iter(DataLoader(flow_ds, batch_size=5)))
    flipped = next(iter(DataLoader(flow_ds, batch_size=5,
                                   transform=RandomHorizontalFlip(p=1.0))))
    image1, image2, flow, occluded = plain
    np.testing.assert_array_equal(flipped[0], image1[..., ::-1])
    np.testing.assert_array_equal(flipped[1], image2[..., ::-1])
    np.testing.assert_array_equal(flipped[2][:, 0], -flow[:, 0, :, ::-1])
    np.testing.assert_array_equal(flipped[2][:, 1], flow[:, 1, :, ::-1])
    np.testing.assert_array_equal(flipped[3], occluded[..., ::-1])
    # the flipped pair still matches: image1(y, x) ~ image2(y + v, x + u) on visible pixels
    H, W = image1.shape[2:]
    y, x = np.mgrid[0:H, 0:W]
    for n in range(5):
        u, v = flipped[2][n]
        xs = np.clip(np.rint(x + u).astype(int), 0, W - 1)
        ys = np.clip(np.rint(y + v).astype(int), 0, H - 1)
        err = np.abs(flipped[1][n][:, ys, xs] - flipped[0][n]).mean(0)
        visible = ~flipped[3][n]
        assert err[visible].mean() < 0.5 * np.abs(flipped[1][n] - flipped[0][n]).mean(0)[
            visible].mean()

    seg_ds = HDF5SegmentationDataset(shapes.segmentation)
    half = DataLoader(seg_ds, batch_size=12, seed=4, transform=RandomHorizontalFlip(0.5))
    images, labels = next(iter(half))
    ref_images, ref_labels = next(iter(DataLoader(seg_ds, batch_size=12)))
    was_flipped = [not np.array_equal(images[n], ref_images[n]) for n in range(12)]
    assert 0 < sum(was_flipped) < 12
    for n, f in enumerate(was_flipped):
        want = ref_labels[n][:, ::-1] if f else ref_labels[n]
        np.testing.assert_array_equal(labels[n], want)
        np.testing.assert_array_equal(images[n], ref_images[n][..., ::-1] if f else
                                      ref_images[n])


def test_crop_pads_with_ignore_and_mean_is_subtracted_in_batches(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "seg.h5"
    sizes = [(6, 9), (10, 4), (8, 8)]
    with SegmentationWriter(path, 3, (10, 9), ["bg", "a", "b"]) as w:
        for h, wd in sizes:
            w.add(rng.integers(0, 256, (h, wd, 3)).astype(np.uint8),
                  rng.integers(0, 3, (h, wd)).astype(np.uint8))
    ds = HDF5SegmentationDataset(path)
    t = Compose([SubtractMean(ds.mean), RandomCrop((10, 10))])
    images, labels = next(iter(DataLoader(ds, batch_size=3, transform=t)))
    assert images.shape == (3, 3, 10, 10) and labels.shape == (3, 10, 10)
    for n, (h, wd) in enumerate(sizes):
        s = ds[n]
        np.testing.assert_array_equal(labels[n, :h, :wd], s["label"])
        assert (labels[n, h:] == 255).all() and (labels[n, :, wd:] == 255).all()
        np.testing.assert_allclose(images[n, :, :h, :wd],
                                   (s["image"] - ds.mean).transpose(2, 0, 1), atol=1e-4)
        assert (images[n, :, h:] == 0).all()         # padding is the mean colour


def test_scale_jitter_varies_per_sample_and_repeats_per_seed(shapes):
    ds = HDF5SegmentationDataset(shapes.segmentation)
    t = Compose([RandomScale(0.5, 1.5), RandomCrop(32)])
    a = list(DataLoader(ds, batch_size=4, shuffle=True, seed=2, transform=t))
    b = list(DataLoader(ds, batch_size=4, shuffle=True, seed=2, transform=t))
    for x, y in zip(a, b):
        for p, q in zip(x, y):
            np.testing.assert_array_equal(p, q)
    labels = np.concatenate([x[1] for x in a])
    assert labels.shape == (12, 32, 32)
    # upscaled crops of 40x48 scenes need no padding; downscaled ones below 32 do
    padded = [(lab == 255).any() for lab in labels]
    assert 0 < sum(padded) < 12


@pytest.mark.parametrize("prefetch,workers", [(2, 0), (0, 2)])
def test_background_loading_gives_the_same_batches(shapes, prefetch, workers):
    ds = HDF5FlowDataset(shapes.flow)
    t = Compose([RandomScale(0.9, 1.3), RandomCrop(32), RandomHorizontalFlip(),
                 SubtractMean(ds.mean)])
    ds[0]                                   # an open handle that workers must not share
    kw = dict(batch_size=5, shuffle=True, seed=11, transform=t)
    ref = DataLoader(ds, **kw)
    bg = DataLoader(ds, prefetch=prefetch, workers=workers, **kw)
    for _ in range(2):                      # two epochs: the order differs between them
        want, got = list(ref), list(bg)
        assert len(got) == len(want) == 3
        for x, y in zip(want, got):
            for p, q in zip(x, y):
                np.testing.assert_array_equal(p, q)
    it = iter(DataLoader(ds, prefetch=2, batch_size=1))
    next(it)
    it.close()                              # stopping early shuts the thread down


def test_loader_rejects_bad_arguments():
    ds = ListDataset(3)
    with pytest.raises(ValueError, match="DataLoader: batch_size must be >= 1; got 0"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="prefetch and workers must be >= 0"):
        DataLoader(ds, prefetch=-1)
    with pytest.raises(ValueError, match="the dataset is empty"):
        DataLoader(ListDataset(0))
