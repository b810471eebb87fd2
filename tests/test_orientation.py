"""Your own scans in any orientation: reorienting, probabilities, uncertainty, input folders."""

import logging
import math
from itertools import permutations, product

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from swin_unet import build_model
from swin_unet.config import config_to_dict
from swin_unet.evaluation.inference import predict_volume
from swin_unet.io.orientation import plan_reorientation, scale_warnings, training_geometry
from swin_unet.io.volumes import find_inputs
from test_inference_io import write_dicom_series
from test_test_cli import SYNAPSE, run_cli, tiny_config

SPACING = (0.8, 0.8, 2.5)
LPS_AFFINE = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
LPS_AFFINE[:3, 3] = (20.0, 15.0, -7.0)


def scan_lps(shape=(40, 36, 6), seed=0):
    """HU values (integers, so NIfTI, NRRD, MHA and DICOM hold the very same voxels)."""
    return np.random.default_rng(seed).normal(40, 200, shape).round().astype(np.int16)


def save_checkpoint(path, in_chans=1, geometry=True):
    torch.manual_seed(0)
    config = tiny_config()
    config.model.in_chans = in_chans
    if geometry:
        config.geometry.axcodes = "LPS"
        config.geometry.inplane_spacing = [0.7, 0.9]
        config.geometry.field_of_view = [25.0, 35.0]
    model = build_model(config.model)
    torch.save({"model": model.state_dict(), "config": config_to_dict(config),
                "class_names": SYNAPSE, "epoch": 1}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "lps.pth")


def canonical(path):
    """A prediction file's voxels in RAS order: nibabel's own reorientation, the oracle."""
    return np.asanyarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)


# ----------------------------------------------------------------------------- the plan

@pytest.mark.parametrize("order", list(permutations(range(3))))
def test_every_axis_order_and_flip_comes_back_to_the_model_orientation(order):
    image = nib.Nifti1Image(scan_lps((6, 5, 4)), LPS_AFFINE)
    for signs in product((1, -1), repeat=3):
        ornt = np.array([[axis, sign] for axis, sign in zip(order, signs)], dtype=float)
        stored = image.as_reoriented(ornt)  # nibabel rewrites voxels and affine together
        plan, warnings = plan_reorientation(stored.affine, "LPS")
        data = np.asanyarray(stored.dataobj)
        assert not warnings
        np.testing.assert_array_equal(plan.forward(data), image.get_fdata().astype(np.int16))
        np.testing.assert_array_equal(plan.backward(plan.forward(data)), data)
        assert plan.identity == (order == (0, 1, 2) and signs == (1, 1, 1))


def rotation_about_x(degrees):
    angle = math.radians(degrees)
    rotation = np.eye(4)
    rotation[1:3, 1:3] = [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    return rotation @ LPS_AFFINE


def test_oblique_slices_are_segmented_along_the_nearest_axis_with_a_warning():
    plan, warnings = plan_reorientation(rotation_about_x(10), "LPS")
    assert plan.identity and not warnings and plan.obliquity_deg == pytest.approx(10, abs=1e-6)
    plan, warnings = plan_reorientation(rotation_about_x(35), "LPS")
    assert plan.identity and len(warnings) == 1 and "35.0 degrees" in warnings[0]
    # Past 45 degrees the nearest axis is another one: the slices go across it.
    plan, warnings = plan_reorientation(rotation_about_x(60), "LPS")
    assert plan.permutation == (0, 2, 1) and "30.0 degrees" in warnings[0]


def test_no_record_keeps_the_stored_order_and_says_so():
    plan, warnings = plan_reorientation(rotation_about_x(60), None)
    assert plan.identity and not warnings and "records no training orientation" in plan.note


def test_training_record_and_scale_warnings_name_the_numbers():
    record, notes = training_geometry([(LPS_AFFINE, (40, 36, 6)),
                                       (np.diag([-0.6, -0.6, 3.0, 1.0]), (50, 50, 9))])
    assert record == {"axcodes": "LPS", "slice_axis": 2, "inplane_spacing": [0.6, 0.8],
                      "field_of_view": [28.8, 32.0]} and not notes
    _, notes = training_geometry([(LPS_AFFINE, (4, 4, 4)), (np.eye(4), (4, 4, 4))] * 1
                                 + [(LPS_AFFINE, (4, 4, 4))])
    assert "LPS" in notes[0] and "RAS" in notes[0]
    assert scale_warnings((0.7, 0.7), (30, 30), [0.6, 0.8], [28.8, 32.0]) == []
    [warning] = scale_warnings((0.25, 0.25), (10, 10), [0.6, 0.8], None)
    assert "in-plane spacing 0.25 x 0.25 mm" in warning and "0.6-0.8 mm" in warning


# ----------------------------------------------------------------------------- probabilities

class FlipProbe(nn.Module):
    """Certain logits: class 1 where the pixel is bright (any flip agrees); elsewhere class 2 on
    the left half of the columns and 0 on the right (the column flips disagree)."""

    in_chans = 1

    def forward(self, x):
        bright = (x[:, :1] > 0.5).float()
        columns = torch.arange(x.shape[-1], dtype=torch.float32)
        left = (columns < x.shape[-1] / 2).float().expand_as(bright)
        onehot = torch.cat([(1 - bright) * (1 - left), bright, (1 - bright) * left], dim=1)
        return 40.0 * onehot


def test_entropy_is_zero_where_all_flips_agree_with_certainty():
    image = np.zeros((16, 16, 3), np.float32)
    image[4:10, 3:12] = 1.0
    probabilities = np.empty((3, 16, 16, 3), np.float16)
    entropy = np.empty((16, 16, 3), np.float32)
    labels = predict_volume(FlipProbe(), image, 16, tta=True, probabilities=probabilities,
                            entropy=entropy)
    bright = image > 0.5
    assert (labels[bright] == 1).all()
    np.testing.assert_allclose(entropy[bright], 0.0, atol=1e-6)
    # Elsewhere two flips say class 0, two say class 2: the mean is (1/2, 0, 1/2).
    np.testing.assert_allclose(entropy[~bright], math.log(2), atol=1e-5)
    np.testing.assert_allclose(probabilities[0][~bright], 0.5, atol=1e-3)
    without_tta = np.empty((16, 16, 3), np.float32)
    predict_volume(FlipProbe(), image, 16, entropy=without_tta)
    np.testing.assert_allclose(without_tta, 0.0, atol=1e-6)


@pytest.mark.parametrize("resize", ["bicubic", "paper"])
def test_probabilities_sum_to_one_and_their_argmax_is_the_label_map(resize):
    torch.manual_seed(0)
    model = build_model(tiny_config().model)
    image = np.random.default_rng(2).random((40, 36, 5), dtype=np.float32)
    probabilities = np.empty((9, 40, 36, 5), np.float32)
    labels = predict_volume(model, image, 32, batch_size=2, resize=resize, tta=True,
                            probabilities=probabilities)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probabilities.argmax(0), labels)
    np.testing.assert_array_equal(labels, predict_volume(model, image, 32, resize=resize,
                                                                tta=True))


# ----------------------------------------------------------------------------- the command line

def stored_variants(folder, hu):
    """One LPS scan stored six ways; each written file's name says how."""
    folder.mkdir()
    image = nib.Nifti1Image(hu, LPS_AFFINE)
    nib.save(image, folder / "lps.nii.gz")
    nib.save(image.as_reoriented([[0, -1], [1, -1], [2, 1]]), folder / "ras.nii.gz")
    nib.save(image.as_reoriented([[1, 1], [0, 1], [2, 1]]), folder / "swapped.nii.gz")
    # Sagittal: the slices (last voxel axis) run left-right, rows go up the body.
    nib.save(image.as_reoriented([[2, 1], [1, -1], [0, 1]]), folder / "sagittal.nii.gz")
    # ITK files, LPS world: rows and columns swapped (NRRD), rows flipped (MHA).
    swapped = sitk.GetImageFromArray(np.ascontiguousarray(hu.transpose(2, 0, 1)))
    swapped.SetSpacing(SPACING)
    swapped.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    swapped.SetOrigin((-20.0, -15.0, -7.0))  # the LPS point of voxel (0, 0, 0)
    sitk.WriteImage(swapped, str(folder / "itk_swapped.nrrd"))
    flipped = sitk.GetImageFromArray(np.ascontiguousarray(hu[::-1].transpose(2, 1, 0)))
    flipped.SetSpacing(SPACING)
    flipped.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    flipped.SetOrigin((-20.0 + (hu.shape[0] - 1) * SPACING[0], -15.0, -7.0))
    sitk.WriteImage(flipped, str(folder / "itk_flipped.mha"))


def test_a_scan_stored_in_any_orientation_gets_the_same_labels(checkpoint, tmp_path, capsys,
                                                              caplog):
    hu = scan_lps()
    stored_variants(tmp_path / "scans", hu)
    write_dicom_series(tmp_path / "dicom_lps", hu.transpose(2, 1, 0), spacing=SPACING,
                       origin=(-20.0, -15.0, -7.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    write_dicom_series(tmp_path / "dicom_rps", hu[::-1].transpose(2, 1, 0), spacing=SPACING,
                       origin=(-20.0 + 39 * SPACING[0], -15.0, -7.0),
                       direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    caplog.set_level(logging.INFO)
    outputs = {}
    for name, source in [("files", tmp_path / "scans"), ("dicom_lps", tmp_path / "dicom_lps"),
                         ("dicom_rps", tmp_path / "dicom_rps")]:
        code, _, err = run_cli(["--checkpoint", checkpoint, "--input", source, "--output",
                                tmp_path / name, "--no-progress", "--no-report"], capsys)
        assert code == 0, err
        outputs.update({p.name: p for p in (tmp_path / name / "predictions").glob("*.nii.gz")})
    assert len(outputs) == 8
    reference = canonical(outputs["lps.nii.gz"])
    for name, path in outputs.items():
        np.testing.assert_array_equal(canonical(path), reference, err_msg=name)
    # What the model gives for the scan in its own orientation, as stored (the oracle's input).
    from datasets import normalize_intensity
    from swin_unet.evaluation import load_model
    direct = predict_volume(load_model(checkpoint).model, normalize_intensity(hu, "ct"), 32)
    np.testing.assert_array_equal(np.asanyarray(nib.load(outputs["lps.nii.gz"]).dataobj), direct)
    log = caplog.text
    assert "sagittal: stored as SAL, reoriented to the model's LPS" in log
    assert "lps: stored as LPS, the model's orientation: used as stored" in log
    # --keep-orientation segments the swapped file as stored: other labels.
    code, _, _ = run_cli(["--checkpoint", checkpoint, "--input", tmp_path / "scans" /
                          "swapped.nii.gz", "--output", tmp_path / "kept", "--keep-orientation",
                          "--no-progress"], capsys)
    assert code == 0
    assert (canonical(tmp_path / "kept/predictions/swapped.nii.gz") != reference).any()


def test_probabilities_and_uncertainty_from_the_command_line(checkpoint, tmp_path, capsys):
    hu = scan_lps(seed=3)
    image = nib.Nifti1Image(hu, LPS_AFFINE).as_reoriented([[1, 1], [2, 1], [0, -1]])
    (tmp_path / "in").mkdir()
    nib.save(image, tmp_path / "in" / "odd.nii.gz")
    code, stdout, err = run_cli(["--checkpoint", checkpoint, "--input", tmp_path / "in",
                                 "--output", tmp_path / "out", "--save-probabilities", "--tta",
                                 "--no-progress"], capsys)
    assert code == 0, err
    assert "1 prediction(s)" in stdout
    labels = nib.load(tmp_path / "out/predictions/odd.nii.gz")
    stored = np.load(tmp_path / "out/probabilities/odd.npz")
    probabilities = stored["probabilities"]
    assert probabilities.dtype == np.float16 and probabilities.shape == (9,) + image.shape
    np.testing.assert_allclose(stored["affine"], image.affine, atol=1e-6)
    np.testing.assert_allclose(probabilities.astype(np.float32).sum(0), 1.0, atol=5e-3)
    # float16 may round the two largest to a tie; elsewhere the argmax is the label map.
    ordered = np.sort(probabilities.astype(np.float32), axis=0)
    clear = ordered[-1] - ordered[-2] > 2e-3
    label_map = np.asanyarray(labels.dataobj)
    np.testing.assert_array_equal(probabilities.argmax(0)[clear], label_map[clear])
    uncertainty = nib.load(tmp_path / "out/uncertainty/odd.nii.gz")
    assert uncertainty.get_data_dtype() == np.float32 and uncertainty.shape == image.shape
    np.testing.assert_allclose(uncertainty.affine, image.affine, atol=1e-6)
    p = probabilities.astype(np.float64)
    expected = -(p * np.log(np.where(p > 0, p, 1))).sum(0)
    np.testing.assert_allclose(uncertainty.get_fdata(), expected, atol=2e-2)
    assert uncertainty.get_fdata().max() <= math.log(9) + 1e-6


def test_data_set_run_writes_probabilities_beside_the_label_maps(tmp_path, capsys):
    from datasets import generate_phantom
    generate_phantom(tmp_path / "phantom", n_cases=3, shape=(40, 36, 4))
    path = save_checkpoint(tmp_path / "c.pth")
    code, _, err = run_cli(["--dataset", "phantom", "--root", tmp_path / "phantom",
                            "--checkpoint", path, "--output", tmp_path / "run", "--save-nifti",
                            "--save-probabilities", "--no-progress"], capsys)
    assert code == 0, err
    label_map = np.asanyarray(nib.load(tmp_path / "run/predictions/case0003.nii.gz").dataobj)
    probabilities = np.load(tmp_path / "run/probabilities/case0003.npz")["probabilities"]
    assert probabilities.shape == (9,) + label_map.shape
    assert not (tmp_path / "run/uncertainty").exists()  # only with --tta


def test_spacing_far_from_the_training_data_and_a_missing_record_are_logged(
        checkpoint, tmp_path, capsys, caplog):
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(scan_lps(), np.diag([-0.2, -0.2, 2.5, 1.0])),
             tmp_path / "in" / "fine.nii.gz")
    caplog.set_level(logging.INFO)
    assert run_cli(["--checkpoint", checkpoint, "--input", tmp_path / "in", "--output",
                    tmp_path / "a", "--no-progress"], capsys)[0] == 0
    assert "in-plane spacing 0.2 x 0.2 mm" in caplog.text and "0.7-0.9 mm" in caplog.text
    assert "field of view 8 x 7.2 mm" in caplog.text
    old = save_checkpoint(tmp_path / "old.pth", geometry=False)
    caplog.clear()
    assert run_cli(["--checkpoint", old, "--input", tmp_path / "in", "--output",
                    tmp_path / "b", "--no-progress"], capsys)[0] == 0
    assert "records no training orientation" in caplog.text
    assert "in-plane spacing" not in caplog.text
    # The record can be given for such a checkpoint; a wrong one is named.
    caplog.clear()
    assert run_cli(["--checkpoint", old, "--input", tmp_path / "in", "--output", tmp_path / "c",
                    "--set", "geometry.axcodes=RAS", "--no-progress"], capsys)[0] == 0
    assert "stored as LPS, reoriented to the model's RAS" in caplog.text
    code, _, err = run_cli(["--checkpoint", old, "--input", tmp_path / "in", "--output",
                            tmp_path / "d", "--set", "geometry.axcodes=LPX"], capsys)
    assert code == 2 and "geometry.axcodes" in err and "LPX" in err


# ----------------------------------------------------------------------------- input folders

def test_nnunet_channel_files_are_one_case_and_hidden_files_are_skipped(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    first, second = scan_lps(seed=4), scan_lps(seed=5)
    for index, array in enumerate((first, second)):
        nib.save(nib.Nifti1Image(array, LPS_AFFINE), folder / f"liver7_{index:04d}.nii.gz")
    (folder / "._liver7_0000.nii.gz").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / ".hidden").mkdir()
    found = find_inputs(folder, channels=True)
    assert [(name, [p.name for p in paths]) for name, paths, _ in found] == [
        ("liver7", ["liver7_0000.nii.gz", "liver7_0001.nii.gz"])]
    path = save_checkpoint(tmp_path / "two.pth", in_chans=2)
    code, _, err = run_cli(["--checkpoint", path, "--input", folder, "--output",
                            tmp_path / "out", "--no-progress"], capsys)
    assert code == 0, err
    assert [p.name for p in (tmp_path / "out/predictions").glob("*.nii.gz")] == ["liver7.nii.gz"]
    from datasets import normalize_intensity
    from swin_unet.evaluation import load_model
    expected = predict_volume(load_model(path).model,
                              normalize_intensity(np.stack([first, second]), "ct",
                                                  channels_first=True), 32)
    np.testing.assert_array_equal(
        np.asanyarray(nib.load(tmp_path / "out/predictions/liver7.nii.gz").dataobj), expected)
    # A channel on another grid is named.
    nib.save(nib.Nifti1Image(scan_lps((40, 30, 6)), LPS_AFFINE), folder / "liver7_0001.nii.gz")
    code, _, err = run_cli(["--checkpoint", path, "--input", folder, "--output",
                            tmp_path / "out2", "--no-progress"], capsys)
    assert code == 2 and "liver7_0001.nii.gz" in err and "(40, 30, 6)" in err


def test_files_that_only_look_like_channels_stay_separate_cases(tmp_path):
    for name in ("scan_0001.nii.gz", "scan_0002.nii.gz", "a_0000.nii.gz"):
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), tmp_path / name)
    names = [name for name, _, _ in find_inputs(tmp_path, channels=True)]
    assert names == ["a_0000", "scan_0001", "scan_0002"]
    assert [n for n, _, _ in find_inputs(tmp_path / "a_0000.nii.gz", channels=True)] == ["a_0000"]
