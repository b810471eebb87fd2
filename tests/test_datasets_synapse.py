"""Synapse readers: raw BTCV NIfTI and TransUNet's npz/h5 release, from files written here."""

import logging

import h5py
import nibabel as nib
import numpy as np
import pytest

from datasets import open_dataset
from datasets.cases import SYNAPSE_TEST, SYNAPSE_TRAIN
from swin_unet.config import DataConfig, config_from_dict
from swin_unet.errors import InputError

SHAPE = (24, 20, 5)  # non-square in-plane, few slices
AFFINE = np.array([[-0.8, 0, 0, 10.0], [0, -0.75, 0, 20.0], [0, 0, 3.0, -30.0], [0, 0, 0, 1]])


def write_nifti(path, array, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def raw_label():
    """Every raw BTCV label 0..13, in slabs along x, the same on every slice."""
    label = np.zeros(SHAPE, dtype=np.uint8)
    for raw in range(14):
        label[raw + 2:raw + 3] = raw  # x = raw + 2
    return label


def write_raw_case(folder, number, hu=None, label=None):
    hu = hu if hu is not None else np.full(SHAPE, 75, dtype=np.int16)
    write_nifti(folder / "img" / f"img{number:04d}.nii.gz", hu)
    write_nifti(folder / "label" / f"label{number:04d}.nii.gz",
                label if label is not None else raw_label())


@pytest.fixture
def raw_root(tmp_path):
    folder = tmp_path / "RawData" / "Training"
    hu = np.full(SHAPE, 75, dtype=np.int16)
    hu[0] = -1000
    hu[1] = 275
    hu[-1] = 2000
    write_raw_case(folder, 1, hu)
    write_raw_case(folder, 5)
    write_raw_case(folder, 6)
    return tmp_path


def test_raw_labels_map_to_the_eight_organs_and_geometry_is_carried(raw_root):
    src = open_dataset("synapse", DataConfig(root=str(raw_root), train_cases=["5", "img0006"],
                                             test_cases=["0001"]))
    assert (src.name, src.layout, src.intensity, src.in_chans) == ("synapse", "synapse_raw",
                                                                  "ct", 1)
    assert src.class_names == ("aorta", "gallbladder", "kidney_left", "kidney_right", "liver",
                               "pancreas", "spleen", "stomach")
    assert src.num_classes == 9
    assert src.cases("train") == ["case0005", "case0006"]
    assert src.cases("val") == []
    volumes = src.volumes("test")
    assert len(volumes) == 1 and volumes.names == ["case0001"]
    item = volumes[0]
    assert item.case == "case0001"
    assert item.array.shape == SHAPE and item.array.dtype == np.float32
    # HU clipped to [-125, 275] and scaled to [0, 1].
    assert item.array[0].max() == 0.0 and item.array[1].min() == pytest.approx(1.0)
    assert item.array[5, 5, 2] == pytest.approx(0.5)
    assert item.array[-1].min() == pytest.approx(1.0)
    expected = {8: 1, 4: 2, 3: 3, 2: 4, 6: 5, 11: 6, 1: 7, 7: 8}
    for raw in range(14):
        assert (item.label[raw + 2] == expected.get(raw, 0)).all(), raw
    assert item.spacing == pytest.approx((0.8, 0.75, 3.0))
    np.testing.assert_allclose(item.affine, AFFINE)
    assert str(item.path).endswith("img0001.nii.gz")


def test_default_split_is_the_standard_one_and_case_ids_are_normalised(raw_root):
    src = open_dataset("synapse", DataConfig(root=str(raw_root)))
    assert src.cases("train") == list(SYNAPSE_TRAIN) and len(SYNAPSE_TRAIN) == 18
    assert src.cases("test") == list(SYNAPSE_TEST) and len(SYNAPSE_TEST) == 12
    assert src.cases("val") == []
    # YAML reads 0005 as the integer 5; the config turns it into "5".
    cfg = config_from_dict({"data": {"root": str(raw_root), "train_cases": [5, "case0006"],
                                     "val_cases": ["img0001"]}}).data
    src = open_dataset("synapse", cfg)
    assert src.cases("train") == ["case0005", "case0006"]
    assert src.cases("val") == ["case0001"]
    with pytest.raises(InputError, match=r"data.train_cases\[0\].*'abc'"):
        open_dataset("synapse", DataConfig(root=str(raw_root), train_cases=["abc"]))


@pytest.mark.parametrize("sub", ["", "RawData", "RawData/Training"])
def test_raw_root_may_point_at_any_level(raw_root, sub):
    src = open_dataset("synapse", DataConfig(root=str(raw_root / sub) if sub else str(raw_root),
                                             test_cases=["1"]))
    assert src.layout == "synapse_raw"
    assert src.volumes("test")[0].case == "case0001"


def test_every_training_slice_is_one_sample_at_img_size(raw_root):
    src = open_dataset("synapse", DataConfig(root=str(raw_root), train_cases=["5", "6"],
                                             augment=False))
    ds = src.train_slices((32, 16), seed=3)
    assert len(ds) == 2 * SHAPE[2]
    item = ds[7]
    assert item["image"].shape == (1, 32, 16) and item["image"].dtype.is_floating_point
    assert item["label"].shape == (1, 32, 16) and str(item["label"].dtype) == "torch.int64"
    assert set(np.unique(item["label"].numpy())) <= set(range(9))
    assert ds.locate(7) == ("case0006", 2)
    # Without augmentation the slice is the volume's slice, resized.
    volume = src.volumes("train")[1]
    assert set(np.unique(item["label"])) == set(np.unique(volume.label[:, :, 2]))
    assert item["image"].mean().item() == pytest.approx(volume.array[:, :, 2].mean(),
                                                        abs=1e-3)


def write_release(root, image_value=0.25):
    rng = np.random.default_rng(0)
    for z in range(3):
        image = np.full((24, 20), image_value + 0.1 * z, dtype=np.float32)
        label = np.zeros((24, 20), dtype=np.float32)
        label[z + 2, :] = 1 + z  # slice z holds class z + 1 on row z + 2
        (root / "train_npz").mkdir(parents=True, exist_ok=True)
        np.savez(root / "train_npz" / f"case0005_slice{z:03d}.npz", image=image, label=label)
    volume = rng.random((4, 24, 20)).astype(np.float32)  # (slices, H, W)
    vol_label = np.floor(rng.random((4, 24, 20)) * 9).astype(np.float32)
    (root / "test_vol_h5").mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "test_vol_h5" / "case0001.npy.h5", "w") as handle:
        handle["image"] = volume
        handle["label"] = vol_label
    return volume, vol_label


def test_release_npz_slices_and_h5_volumes(tmp_path, caplog):
    volume, vol_label = write_release(tmp_path)
    with caplog.at_level(logging.WARNING):
        src = open_dataset("synapse", DataConfig(root=str(tmp_path), train_cases=["5"],
                                                 val_cases=["5"], test_cases=["1"],
                                                 augment=False))
    assert "no voxel spacing" in caplog.text
    assert src.layout == "synapse_npz" and src.intensity == "ct"
    item = src.volumes("test")[0]
    assert item.case == "case0001"
    assert item.array.shape == (24, 20, 4)  # (slices, H, W) -> (H, W, slices)
    # Already windowed to [0, 1] in the release: not normalised a second time.
    np.testing.assert_array_equal(item.array, np.moveaxis(volume, 0, -1))
    np.testing.assert_array_equal(item.label, np.moveaxis(vol_label, 0, -1))
    assert item.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(item.affine, np.eye(4))
    # A case stored as slices also reads as a volume, slices in order.
    val = src.volumes("val")[0]
    assert val.array.shape == (24, 20, 3)
    for z in range(3):
        assert (val.label[z + 2, :, z] == 1 + z).all()
        assert val.array[0, 0, z] == pytest.approx(0.25 + 0.1 * z)
    assert len(src.train_slices(16, seed=0)) == 3


def test_release_default_split_and_missing_case(tmp_path):
    write_release(tmp_path)
    src = open_dataset("synapse", DataConfig(root=str(tmp_path)))
    assert src.cases("train") == list(SYNAPSE_TRAIN)
    with pytest.raises(InputError, match=r"case0002\.npy\.h5: file not found.*case0002_slice"):
        open_dataset("synapse", DataConfig(root=str(tmp_path), test_cases=["2"])) \
            .check_integrity(["test"])


def test_trailing_singleton_axis_is_the_same_grid(tmp_path):
    folder = tmp_path / "Training"
    write_raw_case(folder, 1, hu=np.full(SHAPE + (1,), 75, dtype=np.int16))
    src = open_dataset("synapse", DataConfig(root=str(tmp_path), test_cases=["1"]))
    src.check_integrity(["test"], read_images=True)
    assert src.volumes("test")[0].array.shape == SHAPE


def test_release_case_with_missing_slice_numbers_is_refused_or_stacked_with_a_warning(
        tmp_path, caplog):
    write_release(tmp_path)
    folder = tmp_path / "train_npz"
    for z in (3, 6):  # slices 4 and 5 missing
        np.savez(folder / f"case0005_slice{z:03d}.npz", image=np.full((24, 20), 0.5, np.float32),
                 label=np.zeros((24, 20), np.float32))
    cfg = dict(root=str(tmp_path), train_cases=["5"], test_cases=["1"])
    with pytest.raises(InputError, match=r"train_npz: case0005 has no slice 4-5 .*"
                                         r"data\.allow_slice_gaps"):
        open_dataset("synapse", DataConfig(**cfg)).check_integrity(["train"])
    with caplog.at_level(logging.WARNING):
        src = open_dataset("synapse", DataConfig(**cfg, allow_slice_gaps=True))
        volume = src.volumes("train")[0]
    assert volume.array.shape == (24, 20, 5)
    assert "case0005 has no slice 4-5; stacked without them" in caplog.text
    # Two files with one slice number: refused, naming both.
    np.savez(folder / "case0005_slice3.npz", image=np.zeros((24, 20), np.float32),
             label=np.zeros((24, 20), np.float32))
    with pytest.raises(InputError, match=r"slice number 3 of case0005 again"):
        open_dataset("synapse", DataConfig(**cfg, allow_slice_gaps=True)).volumes("train")


def test_release_image_outside_unit_range_is_an_error_unless_the_mode_is_set(tmp_path):
    write_release(tmp_path)
    with h5py.File(tmp_path / "test_vol_h5" / "case0001.npy.h5", "r+") as handle:
        hu = handle["image"][...] * 400 - 125  # HU in the CT window [-125, 275]
        del handle["image"]
        handle["image"] = hu
    cfg = dict(root=str(tmp_path), train_cases=["5"], test_cases=["1"])
    with pytest.raises(InputError, match=r"case0001\.npy\.h5: intensities span \[-12\d\.\d+, "
                                         r"27\d\.\d+\].*data\.intensity=ct"):
        open_dataset("synapse", DataConfig(**cfg)).volumes("test")[0]
    # Rounding just outside [0, 1] still counts as windowed.
    with h5py.File(tmp_path / "test_vol_h5" / "case0001.npy.h5", "r+") as handle:
        windowed = (hu + 125) / 400
        windowed[0, 0, 0], windowed[0, 0, 1] = -1e-4, 1 + 1e-4
        handle["image"][...] = windowed
    item = open_dataset("synapse", DataConfig(**cfg)).volumes("test")[0]
    assert item.array[0, 0, 0] == pytest.approx(-1e-4)
    # Told the file holds HU, the reader windows it.
    with h5py.File(tmp_path / "test_vol_h5" / "case0001.npy.h5", "r+") as handle:
        handle["image"][...] = hu
    item = open_dataset("synapse", DataConfig(**cfg, intensity="ct")).volumes("test")[0]
    np.testing.assert_allclose(item.array, np.moveaxis((hu + 125) / 400, 0, -1), atol=1e-5)


def test_release_h5_volume_must_be_slices_first(tmp_path):
    write_release(tmp_path)
    with h5py.File(tmp_path / "test_vol_h5" / "case0001.npy.h5", "w") as handle:
        handle["image"] = np.zeros((24, 20, 4), np.float32)  # slices last
        handle["label"] = np.zeros((24, 20, 4), np.float32)
    src = open_dataset("synapse", DataConfig(root=str(tmp_path), test_cases=["1"]))
    for read in (lambda: src.check_integrity(["test"]), lambda: src.volumes("test")[0]):
        with pytest.raises(InputError, match=r"case0001\.npy\.h5: 'image' of shape \(24, 20, 4\)"
                                             r" does not fit .*\[D, H, W\]"):
            read()


@pytest.mark.parametrize("layout", ["synapse_npz", "synapse_raw"])
def test_class_names_override_any_layout_checked_against_the_class_count(raw_root, tmp_path,
                                                                        layout):
    root = tmp_path if layout == "synapse_npz" else raw_root
    if layout == "synapse_npz":
        write_release(tmp_path)
    ascending = ["spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach",
                 "aorta", "pancreas"]
    src = open_dataset("synapse", DataConfig(root=str(root), layout=layout,
                                             class_names=ascending))
    assert list(src.class_names) == ascending and src.num_classes == 9
    from datasets import class_names_for
    assert class_names_for("synapse", layout, str(root), ascending) == ascending
    with pytest.raises(InputError, match=r"data\.class_names.*7 names given.*8 foreground"):
        open_dataset("synapse", DataConfig(root=str(root), layout=layout,
                                           class_names=ascending[:7]))
    with pytest.raises(InputError, match=r"data\.class_names.*distinct"):
        open_dataset("synapse", DataConfig(root=str(root), layout=layout,
                                           class_names=["liver"] * 8))
