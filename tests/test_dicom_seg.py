"""DICOM out: the SEG (and RT Structure Set) of a DICOM series, read back, and used as labels."""

import json
import shutil
import subprocess

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from dicom_writer import oblique_cosines, write_series
from swin_unet import build_model
from swin_unet.config import config_to_dict
from swin_unet.io.dicom_seg import read_seg_labels, segment_codes, write_seg
from swin_unet.io.dicom_series import find_series
from swin_unet.palette import class_colour
from test_test_cli import SYNAPSE, run_cli, tiny_config

STUDY = "1.2.826.0.1.3680043.8.498.77"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("dicom") / "tiny_synapse.pth"
    torch.manual_seed(3)
    config = tiny_config("synapse")
    torch.save({"model": build_model(config.model).state_dict(),
                "config": config_to_dict(config), "class_names": SYNAPSE, "epoch": 1}, path)
    return path


def _scan(seed, shape=(6, 32, 30)):
    """Intensities with blobs, so that a tiny random model predicts several classes."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 300, shape) + 400 * np.sin(np.arange(shape[2]) / 3.0)).astype(np.int16)


def _frames_by_source(seg, headers, nifti):
    """The SEG's segments per source slice, and the NIfTI's classes the same way round."""
    uids = [h.SOPInstanceUID for h in headers]
    frames = seg.get_pixels_by_source_instance(uids, assert_missing_frames_are_empty=True)
    expected = np.transpose(nifti, (2, 1, 0))  # (slices, rows, columns)
    return frames, expected


def test_dicom_input_writes_a_seg_equal_to_the_nifti_labels(checkpoint, tmp_path, capsys):
    cosines = oblique_cosines()
    study = tmp_path / "study"
    write_series(study, _scan(0), "CT", cosines=cosines, number=2, description="AX oblique",
                 study_uid=STUDY, prefix="ct", spacing=(0.8, 0.7, 2.5))
    write_series(study, _scan(1, (3, 24, 24)), "MR", number=4, description="T1 ax",
                 study_uid=STUDY, prefix="mr", spacing=(1.1, 1.1, 3.0))
    code, out, err = run_cli(["--checkpoint", checkpoint, "--input", study, "--output",
                              tmp_path / "out", "--no-progress", "--no-report"], capsys)
    assert code == 0, err
    predictions = tmp_path / "out" / "predictions"
    for case, uid_prefix in (("study_2_AX_oblique", "ct"), ("study_4_T1_ax", "mr")):
        assert str(predictions / f"{case}_seg.dcm") in out
        nifti = np.asanyarray(nib.load(predictions / f"{case}.nii.gz").dataobj)
        seg = hd.seg.segread(predictions / f"{case}_seg.dcm")
        series = [s for s in _series_of(study) if s.files[0].name.startswith(uid_prefix)][0]
        headers = series.headers
        # Same patient, study and frame of reference; a new series that references the source.
        assert seg.StudyInstanceUID == STUDY and seg.PatientID == "P42"
        assert seg.FrameOfReferenceUID == headers[0].FrameOfReferenceUID
        assert seg.SeriesInstanceUID != headers[0].SeriesInstanceUID
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == headers[0].SeriesInstanceUID
        assert seg.SegmentationType == "BINARY" and "tiny_synapse.pth" in seg.SeriesDescription
        assert seg.ContentLabel == "SWIN_UNET_MODEL"
        # One segment per class present, named, coded and coloured as the report draws it.
        present = [int(c) for c in np.unique(nifti) if c > 0]
        assert len(present) >= 2
        segments = list(seg.SegmentSequence)
        assert [s.SegmentLabel for s in segments] == [SYNAPSE[c - 1] for c in present]
        for item, c in zip(segments, present):
            kind = item.SegmentedPropertyTypeCodeSequence[0]
            assert kind.CodeValue == segment_codes(SYNAPSE[c - 1])[1].value
            colour = hd.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue)
            assert np.abs(np.subtract(colour.to_rgb(), class_colour(c))).max() <= 2
        # Each frame sits at its source slice's position and references that slice.
        by_uid = {h.SOPInstanceUID: h for h in headers}
        for frame in seg.PerFrameFunctionalGroupsSequence:
            ref = frame.DerivationImageSequence[0].SourceImageSequence[0]
            source_slice = by_uid[ref.ReferencedSOPInstanceUID]
            np.testing.assert_allclose(
                [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
                [float(v) for v in source_slice.ImagePositionPatient], atol=1e-3)
        frames, expected = _frames_by_source(seg, headers, nifti)
        for number, c in enumerate(present, start=1):
            np.testing.assert_array_equal(frames[..., number - 1], expected == c)


def _series_of(folder):
    from swin_unet.io.dicom_series import list_series
    return [find_series(folder, s.uid) for s in list_series(folder)]


def test_fractional_seg_with_probabilities_and_no_seg_flag(checkpoint, tmp_path, capsys):
    write_series(tmp_path / "ct", _scan(2), "CT", number=3)
    code, _, err = run_cli(["--checkpoint", checkpoint, "--input", tmp_path / "ct", "--output",
                            tmp_path / "out", "--save-probabilities", "--no-progress",
                            "--no-report"], capsys)
    assert code == 0, err
    seg = hd.seg.segread(tmp_path / "out/predictions/ct_seg.dcm")
    assert seg.SegmentationType == "FRACTIONAL"
    assert seg.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    with np.load(tmp_path / "out/probabilities/ct.npz") as archive:
        probabilities = archive["probabilities"].astype(np.float32)
    headers = find_series(tmp_path / "ct").headers
    frames = seg.get_pixels_by_source_instance([h.SOPInstanceUID for h in headers],
                                               assert_missing_frames_are_empty=True)
    for number, item in enumerate(seg.SegmentSequence):
        c = SYNAPSE.index(item.SegmentLabel) + 1
        np.testing.assert_allclose(frames[..., number], probabilities[c].transpose(2, 1, 0),
                                   atol=1 / 255 + 1e-3)
    code, out, err = run_cli(["--checkpoint", checkpoint, "--input", tmp_path / "ct",
                              "--output", tmp_path / "plain", "--no-dicom-seg", "--no-progress",
                              "--no-report"], capsys)
    assert code == 0 and not list((tmp_path / "plain/predictions").glob("*.dcm"))


def test_seg_is_read_back_as_labels_by_scoring(checkpoint, tmp_path, capsys):
    write_series(tmp_path / "mr", _scan(3), "MR", cosines=oblique_cosines(35.0), number=9)
    code, _, err = run_cli(["--checkpoint", checkpoint, "--input", tmp_path / "mr", "--output",
                            tmp_path / "out", "--no-progress", "--no-report"], capsys)
    assert code == 0, err
    labels = tmp_path / "labels"
    labels.mkdir()
    shutil.copy(tmp_path / "out/predictions/mr_seg.dcm", labels)
    shutil.copytree(tmp_path / "mr", labels / "series")  # the series gives the SEG's grid
    code, out, err = run_cli(["--dataset", "synapse", "--predictions", tmp_path / "out/predictions",
                              "--labels", labels, "--output", tmp_path / "score", "--no-progress",
                              "--no-report"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "score/summary.json").read_text())
    assert summary["mean_dice"] == pytest.approx(1.0)
    # A label that disagrees with the prediction scores below 1: the SEG is really read.
    nifti = nib.load(tmp_path / "out/predictions/mr.nii.gz")
    worse = np.asanyarray(nifti.dataobj).copy()
    worse[worse > 0] = 0
    worse[:10, :10, :3] = 5
    headers = find_series(tmp_path / "mr").headers
    write_seg(worse, headers, SYNAPSE, labels / "mr_seg.dcm", "hand")
    shutil.rmtree(labels / "series")  # now placed on the prediction's grid by position
    back = read_seg_labels(labels / "mr_seg.dcm", nifti.affine, worse.shape, SYNAPSE)
    np.testing.assert_array_equal(back, worse)
    code, _, err = run_cli(["--dataset", "synapse", "--predictions", tmp_path / "out/predictions",
                            "--labels", labels, "--output", tmp_path / "score2", "--no-progress",
                            "--no-report"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "score2/summary.json").read_text())["mean_dice"] < 0.5


def test_rtstruct_contours_rasterise_back_to_the_labels(tmp_path):
    from rt_utils import RTStructBuilder

    from swin_unet.io.rtstruct import write_rtstruct

    write_series(tmp_path / "ct", np.zeros((6, 32, 32), np.int16), cosines=oblique_cosines(),
                 spacing=(0.7, 0.7, 2.0))
    labels = np.zeros((32, 32, 6), np.uint8)
    labels[3:12, 4:20, 1:4] = 2
    labels[15:27, 18:30, 2:6] = 5
    labels[19:22, 22:25, 3] = 0  # a hole
    series = find_series(tmp_path / "ct")
    path, dice = write_rtstruct(labels, series, SYNAPSE[:5], tmp_path / "rt.dcm", "tiny")
    assert path is not None and min(dice.values()) >= 0.95 and set(dice) == {"gallbladder",
                                                                           "liver"}
    # An independent reader of the contours: rt-utils' own rasteriser (square slices here).
    structure = RTStructBuilder.create_from(str(tmp_path / "ct"), str(path))
    assert structure.get_roi_names() == ["gallbladder", "liver"]
    for name, c in (("gallbladder", 2), ("liver", 5)):
        mask = np.transpose(structure.get_roi_mask_by_name(name), (1, 0, 2))
        truth = labels == c
        assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) >= 0.95
    ds = pydicom.dcmread(path)
    assert ds.Modality == "RTSTRUCT"
    assert [int(v) for v in ds.ROIContourSequence[1].ROIDisplayColor] == list(class_colour(5))


def test_rtstruct_flag_writes_a_structure_set_that_rasterises_back(checkpoint, tmp_path,
                                                                   capsys):
    from rt_utils import RTStructBuilder

    write_series(tmp_path / "ct", _scan(4, (2, 32, 32)), "CT", spacing=(0.7, 0.7, 2.5))
    code, out, err = run_cli(["--checkpoint", checkpoint, "--input", tmp_path / "ct", "--output",
                              tmp_path / "out", "--rtstruct", "--no-progress", "--no-report"],
                             capsys)
    assert code == 0, err
    written = tmp_path / "out/predictions/ct_rtstruct.dcm"
    assert str(written) in out
    nifti = np.asanyarray(nib.load(tmp_path / "out/predictions/ct.nii.gz").dataobj)
    present = [int(c) for c in np.unique(nifti) if c > 0]
    structure = RTStructBuilder.create_from(str(tmp_path / "ct"), str(written))
    assert structure.get_roi_names() == [SYNAPSE[c - 1] for c in present]
    for c in present:
        truth = nifti == c
        if truth.sum() > 50:
            mask = np.transpose(structure.get_roi_mask_by_name(SYNAPSE[c - 1]), (1, 0, 2))
            assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) >= 0.95


@pytest.mark.slow
def test_seg_and_rtstruct_pass_dciodvfy(checkpoint, tmp_path, capsys):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    write_series(tmp_path / "ct", _scan(5), "CT", cosines=oblique_cosines())
    errors = []
    for flags, name in ((["--rtstruct"], "bin"), (["--save-probabilities"], "frac")):
        code, _, err = run_cli(["--checkpoint", checkpoint, "--input", tmp_path / "ct",
                                "--output", tmp_path / name, "--no-progress", "--no-report"]
                               + flags, capsys)
        assert code == 0, err
        for path in sorted((tmp_path / name / "predictions").glob("*.dcm")):
            result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
            errors += [f"{path.name}: {line}" for line in
                       (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)
