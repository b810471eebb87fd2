"""No silently wrong result: NaN/Inf voxels and degenerate geometry are refused in every format."""

import gzip

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image

from datasets.readers import NiftiHeader, check_same_geometry, read_h5, read_nifti, read_npz
from dicom_writer import write_series
from swin_unet.errors import InputError
from swin_unet.io.headers import read_geometry
from swin_unet.io.images import read_image
from swin_unet.io.volumes import read_volume


def _poisoned(value, shape=(8, 8, 4)):
    array = np.random.default_rng(0).random(shape).astype(np.float32)
    array.flat[5] = value
    return array


def _nifti(path, array, pixdim=(1.0, 1.0, 1.0), srow=None, qoffset=(0.0, 0.0, 0.0)):
    """A NIfTI-1 file written byte by byte: nibabel's writer refuses the headers tested here."""
    header = nib.Nifti1Header()
    header.set_data_shape(array.shape)
    header.set_data_dtype(array.dtype)
    header["pixdim"][1:4] = pixdim
    header["vox_offset"] = 352
    header["qform_code"] = 0 if srow is not None else 1
    header["qoffset_x"], header["qoffset_y"], header["qoffset_z"] = qoffset
    if srow is not None:
        header["sform_code"] = 1
        header["srow_x"], header["srow_y"], header["srow_z"] = np.asarray(srow, float)[:3]
    data = header.binaryblock + b"\0" * 4 + array.tobytes(order="F")
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def _itk(path, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def _one_line(caught, *words):
    message = str(caught.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("name", ["scan.nii", "scan.nii.gz", "scan.mha", "scan.nrrd"])
def test_nan_or_inf_in_a_volume_file_is_refused_naming_it(tmp_path, name, value):
    path = tmp_path / name
    array = _poisoned(value)
    if name.startswith("scan.nii"):
        nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    else:
        _itk(path, array)
    with pytest.raises(InputError) as caught:
        read_volume(path)
    _one_line(caught, str(path), "NaN or infinite")


@pytest.mark.parametrize("value", [np.nan, -np.inf])
def test_nan_in_a_float_tiff_is_refused_not_predicted_as_background(tmp_path, value):
    path = tmp_path / "photo.tif"
    Image.fromarray(_poisoned(value, (16, 16)), mode="F").save(path)
    with pytest.raises(InputError) as caught:
        read_image(path)
    _one_line(caught, str(path), "NaN or infinite", "1 ")


def test_nan_in_npz_and_hdf5_arrays_is_refused_naming_file_and_key(tmp_path):
    npz, h5 = tmp_path / "case_001_volume_ED.npz", tmp_path / "case0001.npy.h5"
    label = np.zeros((4, 8, 8), np.uint8)
    np.savez(npz, img=_poisoned(np.nan, (4, 8, 8)), label=label)
    with h5py.File(h5, "w") as handle:
        handle["image"], handle["label"] = _poisoned(np.inf, (4, 8, 8)), label
    with pytest.raises(InputError) as caught:
        read_npz(npz, ("img", "label"))
    _one_line(caught, str(npz), "'img'", "NaN")
    with pytest.raises(InputError) as caught:
        read_h5(h5)
    _one_line(caught, str(h5), "'image'", "infinite")


def test_dicom_rescale_slope_nan_is_refused(tmp_path):
    files = write_series(tmp_path / "s", np.zeros((3, 8, 8), np.int16), shuffle=False)
    ds = pydicom.dcmread(files[1])
    ds.RescaleSlope = "NaN"
    ds.save_as(files[1])
    with pytest.raises(InputError) as caught:
        read_volume(tmp_path / "s")
    _one_line(caught, "NaN or infinite")


# (stored spacing, srow (sform) or None, qform origin, the words of the refusal)
DEGENERATE = {
    "pixdim inf": ((1.0, 1.0, np.inf), None, (0, 0, 0), "spacing (1.0, 1.0, inf)"),
    "zero slice spacing": ((1.0, 1.0, 0.0), None, (0, 0, 0), "spacing (1.0, 1.0, 0.0)"),
    "negative spacing": ((1.0, -1.0, 1.0), None, (0, 0, 0), "finite and positive"),
    "singular affine": ((1.0, 1.0, 1.0), [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]], (0, 0, 0),
                        "singular"),
    "zero axis": ((1.0, 1.0, 1.0), [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]], (0, 0, 0),
                  "singular"),
    "nan origin (sform)": ((1.0, 1.0, 1.0), [[1, 0, 0, np.nan], [0, 1, 0, 0], [0, 0, 1, 0]],
                           (0, 0, 0), "origin (nan, 0.0, 0.0)"),
    "nan origin (qform)": ((1.0, 1.0, 1.0), None, (0, np.nan, 0), "origin (0.0, nan, 0.0)"),
}


@pytest.mark.parametrize("reader", ["read_volume", "read_geometry", "read_nifti", "NiftiHeader"])
@pytest.mark.parametrize("attack", list(DEGENERATE))
def test_degenerate_nifti_geometry_is_refused_by_every_reader(tmp_path, attack, reader):
    pixdim, srow, qoffset, words = DEGENERATE[attack]
    path = _nifti(tmp_path / "scan.nii.gz", _poisoned(0.5), pixdim, srow, qoffset)
    read = {"read_volume": read_volume, "read_geometry": read_geometry,
            "read_nifti": read_nifti, "NiftiHeader": NiftiHeader}[reader]
    with pytest.raises(InputError) as caught:
        read(path)
    _one_line(caught, str(path), words)


def test_a_sound_nifti_written_byte_by_byte_reads(tmp_path):
    path = _nifti(tmp_path / "scan.nii", _poisoned(0.5), (0.7, 0.7, 2.5), qoffset=(3, 4, 5))
    volume = read_volume(path)
    assert volume.spacing == pytest.approx((0.7, 0.7, 2.5))
    np.testing.assert_allclose(volume.affine[:3, 3], (3, 4, 5))


ITK_ATTACKS = {  # (file, header text, replaced by, the words of the refusal)
    "nrrd zero axis": ("scan.nrrd", b"(0,0,1)", b"(0,0,0)", "spacing (1.0, 1.0, 0.0)"),
    "nrrd collinear axes": ("scan.nrrd", b"(0,1,0)", b"(1,0,0)", "singular"),
    "nrrd nan origin": ("scan.nrrd", b"origin: (0,0,0)", b"origin: (0,nan,0)", "unreadable"),
    "mha zero spacing": ("scan.mha", b"ElementSpacing = 1 1 1", b"ElementSpacing = 1 1 0",
                         "spacing (1.0, 1.0, 0.0)"),
    "mha singular matrix": ("scan.mha", b"TransformMatrix = 1 0 0 0 1 0 0 0 1",
                            b"TransformMatrix = 1 0 0 1 0 0 0 0 1", "singular"),
}


@pytest.mark.parametrize("attack", list(ITK_ATTACKS))
def test_degenerate_itk_geometry_is_refused(tmp_path, attack):
    name, old, new, words = ITK_ATTACKS[attack]
    path = _itk(tmp_path / name, _poisoned(0.5))
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))
    with pytest.raises(InputError) as caught:
        read_volume(path)
    _one_line(caught, str(path), words)


def test_duplicate_dicom_position_is_refused_naming_series_and_slices(tmp_path):
    write_series(tmp_path / "s", np.zeros((4, 8, 8), np.int16), heights=[0, 2.5, 2.5, 5.0],
                 number=4, description="Chest", shuffle=False)
    with pytest.raises(InputError) as caught:
        read_volume(tmp_path / "s")
    _one_line(caught, "series 4 'Chest'", "two slices at one position",
              "slice001.dcm and slice002.dcm")


def test_dicom_slices_of_mixed_sizes_name_the_series_and_both_slices(tmp_path):
    write_series(tmp_path / "s", np.zeros((3, 8, 8), np.int16), number=6, description="Head",
                 shuffle=False)
    write_series(tmp_path / "other", np.zeros((1, 10, 12), np.int16), shuffle=False)
    odd = pydicom.dcmread(tmp_path / "other" / "slice000.dcm")
    first = pydicom.dcmread(tmp_path / "s" / "slice000.dcm")
    odd.SeriesInstanceUID, odd.StudyInstanceUID = first.SeriesInstanceUID, first.StudyInstanceUID
    odd.ImagePositionPatient = [-40.0, -30.0, 12.0 + 7.5]
    odd.save_as(tmp_path / "s" / "slice003.dcm")
    with pytest.raises(InputError) as caught:
        read_volume(tmp_path / "s")
    _one_line(caught, "series 6 'Head'", "slice003.dcm", "10x12", "slice000.dcm 8x8")
    assert "itk" not in str(caught.value).lower()


def test_a_label_whose_origin_differs_names_the_origins(tmp_path):
    image = tmp_path / "image.nii"
    label = tmp_path / "label.nii"
    _nifti(image, _poisoned(0.5), (0.8, 0.8, 2.0), qoffset=(0, 0, 0))
    _nifti(label, np.zeros((8, 8, 4), np.uint8), (0.8, 0.8, 2.0), qoffset=(0, 0, 10))
    with pytest.raises(InputError) as caught:
        check_same_geometry(NiftiHeader(image), NiftiHeader(label))
    _one_line(caught, str(label), "same spacing", "origin (0.0, 0.0, 10.0) mm in the label",
              "(0.0, 0.0, 0.0) mm in the image")
