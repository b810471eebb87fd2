"""The on-disk slice cache: same samples as in memory, built once, reused, never half-built."""

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets import generate_phantom, open_dataset
from datasets.slice_store import CACHE_ENV, SliceStore, StoreBuilder, resolve_cache_dir
from datasets.slices import SliceDataset, build_slice_cache
from swin_unet.config import DataConfig
from swin_unet.errors import InputError


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return generate_phantom(tmp_path_factory.mktemp("data") / "phantom", "abdomen",
                            n_cases=4, shape=(24, 20, 5))


def source_in(root, cache_dir, **data):
    config = DataConfig(root=str(root), cache_dir=str(cache_dir), num_workers=2,
                        train_cases=["1", "2", "3"], val_cases=[], test_cases=["4"], **data)
    return open_dataset("phantom", config)


class Entry:
    def __init__(self, name):
        self.name = name


def synthetic_builder(cache_dir, prepare, n=4, key=None):
    return StoreBuilder(Path(cache_dir), "synthetic", key or {"n": n},
                        [Entry(f"v{i}") for i in range(n)], prepare, workers=2)


def volume(i, size=(6, 5)):
    """Volume i: i + 2 slices whose pixels say which volume and slice they are."""
    z = i + 2
    images = (np.arange(z)[:, None, None, None] + 10 * i
              + np.zeros((z, 1) + size)).astype(np.float16)
    labels = (np.arange(z)[:, None, None] % 3 + np.zeros((z,) + size)).astype(np.uint8)
    return images, labels


def test_memory_mapped_samples_are_bit_identical_to_the_in_memory_cache(phantom, tmp_path,
                                                                         caplog):
    source = source_in(phantom, tmp_path)
    with caplog.at_level(logging.INFO, logger="datasets"):
        dataset = source.train_slices((16, 12), seed=5)
    store = dataset.cache
    assert isinstance(store, SliceStore) and store.path.parent == tmp_path
    assert f"slice cache: built {len(store)} slices" in caplog.text and str(store.path) in caplog.text
    in_memory = build_slice_cache(source.entries("train"), source._cached_volume, (16, 12),
                                  np.dtype("float16"))
    reference = SliceDataset(in_memory, augment=True, seed=5)
    assert len(dataset) == len(reference) == 15 and store.names == in_memory.names
    for epoch in (0, 3):
        dataset.set_epoch(epoch)
        reference.set_epoch(epoch)
        for index in range(len(dataset)):
            ours, theirs = dataset[index], reference[index]
            assert torch.equal(ours["image"], theirs["image"]), index
            assert torch.equal(ours["label"], theirs["label"]), index
    image, label = store.slice(len(store) - 1)
    assert isinstance(image, np.memmap) and image.shape == (1, 16, 12) and label.shape == (16, 12)


def test_a_second_run_reuses_the_cache_and_a_changed_input_makes_a_new_one(phantom, tmp_path,
                                                                           caplog):
    first = source_in(phantom, tmp_path).slice_cache(16).open()
    calls = []
    source = source_in(phantom, tmp_path)
    source._training_slices = lambda *a: calls.append(a)  # reading anything would fail
    with caplog.at_level(logging.INFO, logger="datasets"):
        again = source.slice_cache(16).open()
    assert not calls and again.path == first.path
    assert f"slice cache: reused {len(first)} slices at {first.path}" in caplog.text
    paths = {first.path}
    for changed in (source_in(phantom, tmp_path, cache_dtype="float32").slice_cache(16),
                    source_in(phantom, tmp_path, intensity="zscore").slice_cache(16),
                    source_in(phantom, tmp_path).slice_cache(20)):
        paths.add(changed.path)
    image = source_in(phantom, tmp_path).entries("train")[0].image
    stamp = image.stat()
    os.utime(image, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000_000))
    paths.add(source_in(phantom, tmp_path).slice_cache(16).path)
    assert len(paths) == 5


def _killed_build(cache_dir):
    def prepare(entry):
        if entry.name == "v2":
            os.kill(os.getpid(), signal.SIGKILL)
        return volume(int(entry.name[1:]))

    synthetic_builder(cache_dir, prepare).open()


def test_a_killed_build_is_never_reused_and_the_next_build_cleans_up(tmp_path, caplog):
    child = multiprocessing.get_context("fork").Process(target=_killed_build, args=(tmp_path,))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    builder = synthetic_builder(tmp_path, lambda e: volume(int(e.name[1:])))
    leftovers = list(tmp_path.glob(f"{builder.path.name}.tmp-*"))
    assert len(leftovers) == 1 and not builder.path.exists() and builder.complete() is None
    with caplog.at_level(logging.INFO, logger="datasets"):
        store = builder.open()  # the dead builder's lock went with it
    assert "left by a build that did not finish" in caplog.text
    assert not any(tmp_path.glob("*.tmp-*")) and len(store) == 2 + 3 + 4 + 5
    np.testing.assert_array_equal(store.images[3], volume(3)[0])
    # A complete cache damaged later (a file truncated) is rebuilt, not read.
    label_file = store.path / "labels" / "00001.npy"
    label_file.write_bytes(label_file.read_bytes()[:-1])
    assert builder.complete() is None
    with caplog.at_level(logging.INFO, logger="datasets"):
        rebuilt = builder.open()
    assert "incomplete or damaged" in caplog.text
    np.testing.assert_array_equal(rebuilt.labels[1], volume(1)[1])


def test_two_builders_at_once_write_once_and_the_second_waits_and_reuses(tmp_path, caplog):
    built = []

    def prepare(entry):
        built.append(entry.name)
        time.sleep(0.05)
        return volume(int(entry.name[1:]))

    first, second = synthetic_builder(tmp_path, prepare), synthetic_builder(tmp_path, prepare)
    assert first.claim()
    assert not second.claim()  # held by the first: the second will wait
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault("store", second.open()))
    with caplog.at_level(logging.INFO, logger="datasets"):
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive()  # waiting on the lock, not building
        store = first.open()
        waiter.join(30)
    assert sorted(built) == ["v0", "v1", "v2", "v3"]
    assert result["store"].path == store.path
    assert "waiting for process" in caplog.text and "slice cache: reused 14 slices" in caplog.text


def test_too_little_free_disk_is_refused_before_anything_is_read(phantom, tmp_path,
                                                                 monkeypatch):
    import datasets.slice_store as slice_store

    source = source_in(phantom, tmp_path)
    reads = []
    real = source._training_slices
    source._training_slices = lambda *a: reads.append(1) or real(*a)
    usage = slice_store.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(slice_store.shutil, "disk_usage",
                        lambda path: usage._replace(free=1000))
    with pytest.raises(InputError, match=r"needs about .* GiB but only 0.00 GiB are free"):
        source.slice_cache(16).open()
    assert not reads and not any(tmp_path.glob("*.tmp-*"))


def test_a_store_pickles_as_its_folder_and_reads_the_same_after(tmp_path):
    store = synthetic_builder(tmp_path, lambda e: volume(int(e.name[1:]), (64, 64))).open()
    store.slice(0)
    data = pickle.dumps(store)
    assert store.nbytes > 100_000 and len(data) < 10_000  # the folder, not the arrays
    copy = pickle.loads(data)
    for index in range(len(store)):
        for a, b in zip(store.slice(index), copy.slice(index)):
            np.testing.assert_array_equal(a, b)


def test_the_cache_folder_is_the_config_key_else_the_environment_else_cache(monkeypatch):
    monkeypatch.setenv(CACHE_ENV, "/scratch/slices")
    assert resolve_cache_dir("/data/cache") == Path("/data/cache")
    assert resolve_cache_dir(None) == Path("/scratch/slices")
    monkeypatch.delenv(CACHE_ENV)
    assert resolve_cache_dir(None) == Path("cache")


def test_swin_unet_prepare_builds_the_cache_once_and_the_second_run_reuses_it(tmp_path, capsys):
    from swin_unet import cli

    root = generate_phantom(tmp_path / "phantom", "abdomen", n_cases=3, shape=(32, 32, 4))
    args = ["prepare", "--dataset", "phantom", "--root", str(root),
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "model.img_size=32",
            "--set", "data.num_workers=0"]
    assert cli.main(args) == 0
    first = capsys.readouterr()
    assert "slice cache ready:" in first.out
    assert "slice cache: built" in first.out + first.err
    built = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert built
    assert cli.main(args) == 0
    second = capsys.readouterr()
    assert "slice cache: reused" in second.out + second.err
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == built
