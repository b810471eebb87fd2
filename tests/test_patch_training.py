"""Patch-mode training: the native-resolution slice store, the patch sampler, runs end to end."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import test as test_cli
import train as train_cli
from datasets import generate_phantom, open_dataset
from datasets.phantom_folder import write_phantom_folder
from datasets.patches import PatchDataset
from datasets.slice_store import fingerprint
from datasets.slices import SliceCache
from swin_unet.config import DataConfig
from swin_unet.model import read_checkpoint
from tests.test_datasets_images import SIZE, write_pairs
from tests.test_datasets_synapse import write_nifti, write_release
from tests.test_train_run import _interrupt_when, assert_same_weights

TINY = ["model.img_size=64", "model.embed_dim=12", "model.depths=[2,2,2,2]",
        "model.num_heads=[1,1,1,1]", "model.window_size=2", "train.batch_size=4",
        "train.base_batch_size=4", "train.optimizer=adamw", "train.base_lr=0.002",
        "train.val_every=1", "train.val_hd95=false", "train.cpu_threads=1",
        "data.num_workers=0", "data.augment=true", "inference.batch_size=8",
        "data.sampling=patch"]


def run_train(dataset, root, output, *extra, tiny=True):
    args = ["--quiet", "--device", "cpu", "--dataset", dataset, "--root", str(root),
            "--output", str(output)]
    for item in (TINY if tiny else []) + list(extra):
        args += [item] if item.startswith("--") else ["--set", item]
    return train_cli.main(args)


def run_test(capsys, *args):
    code = test_cli.main(["--no-progress", "--device", "cpu", *[str(a) for a in args]])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def cache_of(slices):
    """An in-memory store of volumes given as lists of (H, W) label arrays (images random)."""
    rng = np.random.default_rng(0)
    labels = [np.stack(v).astype(np.uint8) for v in slices]
    images = [rng.random((len(v), 1) + v.shape[1:]).astype(np.float16) + 1 for v in labels]
    return SliceCache([f"v{i}" for i in range(len(labels))], images, labels)


def test_patches_have_the_patch_size_and_small_slices_are_padded():
    big, small = np.zeros((96, 80)), np.zeros((20, 24))
    small[3, 4] = 1
    dataset = PatchDataset(cache_of([[big], [small]]), (32, 48), num_classes=2,
                           augment=False, seed=3)
    item = dataset[0]
    assert item["image"].shape == (1, 32, 48) and item["label"].shape == (1, 32, 48)
    assert item["image"].dtype == torch.float32 and item["label"].dtype == torch.int64
    padded = dataset[1]
    assert padded["image"].shape == (1, 32, 48)
    # The slice's pixels (all >= 1) inside, zeros around; its one label pixel kept.
    inside = padded["image"][0] >= 1
    assert int(inside.sum()) == 20 * 24 and float(padded["image"][0][~inside].abs().max()) == 0
    assert int(padded["label"].sum()) == 1 and int(padded["label"][0][inside].sum()) == 1
    # Augmented patches keep the size.
    augmented = PatchDataset(cache_of([[big], [small]]), 32, 2, augment=True, seed=3)
    assert all(augmented[i]["image"].shape == (1, 32, 32) for i in range(2))


def test_the_foreground_share_holds_on_a_seeded_run():
    label = np.zeros((128, 128))
    label[62:66, 62:66] = 1  # 16 of 16384 pixels: a uniform patch is rarely centred on it
    cache = cache_of([[label]])
    for share in (1 / 3, 0.8):
        dataset = PatchDataset(cache, 32, 2, foreground_share=share, augment=False, seed=7)
        centred = []
        for epoch in range(300):
            dataset.set_epoch(epoch)
            centred.append(bool(dataset[0]["label"][0, 14:18, 14:18].any()))
        assert abs(np.mean(centred) - share) < 0.08, (share, np.mean(centred))
    never = PatchDataset(cache, 32, 2, foreground_share=0.0, augment=False, seed=7)
    assert sum(bool(never[0]["label"][0, 14:18, 14:18].any()) for _ in range(1)) == 0


def test_a_foreground_draw_on_an_empty_slice_takes_a_foreground_slice_of_its_volume():
    empty, full = np.zeros((64, 64)), np.zeros((64, 64))
    full[30:34, 30:34] = 2
    dataset = PatchDataset(cache_of([[empty, full], [empty]]), 16, 3, foreground_share=1.0,
                           augment=False, seed=0)
    assert int(dataset[0]["label"].max()) == 2  # drawn from slice 1 of the same volume
    assert int(dataset[2]["label"].max()) == 0  # a volume without foreground: uniform


def test_samples_depend_on_seed_epoch_and_index_only():
    label = np.zeros((90, 70))
    label[10:20, 40:50] = 1
    cache = cache_of([[label, label]])
    first = PatchDataset(cache, 32, 2, augment=True, seed=5)
    second = PatchDataset(cache, 32, 2, augment=True, seed=5)
    for epoch in (0, 3):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        for index in (1, 0):
            a, b = first[index], second[index]
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    first.set_epoch(0)
    second.set_epoch(1)
    assert not torch.equal(first[0]["image"], second[0]["image"])


SHAPE = (40, 36, 3)


def write_synapse_raw(root, spacings):
    """Synapse raw cases 1, 5, 6, ... with these in-plane spacings and a box of liver."""
    numbers = [5, 6, 7, 1][:len(spacings)]
    for number, (sx, sy) in zip(numbers, spacings):
        affine = np.diag([-sx, -sy, 3.0, 1.0])
        hu = np.full(SHAPE, -100, np.int16)
        label = np.zeros(SHAPE, np.uint8)
        label[8:30, 6:26] = 6  # raw 6: liver
        hu[label > 0] = 150
        folder = root / "RawData" / "Training"
        write_nifti(folder / "img" / f"img{number:04d}.nii.gz", hu, affine)
        write_nifti(folder / "label" / f"label{number:04d}.nii.gz", label, affine)
    return root


def synapse(root, **data):
    cfg = DataConfig(root=str(root), train_cases=["5", "6", "7"], val_cases=[],
                     test_cases=["1"], **data)
    return open_dataset("synapse", cfg)


def test_store_key_differs_between_modes_and_spacings_and_resize_stays_as_it_was(tmp_path):
    root = write_synapse_raw(tmp_path, [(0.8, 0.75), (0.5, 0.5), (1.0, 1.0)])
    resize = synapse(root).slice_cache(64)
    assert set(resize.key) == {"kind", "dataset", "layout", "source", "intensity", "ct_window",
                               "size", "dtype", "in_chans", "allow_slice_gaps", "volumes"}
    assert resize.key["kind"] == "resize" and resize.key["size"] == [64, 64]
    assert resize.path.name == f"synapse-synapse_raw-64x64-float16-{fingerprint(resize.key)}"
    native = synapse(root, sampling="patch").slice_cache(64)
    auto = synapse(root, sampling="patch", spacing="auto").slice_cache(64)
    explicit = synapse(root, sampling="patch", spacing=[0.8, 0.75]).slice_cache(64)
    other = synapse(root, sampling="patch", spacing=[1.0, 1.0]).slice_cache(64)
    assert native.key["kind"] == "patch" and native.key["spacing"] is None
    paths = {b.path for b in (resize, native, explicit, other)}
    assert len(paths) == 4
    assert auto.path == explicit.path  # auto is the median, as numbers
    assert "patch-0.8x0.75" in explicit.path.name and "patch-native" in native.path.name


def test_patch_store_holds_slices_resampled_to_the_spacing_as_memory_maps(tmp_path):
    root = write_synapse_raw(tmp_path, [(0.8, 0.75), (0.4, 0.5), (1.6, 1.5)])
    native = synapse(root, sampling="patch").slice_cache(64).open()
    assert [native.slice(z)[0].shape for z in (0, 3, 6)] == [(1, 40, 36)] * 3
    store = synapse(root, sampling="patch", spacing=[1.6, 1.5]).slice_cache(64).open()
    # 40 x 36 pixels of (0.8, 0.75), (0.4, 0.5), (1.6, 1.5) mm at 1.6 x 1.5 mm.
    assert [store.slice(z)[0].shape for z in (0, 3, 6)] == [(1, 20, 18), (1, 10, 12),
                                                            (1, 40, 36)]
    image, label = store.slice(0)
    assert isinstance(store.volume(0)[0], np.memmap) and image.dtype == np.float16
    assert set(np.unique(label)) == {0, 5}  # labels resampled nearest: classes only
    assert len(store) == 9


def test_spacing_auto_is_recorded_and_train_test_run_end_to_end_on_synapse_raw(
        tmp_path, capsys):
    root = write_synapse_raw(tmp_path / "data", [(0.8, 0.75), (0.5, 0.6), (1.0, 1.0),
                                                  (0.9, 0.7)])
    run = tmp_path / "run"
    assert run_train("synapse", root, run, "train.epochs=1", "data.spacing=auto",
                     "data.train_cases=[5,6,7]", "data.val_cases=[]",
                     "data.test_cases=[1]") == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["spacing"] == [0.8, 0.75] and config["data"]["sampling"] == "patch"
    checkpoint = read_checkpoint(run / "checkpoints" / "last.pth")
    assert checkpoint["config"]["data"]["spacing"] == [0.8, 0.75]
    assert "median in-plane spacing is 0.8 x 0.75 mm" in (run / "train.log").read_text()
    run_test(capsys, "--volume", "--dataset", "synapse", "--root", root, "--checkpoint",
             run / "checkpoints" / "last.pth", "--output", tmp_path / "eval", "--save-nifti")
    prediction = nib.load(tmp_path / "eval" / "predictions" / "case0001.nii.gz")
    assert prediction.shape == SHAPE


def test_train_test_on_the_folder_layout_with_predictions_at_the_scans_size(tmp_path, capsys):
    root = write_phantom_folder(tmp_path / "folder", n_cases=4, shape=(48, 40, 4))
    run = tmp_path / "run"
    # Patches (and windows) of 128 x 64 for a 64-px model: validation runs in those windows.
    assert run_train("folder", root, run, "train.epochs=1", "data.patch_size=[128,64]",
                     "data.spacing=auto") == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert all(isinstance(v, float) for v in config["data"]["spacing"])
    run_test(capsys, "--volume", "--dataset", "folder", "--root", root, "--checkpoint",
             run / "checkpoints" / "best.pth", "--output", tmp_path / "eval", "--save-nifti")
    rows = (tmp_path / "eval" / "metrics.csv").read_text().splitlines()
    case = rows[1].split(",")[0]
    image = nib.load(root / "imagesTr" / f"{case}.nii.gz")
    prediction = nib.load(tmp_path / "eval" / "predictions" / f"{case}.nii.gz")
    assert prediction.shape == image.shape[:3]


def test_train_test_on_2d_images_keeps_their_pixels(tmp_path, capsys):
    root = tmp_path / "images"
    write_pairs(root)
    run = tmp_path / "run"
    # The images (24 x 32) are smaller than the 64-px patches: padded.
    assert run_train("folder", root, run, "train.epochs=1", "data.class_names=[lesion]",
                     "data.spacing=[0.5,0.5]") == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["spacing"] is None  # 2-D images carry no spacing
    run_test(capsys, "--dataset", "folder", "--root", root, "--checkpoint",
             run / "checkpoints" / "best.pth", "--output", tmp_path / "eval", "--save-nifti")
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["hd95_unit"] == "px"
    new = tmp_path / "new"
    new.mkdir()
    Image.fromarray(np.full((150, 130, 3), 120, np.uint8)).save(new / "large.png")
    run_test(capsys, "--checkpoint", run / "checkpoints" / "best.pth", "--input", new,
             "--output", tmp_path / "mine")
    assert Image.open(tmp_path / "mine" / "predictions" / "large.png").size == (130, 150)
    case = (tmp_path / "eval" / "metrics.csv").read_text().splitlines()[1].split(",")[0]
    assert Image.open(tmp_path / "eval" / "predictions" / f"{case}.png").size == (SIZE[1],
                                                                                 SIZE[0])


def test_a_resumed_patch_run_or_one_with_workers_gives_the_uninterrupted_weights(tmp_path, monkeypatch):
    phantom = generate_phantom(tmp_path / "phantom", "abdomen", n_cases=4, shape=(48, 40, 6))
    extra = ["train.epochs=2", "data.spacing=auto", "train.iters_per_epoch=3"]
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    assert run_train("phantom", phantom, full, *extra) == 0
    with monkeypatch.context() as patch:
        _interrupt_when(patch, "_step", 4)  # iteration 1 of epoch 2
        assert run_train("phantom", phantom, stopped, *extra) == 130
    assert read_checkpoint(stopped / "checkpoints" / "last.pth")["global_step"] == 4
    assert train_cli.main(["--quiet", "--dataset", "phantom", "--output", str(stopped),
                           "--resume"]) == 0
    reference = read_checkpoint(full / "checkpoints" / "last.pth")["model"]
    assert_same_weights(read_checkpoint(stopped / "checkpoints" / "last.pth")["model"], reference)
    # Patches and their augmentation do not depend on the loader's worker processes.
    workers = tmp_path / "workers"
    assert run_train("phantom", phantom, workers, *extra, "data.num_workers=2") == 0
    assert_same_weights(read_checkpoint(workers / "checkpoints" / "last.pth")["model"], reference)


def test_spacing_auto_on_a_release_without_spacing_keeps_the_slices(tmp_path, monkeypatch):
    write_release(tmp_path)
    source = open_dataset("synapse", DataConfig(root=str(tmp_path), train_cases=["5"],
                                                val_cases=[], test_cases=["1"],
                                                sampling="patch", spacing="auto"))
    monkeypatch.setattr(type(source), "load", lambda *a: pytest.fail("volume read"))
    assert source.sampling_spacing() is None
    assert "patch-native" in source.slice_cache(64).path.name
