"""Training slices: augmentation keeps labels and alignment, randomness from (seed, epoch, index)."""

import numpy as np
import pytest
import torch
from monai.data import get_track_meta
from torch.utils.data import DataLoader, DistributedSampler

from datasets import normalize_intensity, resize_slices
from datasets.slices import SliceCache, SliceDataset, build_slice_cache
from swin_unet.sizes import as_pair as as_size
from swin_unet.errors import InputError

K = 5  # classes in the synthetic cache


def synthetic_cache(n_volumes=3, depth=4, size=(32, 24)):
    """Slices whose image encodes the label (image = label / K), blocky so rotations keep it."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for v in range(n_volumes):
        coarse = rng.integers(0, K, size=(depth, size[0] // 8, size[1] // 8))
        label = np.kron(coarse, np.ones((1, 8, 8))).astype(np.uint8)
        labels.append(label)
        images.append((label[:, None] / K).astype(np.float16))
    return SliceCache([f"v{v}" for v in range(n_volumes)], images, labels)


@pytest.mark.parametrize("size", [(32, 24), (24, 24)])
def test_augmented_labels_keep_their_values_and_stay_aligned_with_the_image(size):
    ds = SliceDataset(synthetic_cache(size=size), augment=True, seed=7)
    changed = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for index in range(len(ds)):
            item = ds[index]
            assert item["image"].shape == (1,) + size and item["label"].shape == (1,) + size
            label = item["label"][0].numpy()
            original = ds.cache.labels[int(index // 4)][index % 4]
            assert item["label"].dtype == torch.int64 and item["image"].dtype == torch.float32
            assert set(np.unique(label)) <= set(np.unique(original)) | {0}
            # Away from block edges the bilinear image still encodes the nearest label.
            agree = np.abs(item["image"][0].numpy() * K - label) < 0.5
            assert agree.mean() > 0.85
            changed += not np.array_equal(label, original)
    assert changed > len(ds)  # most samples were transformed


def test_no_augmentation_returns_the_cached_slice():
    cache = synthetic_cache()
    ds = SliceDataset(cache, augment=False)
    item = ds[5]
    np.testing.assert_array_equal(item["label"][0].numpy(), cache.labels[1][1])
    np.testing.assert_array_equal(item["image"].numpy(), cache.images[1][1].astype(np.float32))
    with pytest.raises(IndexError):
        ds[len(ds)]


def batches(ds, epochs, **loader_kwargs):
    loader = DataLoader(ds, batch_size=4, shuffle=False, **loader_kwargs)
    out = []
    for epoch in epochs:
        ds.set_epoch(epoch)
        out.append([(b["image"].clone(), b["label"].clone()) for b in loader])
    return out


def test_randomness_depends_on_seed_epoch_and_index_only():
    ds = SliceDataset(synthetic_cache(), augment=True, seed=11)
    serial = batches(ds, [0, 1])
    parallel = batches(ds, [0, 1], num_workers=2, persistent_workers=True)
    for epoch_serial, epoch_parallel in zip(serial, parallel):
        for (image_a, label_a), (image_b, label_b) in zip(epoch_serial, epoch_parallel):
            assert torch.equal(image_a, image_b) and torch.equal(label_a, label_b)
    # A new epoch (seen by persistent workers too) draws new augmentations.
    assert any(not torch.equal(a[1], b[1]) for a, b in zip(serial[0], serial[1]))
    # The item does not depend on what was drawn before it (resuming mid-run is exact).
    ds.set_epoch(1)
    assert torch.equal(ds[9]["label"], serial[1][2][1][1])
    assert get_track_meta()  # switched off only while augmenting
    other_seed = SliceDataset(synthetic_cache(), augment=True, seed=12)
    assert any(not torch.equal(other_seed[i]["label"], ds[i]["label"]) for i in range(len(ds)))


def test_distributed_sampler_splits_the_epoch_between_ranks():
    ds = SliceDataset(synthetic_cache(), augment=True, seed=3)
    ds.set_epoch(2)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        sampler.set_epoch(2)
        indices = list(sampler)
        seen += indices
        loader = DataLoader(ds, batch_size=3, sampler=sampler)
        first = next(iter(loader))
        assert torch.equal(first["label"][0], ds[indices[0]]["label"])
    assert sorted(seen) == list(range(len(ds)))


def test_float16_cache_error_is_below_half_a_hounsfield_unit():
    rng = np.random.default_rng(1)
    hu = rng.uniform(-1000, 1500, size=(48, 40, 3)).astype(np.float32)
    volume = normalize_intensity(hu, "ct")
    label = (rng.random((48, 40, 3)) * 3).astype(np.uint8)
    entries = [type("Entry", (), {"name": "a"})()]
    caches = {dtype: build_slice_cache(entries, lambda e: (volume, label), (32, 32),
                                       np.dtype(dtype)) for dtype in ("float16", "float32")}
    half = caches["float16"].images[0].astype(np.float32)
    full = caches["float32"].images[0]
    # [0, 1] spans the 400 HU window; float16 keeps 11 significant bits.
    assert np.abs(half - full).max() * 400 < 0.5
    assert caches["float16"].images[0].nbytes * 2 == caches["float32"].images[0].nbytes
    np.testing.assert_array_equal(caches["float16"].labels[0], caches["float32"].labels[0])


def test_normalize_intensity_modes():
    hu = np.array([[-1000.0, -125.0, 75.0, 275.0, 3000.0]])
    np.testing.assert_allclose(normalize_intensity(hu, "ct"), [[0, 0, 0.5, 1, 1]])
    np.testing.assert_allclose(normalize_intensity(hu, "ct", ct_window=(-1000, 3000)),
                               [[0, 875 / 4000, 1075 / 4000, 1275 / 4000, 1]], rtol=1e-6)
    z = normalize_intensity(hu, "zscore")
    assert z.dtype == np.float32 and z.mean() == pytest.approx(0, abs=1e-6)
    assert z.std() == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(normalize_intensity(hu, "minmax"),
                               (hu - hu.min()) / (hu.max() - hu.min()), rtol=1e-6)
    two = np.stack([hu, hu * 10 + 5])
    np.testing.assert_allclose(normalize_intensity(two, "zscore", channels_first=True)[1], z,
                               atol=1e-5)
    with pytest.raises(InputError, match="resolve 'auto'"):
        normalize_intensity(hu, "auto")


def test_resize_and_sizes():
    label = np.zeros((2, 20, 10), np.float32)
    label[:, :10] = 3
    out = resize_slices(label, (40, 20), is_label=True)
    assert out.shape == (2, 40, 20) and set(np.unique(out)) == {0, 3}
    assert (out[:, :20] == 3).all() and (out[:, 20:] == 0).all()
    assert resize_slices(np.ones((1, 2, 20, 10)), (8, 8)).shape == (1, 2, 8, 8)
    assert as_size(96) == (96, 96) and as_size([64, 32]) == (64, 32)
    with pytest.raises(InputError, match="img_size"):
        as_size("96")
