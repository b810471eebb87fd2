"""Phantoms: deterministic, in the real layouts, with organ-like HU and learnable organs."""

import nibabel as nib
import numpy as np
import pytest

from datasets import generate_phantom, open_dataset
from datasets.phantom import ensure_phantom, phantom_splits
from swin_unet.config import DataConfig
from swin_unet.errors import InputError

SMALL = (48, 48, 12)


def arrays(root, pattern):
    files = sorted(root.rglob(pattern))
    assert files
    return [(nib.load(str(f)).get_fdata(), nib.load(str(f)).affine) for f in files]


def test_same_seed_same_volumes_other_seed_other_volumes(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate_phantom(tmp_path / name, "abdomen", n_cases=2, seed=seed, shape=SMALL)
    a, b, c = (arrays(tmp_path / n, "img*.nii.gz") for n in "abc")
    for (image_a, affine_a), (image_b, affine_b) in zip(a, b):
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(affine_a, affine_b)
    assert not np.array_equal(a[0][0], c[0][0])
    # Case i does not depend on how many cases are generated.
    generate_phantom(tmp_path / "d", "abdomen", n_cases=1, seed=3, shape=SMALL)
    np.testing.assert_array_equal(arrays(tmp_path / "d", "img*.nii.gz")[0][0], a[0][0])
    for name in ("e", "f"):
        generate_phantom(tmp_path / name, "cardiac", n_cases=1, seed=5, shape=(40, 32, 4))
    for (x, _), (y, _) in zip(arrays(tmp_path / "e", "*.nii.gz"), arrays(tmp_path / "f",
                                                                         "*.nii.gz")):
        np.testing.assert_array_equal(x, y)


def test_abdomen_has_every_organ_with_typical_hu_and_realistic_geometry(tmp_path):
    generate_phantom(tmp_path, "abdomen", n_cases=3, seed=0)
    src = open_dataset("phantom", DataConfig(root=str(tmp_path)))
    assert (src.name, src.layout, src.intensity, src.num_classes) == ("phantom", "synapse_raw",
                                                                      "ct", 9)
    assert (src.cases("train"), src.cases("val"), src.cases("test")) == (
        ["case0001"], ["case0002"], ["case0003"])
    src.check_integrity()
    typical_hu = {"aorta": (150, 250), "kidney_left": (130, 220), "kidney_right": (130, 220),
                  "liver": (40, 80), "spleen": (80, 130), "pancreas": (20, 60)}
    for case in (1, 2, 3):
        image = nib.load(str(tmp_path / f"RawData/Training/img/img{case:04d}.nii.gz"))
        hu = np.asarray(image.dataobj)
        assert image.shape == (160, 160, 40) and hu.dtype == np.int16
        spacing = image.header.get_zooms()
        assert 1.5 < spacing[0] == spacing[1] < 3.0 and 3.0 < spacing[2] < 6.0
        assert hu[0, 0].mean() < -900  # air outside the body
        raw = np.asarray(nib.load(str(tmp_path / f"RawData/Training/label/label{case:04d}"
                                                 f".nii.gz")).dataobj)
        assert (raw == 9).sum() > 0  # the IVC: painted, but not one of the 8 classes
        label = src.volumes("train" if case == 1 else "val" if case == 2 else "test")[0].label
        for index, organ in enumerate(src.class_names, start=1):
            voxels = (label == index).sum()
            # Big enough for a demo model at ~96 px: at least ~0.1 % of the volume.
            assert voxels > 1000, (case, organ, voxels)
            if organ in typical_hu:
                low, high = typical_hu[organ]
                assert low < np.median(hu[label == index]) < high, organ


def test_cardiac_phantom_reads_as_acdc_with_ed_larger_than_es(tmp_path):
    generate_phantom(tmp_path, "cardiac", n_cases=3, seed=0, shape=(64, 56, 6))
    src = open_dataset("phantom", DataConfig(root=str(tmp_path), layout="acdc_raw"))
    as_acdc = open_dataset("acdc", DataConfig(root=str(tmp_path), test_cases=["1"]))
    assert src.layout == as_acdc.layout == "acdc_raw" and src.class_names == ("RV", "Myo", "LV")
    src.check_integrity()
    ed, es = as_acdc.volumes("test")
    assert ed.case == "patient001_frame01" and es.case.startswith("patient001_frame")
    assert set(np.unique(ed.label)) == {0, 1, 2, 3}
    assert (ed.label == 3).sum() > 1.3 * (es.label == 3).sum()  # LV contracts
    assert ed.array.shape == (64, 56, 6)
    assert not np.allclose(ed.affine[:3, :3], np.diag(np.diag(ed.affine[:3, :3])))
    assert ed.spacing[2] >= 5.0


def test_open_dataset_generates_the_phantom_on_first_use(tmp_path):
    root = tmp_path / "phantom"
    src = open_dataset("phantom", DataConfig(root=str(root)))
    assert (root / "abdomen" / "phantom.json").is_file()
    assert [len(src.cases(s)) for s in ("train", "val", "test")] == [10, 3, 3]
    stamp = (root / "abdomen" / "RawData/Training/img/img0001.nii.gz").stat().st_mtime_ns
    open_dataset("phantom", DataConfig(root=str(root)))  # reused, not regenerated
    assert (root / "abdomen" / "RawData/Training/img/img0001.nii.gz").stat().st_mtime_ns == stamp


def test_phantom_targets_and_splits(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not an empty folder"):
        generate_phantom(tmp_path / "busy")
    with pytest.raises(InputError, match="not an empty folder"):
        ensure_phantom(tmp_path / "busy")
    with pytest.raises(InputError, match="phantom kind 'brain'"):
        generate_phantom(tmp_path / "x", kind="brain")
    cases = [f"case{i:04d}" for i in range(1, 17)]
    split = phantom_splits(cases)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (10, 3, 3)
    assert split["test"] == cases[-3:]
