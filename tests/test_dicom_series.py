"""DICOM series as archives hold them: several per folder, bad slice stacks, compressed pixels."""

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

from dicom_writer import oblique_cosines, ras_affine, write_series
from swin_unet.errors import InputError
from swin_unet.io.volumes import find_inputs, read_volume


def _volume(seed=0, shape=(6, 20, 18)):
    return np.random.default_rng(seed).integers(-400, 400, shape).astype(np.int16)


@pytest.mark.parametrize("modality,cosines", [("CT", None), ("MR", oblique_cosines())])
def test_series_reads_in_slice_order_with_its_lps_geometry(tmp_path, modality, cosines):
    zyx = _volume()
    write_series(tmp_path / "scan", zyx, modality, origin=(12.0, -30.0, 7.5), cosines=cosines)
    [(case, folder, uid)] = find_inputs(tmp_path / "scan")
    volume = read_volume(folder, case, uid)
    assert case == "scan"
    np.testing.assert_array_equal(volume.array, zyx.transpose(2, 1, 0))
    np.testing.assert_allclose(volume.affine, ras_affine((12.0, -30.0, 7.5), cosines,
                                                         (0.8, 0.7, 2.5)), atol=1e-4)


def test_a_folder_of_two_series_gives_a_case_per_series(tmp_path):
    study = "1.2.826.0.1.3680043.8.498.1"
    write_series(tmp_path / "study", _volume(1), "CT", number=2, description="AX 2.5mm",
                 study_uid=study, prefix="ct")
    write_series(tmp_path / "study", _volume(2, (4, 16, 16)), "MR", number=5,
                 description="T2 tra", study_uid=study, prefix="mr")
    found = find_inputs(tmp_path / "study")
    assert [name for name, _, _ in found] == ["study_2_AX_2.5mm", "study_5_T2_tra"]
    shapes = [read_volume(folder, name, uid).array.shape for name, folder, uid in found]
    assert shapes == [(18, 20, 6), (16, 16, 4)]


@pytest.mark.parametrize("heights,expected", [
    ([0, 2.5, 5.0, 5.0, 7.5], "two slices at one position (slice002.dcm and slice003.dcm)"),
    ([0, 2.5, 7.5, 10.0, 12.5], "a missing slice between slice001.dcm and slice002.dcm"),
    ([0, 2.5, 5.0, 7.6, 10.1], "uneven spacing between slice002.dcm and slice003.dcm"),
])
def test_broken_slice_stacks_are_refused_naming_series_and_slices(tmp_path, heights, expected):
    write_series(tmp_path / "s", _volume(3, (5, 8, 8)), heights=heights, number=7,
                 description="Abdomen", shuffle=False)
    with pytest.raises(InputError) as caught:
        read_volume(tmp_path / "s")
    message = str(caught.value)
    assert "series 7 'Abdomen'" in message and expected in message and "\n" not in message


def test_multi_frame_enhanced_image_is_refused_in_one_line(tmp_path):
    [path] = write_series(tmp_path / "mf", _volume(4, (1, 8, 8)))
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.NumberOfFrames = 1
    ds.PerFrameFunctionalGroupsSequence = [pydicom.Dataset()]
    ds.save_as(path)
    with pytest.raises(InputError, match="multi-frame image .*Enhanced CT.* not read"):
        read_volume(tmp_path / "mf")


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless])
def test_compressed_slices_decode_through_pydicom_plugins(tmp_path, syntax):
    zyx = _volume(5, (3, 32, 32))  # JPEG 2000: 6 resolutions need 32 px
    for path in write_series(tmp_path / "c", zyx):
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        ds.save_as(path)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(read_volume(tmp_path / "c").array, zyx.transpose(2, 1, 0))


def test_a_syntax_without_decoder_is_refused_naming_it_and_the_package(tmp_path, monkeypatch):
    for path in write_series(tmp_path / "c", _volume(6, (2, 32, 32))):
        ds = pydicom.dcmread(path)
        ds.compress(JPEG2000Lossless)
        ds.save_as(path)

    class Missing:
        is_available = False

    monkeypatch.setattr("pydicom.pixels.get_decoder", lambda uid: Missing())
    with pytest.raises(InputError) as caught:
        read_volume(tmp_path / "c")
    message = str(caught.value)
    assert "JPEG 2000 Image Compression (Lossless Only)" in message
    assert "pip install pylibjpeg pylibjpeg-openjpeg" in message
