"""Reading scans and writing label volumes that keep the scan's exact geometry."""

import math

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from swin_unet.errors import InputError
from swin_unet.io.volumes import Volume, find_inputs, read_volume, write_labels


def rotated_affine():
    """A voxel-to-world matrix with a 20-degree rotation, anisotropic spacing and a translation."""
    angle = math.radians(20.0)
    rotation = np.array([[math.cos(angle), -math.sin(angle), 0.0],
                         [math.sin(angle), math.cos(angle), 0.0],
                         [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.7, 2.5])
    affine[:3, 3] = (-101.5, 33.25, 7.0)
    return affine


def oblique_direction():
    """Row-major 3x3 direction cosines: 25 degrees about z after 10 degrees about x."""
    a, b = math.radians(25.0), math.radians(10.0)
    about_z = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0],
                        [0.0, 0.0, 1.0]])
    about_x = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(b), -math.sin(b)],
                        [0.0, math.sin(b), math.cos(b)]])
    return tuple((about_z @ about_x).reshape(-1))


def write_dicom_series(folder, volume_zyx, spacing=(0.8, 0.7, 2.5), origin=(-40.0, 30.0, 12.0),
                       direction=None):
    """Write int16 ``volume_zyx`` (Z, Y, X) as one CT series, one file per slice.

    ``direction`` (row-major 3x3, default :func:`oblique_direction`) tilts the slices so that a
    prediction that lost the direction would not overlay the scan.
    Returns the SimpleITK image the series should read back as.
    """
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(volume_zyx.astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction or oblique_direction())
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.4242"
    direction = image.GetDirection()
    for z in range(image.GetDepth()):
        piece = image[:, :, z]
        position = image.TransformIndexToPhysicalPoint((0, 0, z))
        tags = {
            "0008|0060": "CT", "0010|0010": "Phantom^Test", "0010|0020": "T1",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1.4241", "0020|000e": series_uid,
            "0020|0013": str(z + 1), "0008|0018": f"{series_uid}.{z + 1}",
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            # Row then column direction cosines: the first two columns of the direction.
            "0020|0037": "\\".join(f"{v:.6f}" for v in direction[0::3] + direction[1::3]),
            "0018|0050": f"{spacing[2]:.6f}", "0028|1052": "0", "0028|1053": "1",
        }
        for key, value in tags.items():
            piece.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(piece)
    return image


def test_nifti_prediction_keeps_a_rotated_translated_affine(tmp_path):
    affine = rotated_affine()
    data = np.random.default_rng(0).normal(0, 100, (12, 10, 5)).astype(np.float32)
    source = nib.Nifti1Image(data, affine)
    source.header.set_qform(affine, code=1)
    source.header.set_sform(affine, code=2)
    source.header["cal_min"], source.header["cal_max"] = -1024.0, 3071.0  # a CT display range
    nib.save(source, tmp_path / "scan.nii.gz")
    volume = read_volume(tmp_path / "scan.nii.gz")
    assert volume.case == "scan" and volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array, data)
    np.testing.assert_allclose(volume.spacing, (0.8, 0.7, 2.5), rtol=1e-6)
    labels = (data > 0).astype(np.uint8)
    write_labels(labels, volume, tmp_path / "pred.nii.gz")
    out = nib.load(tmp_path / "pred.nii.gz")
    np.testing.assert_allclose(out.affine, affine, atol=1e-5)
    np.testing.assert_allclose(out.get_qform(), affine, atol=1e-5)
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (1, 2)
    assert out.get_data_dtype() == np.uint8
    # The scan's display range would hide the labels in viewers that honour it (FSLeyes).
    assert (float(out.header["cal_min"]), float(out.header["cal_max"])) == (0.0, 0.0)
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), labels)
    assert not list(tmp_path.glob(".tmp*"))


def test_scaled_nifti_labels_are_written_unscaled(tmp_path):
    source = nib.Nifti1Image(np.zeros((4, 4, 3), np.int16), np.eye(4))
    source.header.set_slope_inter(2.0, -1024.0)
    nib.save(source, tmp_path / "ct.nii")
    volume = read_volume(tmp_path / "ct.nii")
    np.testing.assert_allclose(volume.array, -1024.0)
    write_labels(np.full((4, 4, 3), 3, np.uint8), volume, tmp_path / "pred.nii")
    assert np.all(nib.load(tmp_path / "pred.nii").get_fdata() == 3)


def test_trailing_singleton_axes_are_dropped(tmp_path):
    """Some tools write a 3-D label map as (X, Y, Z, 1): the same grid as (X, Y, Z)."""
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1:4, 2:4, 1:3] = 2
    nib.save(nib.Nifti1Image(labels[..., None, None], np.eye(4)), tmp_path / "label.nii.gz")
    volume = read_volume(tmp_path / "label.nii.gz", dtype=None)
    assert volume.array.shape == (6, 5, 4)
    np.testing.assert_array_equal(volume.array, labels)


def test_dicom_series_reads_in_nifti_axis_order_and_prediction_keeps_its_geometry(tmp_path):
    zyx = np.arange(6 * 9 * 11, dtype=np.int16).reshape(6, 9, 11) - 300
    written = write_dicom_series(tmp_path / "series", zyx)
    [(case, folder, series_id)] = find_inputs(tmp_path / "series")
    assert case == "series" and series_id
    volume = read_volume(folder, case, series_id)
    assert volume.array.shape == (11, 9, 6)
    np.testing.assert_allclose(volume.array, zyx.transpose(2, 1, 0))
    np.testing.assert_allclose(volume.spacing, written.GetSpacing(), rtol=1e-5)
    labels = (volume.array > 0).astype(np.uint8)
    write_labels(labels, volume, tmp_path / "series.nii.gz")
    out = sitk.ReadImage(str(tmp_path / "series.nii.gz"))
    np.testing.assert_allclose(out.GetOrigin(), written.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(out.GetSpacing(), written.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(out.GetDirection(), written.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), labels.transpose(2, 1, 0))
    # The same geometry seen through nibabel: our affine for the DICOM is the NIfTI's.
    np.testing.assert_allclose(nib.load(tmp_path / "series.nii.gz").affine, volume.affine,
                               atol=1e-4)


def test_affine_only_volume_is_written_with_that_affine(tmp_path):
    affine = rotated_affine()
    volume = Volume("case0001", np.zeros((5, 6, 3), np.float32), (0.8, 0.7, 2.5), affine,
                    tmp_path / "case0001.npy.h5", None)
    write_labels(np.ones((5, 6, 3), np.uint8), volume, tmp_path / "case0001.nii.gz")
    np.testing.assert_allclose(nib.load(tmp_path / "case0001.nii.gz").affine, affine, atol=1e-5)
    with pytest.raises(InputError, match="do not match"):
        write_labels(np.ones((5, 6, 4), np.uint8), volume, tmp_path / "x.nii.gz")


def test_inputs_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        find_inputs(tmp_path / "missing.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty input folder"):
        find_inputs(tmp_path / "empty")
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="broken.nii.gz: unreadable NIfTI header"):
        read_volume(tmp_path / "broken.nii.gz")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="not an image file"):
        find_inputs(tmp_path / "notes.txt")
