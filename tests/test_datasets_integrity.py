"""The integrity check and input errors: each names the file and the problem in one line."""

import gzip

import h5py
import nibabel as nib
import numpy as np
import pytest

from datasets import open_dataset
from swin_unet.config import DataConfig
from swin_unet.errors import InputError

SHAPE = (40, 36, 6)
AFFINE = np.diag([0.8, 0.8, 3.0, 1.0])


def write_case(folder, number, image=None, label=None, image_affine=AFFINE):
    rng = np.random.default_rng(number)
    image = image if image is not None else (rng.random(SHAPE) * 1000 - 500).astype(np.int16)
    label = label if label is not None else (rng.random(SHAPE) * 14).astype(np.uint8)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "label").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, image_affine), str(folder / "img" / f"img{number:04d}.nii.gz"))
    nib.save(nib.Nifti1Image(label, AFFINE), str(folder / "label" / f"label{number:04d}.nii.gz"))


def source(root, **kwargs):
    cfg = dict(root=str(root), train_cases=["1"], val_cases=[], test_cases=["2"])
    cfg.update(kwargs)
    return open_dataset("synapse", DataConfig(**cfg))


def one_line(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_valid_data_passes(tmp_path):
    write_case(tmp_path, 1)
    write_case(tmp_path, 2)
    source(tmp_path).check_integrity(read_images=True)


def test_truncated_image_is_caught_from_its_size(tmp_path):
    write_case(tmp_path, 1)
    write_case(tmp_path, 2)
    path = tmp_path / "img" / "img0002.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    src = source(tmp_path)
    with pytest.raises(InputError) as exc_info:
        src.check_integrity()
    message = one_line(exc_info)
    assert message.startswith(str(path)) and "truncated" in message
    with pytest.raises(InputError, match="img0002.nii.gz: unreadable or truncated"):
        src.volumes("test")[0]


def test_truncated_label_and_npz_and_h5(tmp_path):
    write_case(tmp_path, 1)
    write_case(tmp_path, 2)
    path = tmp_path / "label" / "label0001.nii.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(InputError, match=r"label0001\.nii\.gz: unreadable or truncated"):
        source(tmp_path).check_integrity(["train"])
    release = tmp_path / "release"
    (release / "train_npz").mkdir(parents=True)
    np.savez(release / "train_npz" / "case0005_slice000.npz",
             image=np.zeros((8, 8), np.float32), label=np.zeros((8, 8), np.float32))
    npz = release / "train_npz" / "case0005_slice000.npz"
    npz.write_bytes(npz.read_bytes()[:300])
    (release / "test_vol_h5").mkdir()
    h5_path = release / "test_vol_h5" / "case0001.npy.h5"
    with h5py.File(h5_path, "w") as handle:
        handle["image"] = np.zeros((3, 8, 8), np.float32)
        handle["label"] = np.zeros((3, 8, 8), np.float32)
    h5_path.write_bytes(h5_path.read_bytes()[:1000])
    src = open_dataset("synapse", DataConfig(root=str(release), train_cases=["5"],
                                             test_cases=["1"]))
    with pytest.raises(InputError, match=r"case0005_slice000\.npz: unreadable or truncated npz"):
        src.check_integrity(["train"])
    with pytest.raises(InputError, match=r"case0001\.npy\.h5: unreadable or truncated HDF5"):
        src.check_integrity(["test"])


def test_shape_and_geometry_mismatch_name_the_label(tmp_path):
    write_case(tmp_path, 1)
    write_case(tmp_path, 2, label=np.zeros((40, 36, 5), np.uint8))
    with pytest.raises(InputError) as exc_info:
        source(tmp_path).check_integrity()
    message = one_line(exc_info)
    assert "label0002.nii.gz: label shape (40, 36, 5) does not match the image shape " \
           "(40, 36, 6)" in message
    write_case(tmp_path, 2, image_affine=np.diag([0.8, 0.8, 2.0, 1.0]))
    with pytest.raises(InputError, match=r"label0002\.nii\.gz: label affine differs"):
        source(tmp_path).check_integrity()


def test_out_of_range_non_integer_and_nan_labels(tmp_path):
    write_case(tmp_path, 1)
    label = np.zeros(SHAPE, np.int16)
    label[3, 3, 3] = 14
    write_case(tmp_path, 2, label=label)
    with pytest.raises(InputError) as exc_info:
        source(tmp_path).check_integrity()
    assert one_line(exc_info).endswith("label0002.nii.gz: label value 14 is outside the Synapse "
                                       "raw label map (allowed: 0-13)")
    with pytest.raises(InputError, match="label value 14"):
        source(tmp_path).volumes("test")[0]  # reading for evaluation checks it too
    label = np.zeros(SHAPE, np.float32)
    label[1, 1, 1] = 2.5
    write_case(tmp_path, 2, label=label)
    with pytest.raises(InputError, match=r"label0002\.nii\.gz: label value 2\.5 is not an integer"):
        source(tmp_path).check_integrity()
    label[1, 1, 1] = np.nan
    write_case(tmp_path, 2, label=label)
    with pytest.raises(InputError, match=r"label0002\.nii\.gz: label contains NaN"):
        source(tmp_path).check_integrity()


def test_nan_image_is_caught_when_images_are_read(tmp_path):
    image = np.zeros(SHAPE, np.float32)
    image[0, 0, 0] = np.nan
    write_case(tmp_path, 1, image=image)
    write_case(tmp_path, 2)
    src = source(tmp_path)
    src.check_integrity()  # headers only: a NaN needs the voxels
    with pytest.raises(InputError, match=r"img0001\.nii\.gz: image contains NaN"):
        src.check_integrity(read_images=True)
    with pytest.raises(InputError, match=r"img0001\.nii\.gz: image contains NaN"):
        src.train_slices(16)


def test_missing_case_and_missing_root(tmp_path):
    write_case(tmp_path, 1)
    with pytest.raises(InputError) as exc_info:
        source(tmp_path).check_integrity()
    assert one_line(exc_info) == f"{tmp_path / 'img' / 'img0002.nii.gz'}: file not found"
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError) as exc_info:
        open_dataset("synapse", DataConfig(root=str(missing)))
    message, details = str(exc_info.value), exc_info.value.details
    assert message == f"{missing}: Synapse data not found"
    assert "RawData/Training/img/img0001.nii.gz" in details and "train_npz/" in details
    assert "synapse.org" in details
    with pytest.raises(InputError) as exc_info:
        open_dataset("acdc", DataConfig(root=str(missing)))
    assert "patient001_frame01_gt.nii.gz" in exc_info.value.details
    assert "creatis.insa-lyon.fr" in exc_info.value.details


def test_bad_names_and_config_values(tmp_path):
    write_case(tmp_path, 1)
    with pytest.raises(InputError, match="unknown dataset 'brats'"):
        open_dataset("brats", DataConfig(root=str(tmp_path)))
    with pytest.raises(InputError, match=r"data.layout.*'acdc_raw' is not a layout of synapse"):
        open_dataset("synapse", DataConfig(root=str(tmp_path), layout="acdc_raw"))
    with pytest.raises(InputError, match=r"data.intensity.*'hu'"):
        open_dataset("synapse", DataConfig(root=str(tmp_path), intensity="hu"))
    with pytest.raises(InputError, match=r"data.cache_dtype"):
        open_dataset("synapse", DataConfig(root=str(tmp_path), cache_dtype="int8"))
    with pytest.raises(InputError, match="unknown split 'valid'"):
        source(tmp_path).cases("valid")


def _rewrite_gzip(path, edit):
    raw = bytearray(gzip.decompress(path.read_bytes()))
    edit(raw)
    path.write_bytes(gzip.compress(bytes(raw)))


def test_corrupt_gzip_stream_and_broken_header_name_the_file(tmp_path):
    """Errors from zlib and nibabel's header checks are the user's broken file, not a crash."""
    write_case(tmp_path, 1)
    write_case(tmp_path, 2)
    label = tmp_path / "label" / "label0001.nii.gz"
    data = bytearray(label.read_bytes())
    for i in range(20, 84):  # inside the compressed header: a corrupt deflate stream
        data[i] ^= 0x5A
    label.write_bytes(bytes(data))
    with pytest.raises(InputError) as exc_info:
        source(tmp_path).check_integrity(["train"])
    assert one_line(exc_info).startswith(str(label))
    # An unknown voxel data type code in the header (bytes 70-71 of a NIfTI-1 header).
    image = tmp_path / "img" / "img0002.nii.gz"
    _rewrite_gzip(image, lambda raw: raw.__setitem__(slice(70, 72), (999).to_bytes(2, "little")))
    with pytest.raises(InputError) as exc_info:
        source(tmp_path).check_integrity(["test"])
    assert one_line(exc_info).startswith(str(image))
