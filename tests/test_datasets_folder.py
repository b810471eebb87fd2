"""A user's own data: MSD and nnU-Net v2 layouts, class names, channels, splits, intensity."""

import json

import nibabel as nib
import numpy as np
import pytest

from datasets import open_dataset
from swin_unet.config import DataConfig
from swin_unet.errors import InputError

SHAPE = (18, 14, 3)
AFFINE = np.diag([0.9, 0.9, 2.5, 1.0])


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, AFFINE), str(path))


def label_volume(seed):
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[2 + seed % 3:8, 3:9] = 1
    label[10:14, 5:12] = 2
    return label


def write_msd(root, n_cases=7):
    (root / "dataset.json").write_text(json.dumps({
        "name": "Liver", "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "liver", "2": "tumour"}}))
    for i in range(n_cases):
        hu = np.full(SHAPE, 75 + i, dtype=np.int16)
        save(root / "imagesTr" / f"liver_{i}.nii.gz", hu)
        save(root / "labelsTr" / f"liver_{i}.nii.gz", label_volume(i))
    # macOS metadata files shipped in the MSD archives are not cases.
    (root / "labelsTr" / "._liver_0.nii.gz").write_bytes(b"\x00\x05junk")


def test_msd_layout_classes_ct_window_and_deterministic_split(tmp_path):
    write_msd(tmp_path)
    src = open_dataset("folder", DataConfig(root=str(tmp_path)))
    assert (src.name, src.layout, src.in_chans) == ("folder", "folder", 1)
    assert src.class_names == ("liver", "tumour") and src.num_classes == 3
    assert src.intensity == "ct"
    splits = {s: src.cases(s) for s in ("train", "val", "test")}
    assert sorted(sum(splits.values(), [])) == sorted(f"liver_{i}" for i in range(7))
    assert [len(splits[s]) for s in ("train", "val", "test")] == [5, 1, 1]
    again = open_dataset("folder", DataConfig(root=str(tmp_path)))
    assert {s: again.cases(s) for s in splits} == splits
    src.check_integrity()
    item = src.volumes("test")[0]
    case = splits["test"][0]
    assert item.case == case and str(item.path).endswith(f"imagesTr/{case}.nii.gz")
    number = int(case.split("_")[1])
    assert item.array[0, 0, 0] == pytest.approx((75 + number + 125) / 400)
    np.testing.assert_array_equal(item.label, label_volume(number))
    assert item.spacing == pytest.approx((0.9, 0.9, 2.5))
    minmax = open_dataset("folder", DataConfig(root=str(tmp_path), intensity="minmax"))
    assert minmax.intensity == "minmax"


def test_nnunet_v2_multichannel_mri_with_splits_json(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "edema": 1,
                                                            "core": 2},
        "numTraining": 3, "file_ending": ".nii.gz"}))
    rng = np.random.default_rng(0)
    for case in ("BR_001", "BR_002", "BR_003"):
        for channel, scale in ((0, 10.0), (1, 1000.0)):
            save(tmp_path / "imagesTr" / f"{case}_{channel:04d}.nii.gz",
                 (rng.random(SHAPE) * scale).astype(np.float32))
        save(tmp_path / "labelsTr" / f"{case}.nii.gz", label_volume(1))
    (tmp_path / "splits.json").write_text(json.dumps(
        {"train": ["BR_001", "BR_002"], "val": [], "test": ["BR_003"]}))
    src = open_dataset("folder", DataConfig(root=str(tmp_path), augment=False))
    assert src.in_chans == 2 and src.class_names == ("edema", "core")
    assert src.intensity == "zscore"
    assert src.cases("train") == ["BR_001", "BR_002"] and src.cases("test") == ["BR_003"]
    src.check_integrity()
    item = src.volumes("test")[0]
    assert item.case == "BR_003" and item.array.shape == (2,) + SHAPE
    for channel in range(2):  # each channel z-scored on its own statistics
        assert item.array[channel].mean() == pytest.approx(0.0, abs=1e-4)
        assert item.array[channel].std() == pytest.approx(1.0, abs=1e-3)
    ds = src.train_slices(16, seed=0)
    assert len(ds) == 2 * SHAPE[2] and ds[0]["image"].shape == (2, 16, 16)


def test_msd_four_dimensional_multichannel_image(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({
        "modality": {"0": "FLAIR", "1": "T1w"}, "labels": {"0": "background", "1": "tumour"}}))
    image = np.stack([np.full(SHAPE, 1.0), np.full(SHAPE, 5.0)], axis=-1).astype(np.float32)
    image[0, 0, 0] = (0.0, 9.0)
    save(tmp_path / "imagesTr" / "BRATS_001.nii.gz", image)
    save(tmp_path / "labelsTr" / "BRATS_001.nii.gz", label_volume(0) // 2)
    src = open_dataset("folder", DataConfig(root=str(tmp_path), test_cases=["BRATS_001"],
                                            intensity="minmax"))
    src.check_integrity(["test"])
    item = src.volumes("test")[0]
    assert item.array.shape == (2,) + SHAPE
    assert item.array[0, 0, 0, 0] == 0.0 and item.array[1, 0, 0, 0] == 1.0


def test_folder_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="needs --root"):
        open_dataset("folder", DataConfig())
    with pytest.raises(InputError, match=r"data not found") as exc_info:
        open_dataset("folder", DataConfig(root=str(tmp_path)))
    assert "imagesTr/" in exc_info.value.details
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background",
                                                                  "2": "liver"}}))
    with pytest.raises(InputError, match=r"dataset\.json: label indices \[0, 2\] are not 0\.\.K"):
        open_dataset("folder", DataConfig(root=str(tmp_path)))
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background",
                                                                  "1": "liver"},
                                                       "modality": {"ct": "CT"}}))
    with pytest.raises(InputError, match=r"dataset\.json: 'channel_names' / 'modality' keys"):
        open_dataset("folder", DataConfig(root=str(tmp_path)))
    write_msd(tmp_path, n_cases=3)
    save(tmp_path / "labelsTr" / "liver_9.nii.gz", label_volume(0))  # a label without image
    src = open_dataset("folder", DataConfig(root=str(tmp_path), test_cases=["liver_9"]))
    with pytest.raises(InputError, match=r"imagesTr/liver_9\.nii\.gz: file not found"):
        src.check_integrity(["test"])
