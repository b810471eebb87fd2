"""ACDC readers: raw per-patient NIfTI (Info.cfg, ED/ES, _gt) and MT-UNet's npz release."""

import nibabel as nib
import numpy as np
import pytest

from datasets import open_dataset
from datasets.cases import ACDC_TEST, ACDC_VAL
from swin_unet.config import DataConfig
from swin_unet.errors import InputError

SHAPE = (30, 22, 4)  # non-square in-plane, few thick slices
SPACING = (1.5, 1.4, 10.0)


def oblique_affine():
    angle = 0.4
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                         [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(SPACING)
    affine[:3, 3] = (-12.0, 30.0, 7.5)
    return affine


def write_patient(training, number, ed=1, es=12, info=True, scale=1.0):
    folder = training / f"patient{number:03d}"
    folder.mkdir(parents=True)
    if info:
        (folder / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: DCM\nHeight: 180.0\n"
                                         f"NbFrame: 30\nWeight: 80.0\n")
    rng = np.random.default_rng(number)
    for frame in (ed, es):
        image = (rng.random(SHAPE) * 300 * scale + 50).astype(np.int16)
        label = np.zeros(SHAPE, dtype=np.uint8)
        label[5:10, 4:8] = 1
        label[12:16, 4:18] = 2
        label[13:15, 6:16] = 3 if frame == ed else 0  # the LV only at ED
        stem = folder / f"patient{number:03d}_frame{frame:02d}"
        nib.save(nib.Nifti1Image(image, oblique_affine()), f"{stem}.nii.gz")
        nib.save(nib.Nifti1Image(label, oblique_affine()), f"{stem}_gt.nii.gz")
    return folder


def test_raw_frames_spacing_and_per_volume_normalisation(tmp_path):
    training = tmp_path / "training"
    write_patient(training, 2, ed=1, es=12, scale=5.0)
    write_patient(training, 5, ed=1, es=9)
    src = open_dataset("acdc", DataConfig(root=str(tmp_path), train_cases=["patient005"],
                                          val_cases=[], test_cases=["2"]))
    assert (src.layout, src.class_names, src.num_classes) == ("acdc_raw", ("RV", "Myo", "LV"), 4)
    assert src.intensity == "zscore"
    volumes = src.volumes("test")
    assert volumes.names == ["patient002_frame01", "patient002_frame12"]
    ed, es = volumes[0], volumes[1]
    assert ed.array.shape == SHAPE
    assert ed.array.mean() == pytest.approx(0.0, abs=1e-4)
    assert ed.array.std() == pytest.approx(1.0, abs=1e-3)
    assert ed.spacing == pytest.approx(SPACING)
    np.testing.assert_allclose(ed.affine, oblique_affine(), atol=1e-5)
    assert set(np.unique(ed.label)) == {0, 1, 2, 3}
    assert set(np.unique(es.label)) == {0, 1, 2}
    assert str(ed.path).endswith("patient002_frame01.nii.gz")
    ds = src.train_slices(16, seed=0)
    assert len(ds) == 2 * SHAPE[2]  # ED and ES frames of patient005
    assert ds[0]["image"].shape == (1, 16, 16)


def test_raw_default_split_root_variants_and_ids(tmp_path):
    write_patient(tmp_path / "database" / "training", 2)
    for root in (tmp_path, tmp_path / "database" / "training"):
        src = open_dataset("acdc", DataConfig(root=str(root)))
        assert src.cases("test") == list(ACDC_TEST)
        assert src.cases("val") == list(ACDC_VAL)
        assert len(src.cases("train")) == 70
        assert not set(src.cases("train")) & (set(ACDC_TEST) | set(ACDC_VAL))
    src = open_dataset("acdc", DataConfig(root=str(tmp_path), test_cases=[2, "002",
                                                                          "patient002"]))
    assert src.cases("test") == ["patient002"]


def test_missing_info_cfg_is_named(tmp_path):
    write_patient(tmp_path / "training", 2, info=False)
    src = open_dataset("acdc", DataConfig(root=str(tmp_path), test_cases=["2"]))
    with pytest.raises(InputError, match=r"patient002/Info\.cfg: file not found"):
        src.check_integrity(["test"])


def write_release(root):
    rng = np.random.default_rng(0)
    for folder, number in (("train", 1), ("valid", 19)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for phase in ("ED", "ES"):
            for z in range(3):
                image = (rng.random((20, 16)) * 100).astype(np.float32)
                label = np.zeros((20, 16), dtype=np.float32)
                label[z + 1, :] = z + 1
                np.savez(root / folder / f"case_{number:03d}_slice{phase}_{z}.npz", img=image,
                         label=label)
    (root / "test").mkdir()
    volume = (rng.random((5, 20, 16)) * 100).astype(np.float32)  # (slices, H, W)
    label = np.zeros((5, 20, 16), dtype=np.float32)
    label[:, 3:6, 3:9] = 3
    np.savez(root / "test" / "case_002_volume_ED.npz", img=volume, label=label)
    return volume, label


def test_release_slices_volumes_and_its_own_split(tmp_path):
    volume, label = write_release(tmp_path)
    src = open_dataset("acdc", DataConfig(root=str(tmp_path), augment=False))
    assert src.layout == "acdc_npz"
    assert (src.cases("train"), src.cases("val"), src.cases("test")) == (
        ["patient001"], ["patient019"], ["patient002"])
    item = src.volumes("test")[0]
    assert item.case == "patient002_ED"
    assert item.array.shape == (20, 16, 5)
    np.testing.assert_array_equal(item.label, np.moveaxis(label, 0, -1))
    # Per-volume z-score, as for the raw data.
    assert item.array.mean() == pytest.approx(0.0, abs=1e-4)
    assert item.spacing == (1.0, 1.0, 1.0)
    val = src.volumes("val")
    assert val.names == ["patient019_ED", "patient019_ES"]
    stacked = val[0].label
    assert stacked.shape == (20, 16, 3)
    for z in range(3):
        assert (stacked[z + 1, :, z] == z + 1).all()
    assert len(src.train_slices(16, seed=0)) == 6
    with pytest.raises(InputError, match="patient007"):
        open_dataset("acdc", DataConfig(root=str(tmp_path), test_cases=["7"])).volumes("test")


@pytest.mark.parametrize("image_shape, label_shape, words", [
    ((20, 16, 5), (20, 16, 5), r"'img' of shape \(20, 16, 5\) does not fit .*slices-first"),
    ((5, 20, 16), (5, 16, 20), r"expected 3-D 'img' and 'label' of one shape"),
    ((5, 20), (5, 20), r"expected 3-D"),
])
def test_release_test_volume_is_read_slices_first_or_refused(tmp_path, image_shape, label_shape,
                                                              words):
    write_release(tmp_path)
    path = tmp_path / "test" / "case_002_volume_ED.npz"
    np.savez(path, img=np.zeros(image_shape, np.float32), label=np.zeros(label_shape, np.float32))
    src = open_dataset("acdc", DataConfig(root=str(tmp_path)))
    for read in (lambda: src.check_integrity(["test"]), lambda: src.volumes("test")[0]):
        with pytest.raises(InputError, match=r"case_002_volume_ED\.npz: " + words):
            read()


def test_release_slices_with_a_gap_and_class_names_override(tmp_path):
    write_release(tmp_path)
    (tmp_path / "train" / "case_001_sliceES_1.npz").unlink()
    with pytest.raises(InputError, match=r"patient001 ES has no slice 1 "):
        open_dataset("acdc", DataConfig(root=str(tmp_path))).entries("train")
    src = open_dataset("acdc", DataConfig(root=str(tmp_path), allow_slice_gaps=True,
                                          class_names=["right_ventricle", "myocardium",
                                                       "left_ventricle"]))
    assert [v.array.shape[-1] for v in src.volumes("train")] == [3, 2]
    assert src.class_names == ("right_ventricle", "myocardium", "left_ventricle")
