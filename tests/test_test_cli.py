"""test.py end to end: a data set with a checkpoint, existing predictions, a user's scans, errors."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from medpy.metric import binary

from datasets import generate_phantom
from swin_unet import build_model
from swin_unet.config import Config, config_to_dict
from swin_unet.evaluation.metrics import case_metrics
from test_inference_io import rotated_affine, write_dicom_series
from command_lines import TEST_PY as CLI

ROOT = Path(__file__).resolve().parents[1]
SYNAPSE = ["aorta", "gallbladder", "kidney_left", "kidney_right", "liver", "pancreas", "spleen",
           "stomach"]
TINY = {"img_size": 32, "embed_dim": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1],
        "window_size": 2}


def tiny_config(dataset="phantom"):
    config = Config(dataset=dataset)
    for key, value in TINY.items():
        setattr(config.model, key, value)
    return config


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A 3-case abdomen phantom (the test split is one case) and a tiny model's checkpoint."""
    root = tmp_path_factory.mktemp("cli")
    generate_phantom(root / "phantom", n_cases=3, shape=(40, 36, 6))
    torch.manual_seed(0)
    config = tiny_config()
    model = build_model(config.model)
    torch.save({"model": model.state_dict(), "config": config_to_dict(config),
                "class_names": SYNAPSE, "epoch": 3}, root / "tiny.pth")
    return root


def run_cli(args, capsys):
    code = CLI.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_dataset_run_writes_metrics_summary_and_predictions_in_the_scan_geometry(
        workspace, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--volume", "--dataset", "phantom", "--root", workspace / "phantom", "--checkpoint",
            workspace / "tiny.pth", "--output", out, "--save-nifti", "--no-progress"]
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0
    rows = read_csv(out / "metrics.csv")
    assert [r["class_name"] for r in rows] == SYNAPSE and {r["case"] for r in rows} == {"case0003"}
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["metric_mode"], summary["n_cases"]) == ("mm", 1)
    # The numbering of the predictions is stated: the 8-organ order, not BTCV's raw one.
    assert summary["label_values"] == {"0": "background", **{str(i): n for i, n in
                                                             enumerate(SYNAPSE, 1)}}
    assert summary["label_values"]["1"] == "aorta"
    assert "Aorta" in stdout and "Kidney(R)" in stdout
    # The prediction overlays the scan: same shape and affine, uint8; its scores are the CSV's.
    image = nib.load(workspace / "phantom/RawData/Training/img/img0003.nii.gz")
    label = nib.load(workspace / "phantom/RawData/Training/label/label0003.nii.gz")
    prediction = nib.load(out / "predictions/case0003.nii.gz")
    assert prediction.shape == image.shape and prediction.get_data_dtype() == np.uint8
    np.testing.assert_allclose(prediction.affine, image.affine, atol=1e-5)
    raw_to_class = {8: 1, 4: 2, 3: 3, 2: 4, 6: 5, 11: 6, 1: 7, 7: 8}
    table = np.zeros(14, np.uint8)
    for raw, index in raw_to_class.items():
        table[raw] = index
    classes = table[np.asanyarray(label.dataobj).astype(np.int64)]
    expected = case_metrics(np.asanyarray(prediction.dataobj), classes, 9,
                            spacing=label.header.get_zooms())
    for row, ref in zip(rows, expected):
        assert float(row["dice"]) == pytest.approx(ref["dice"], abs=1e-12)
        assert float(row["hd95"]) == pytest.approx(ref["hd95"], rel=1e-9)
    # A second run does not overwrite silently.
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "metrics.csv" in err and "--overwrite" in err
    assert run_cli(args + ["--overwrite", "--metric-mode", "paper"], capsys)[0] == 0
    assert json.loads((out / "summary.json").read_text())["hd95_unit"] == "voxel"


def write_nifti(path, array, affine):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def labelled_pair(seed):
    rng = np.random.default_rng(seed)
    label = np.zeros((30, 28, 8), np.uint8)
    label[4:20, 5:18, 1:6] = 1
    label[18:27, 14:25, 3:8] = 2
    prediction = np.roll(label, (1, -2, 1), axis=(0, 1, 2))
    prediction[rng.random(label.shape) < 0.005] = 3
    return prediction, label


def test_evaluate_only_mode_scores_any_method_against_medpy(tmp_path, capsys):
    affine = np.diag([0.7, 0.9, 3.0, 1.0])
    for case in ("a", "b"):
        prediction, label = labelled_pair(ord(case))
        write_nifti(tmp_path / "pred" / f"{case}.nii.gz", prediction, affine)
        write_nifti(tmp_path / "gt" / f"{case}.nii.gz", label, affine)
    out = tmp_path / "eval"
    code, stdout, _ = run_cli(["--volume", "--dataset", "acdc", "--predictions",
                               tmp_path / "pred", "--labels", tmp_path / "gt", "--output", out,
                               "--no-progress"], capsys)
    assert code == 0 and "Myo" in stdout
    rows = read_csv(out / "metrics.csv")
    assert [(r["case"], r["class_name"]) for r in rows] == [
        (c, n) for c in ("a", "b") for n in ("RV", "Myo", "LV")]
    prediction, label = labelled_pair(ord("a"))
    assert float(rows[0]["dice"]) == pytest.approx(binary.dc(prediction == 1, label == 1))
    assert float(rows[0]["hd95"]) == pytest.approx(
        binary.hd95(prediction == 1, label == 1, voxelspacing=(0.7, 0.9, 3.0)), rel=1e-6)
    # LV: predicted where the ground truth is empty: a false positive scores 0 in mm mode.
    assert float(rows[2]["dice"]) == 0.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classes"]["LV"]["n_false_positive"] == 2


def test_evaluate_only_errors_name_the_file_and_exit_2(tmp_path, capsys):
    affine = np.eye(4)
    prediction, label = labelled_pair(1)
    write_nifti(tmp_path / "pred" / "x.nii.gz", prediction, affine)
    write_nifti(tmp_path / "pred" / "y.nii.gz", prediction, affine)
    write_nifti(tmp_path / "gt" / "x.nii.gz", label[:, :, :4], affine)
    (tmp_path / "empty").mkdir()
    cases = [
        (["--predictions", tmp_path / "pred", "--labels", tmp_path / "gt"],
         "y.nii.gz: missing label for prediction"),
        (["--predictions", tmp_path / "empty", "--labels", tmp_path / "gt"], "empty input folder"),
        (["--predictions", tmp_path / "pred", "--labels", tmp_path / "nowhere"],
         "nowhere: labels folder not found"),
    ]
    for args, message in cases:
        code, _, err = run_cli(["--output", tmp_path / "o"] + args, capsys)
        assert code == 2 and message in err, err
        assert len(err.strip().splitlines()) == 1
    (tmp_path / "pred" / "y.nii.gz").unlink()
    code, _, err = run_cli(["--output", tmp_path / "o", "--predictions", tmp_path / "pred",
                            "--labels", tmp_path / "gt"], capsys)
    assert code == 2 and "x.nii.gz: shape (30, 28, 8) does not match" in err
    write_nifti(tmp_path / "gt" / "x.nii.gz", label, affine)
    code, _, err = run_cli(["--output", tmp_path / "o", "--dataset", "acdc", "--predictions",
                            tmp_path / "pred", "--labels", tmp_path / "gt"], capsys)
    assert code == 0  # class 3 (the specks) is in ACDC's range
    write_nifti(tmp_path / "pred" / "x.nii.gz", prediction * 2, affine)
    code, _, err = run_cli(["--output", tmp_path / "o2", "--dataset", "acdc", "--predictions",
                            tmp_path / "pred", "--labels", tmp_path / "gt"], capsys)
    assert code == 2 and "pred/x.nii.gz: prediction: label values must be in [0, 3]" in err


def test_evaluate_only_accepts_a_label_with_a_trailing_singleton_axis(tmp_path, capsys):
    affine = np.diag([0.7, 0.9, 3.0, 1.0])
    prediction, label = labelled_pair(5)
    write_nifti(tmp_path / "pred" / "x.nii.gz", prediction, affine)
    write_nifti(tmp_path / "gt" / "x.nii.gz", label[..., None], affine)  # (X, Y, Z, 1)
    code, _, err = run_cli(["--output", tmp_path / "o", "--dataset", "acdc", "--predictions",
                            tmp_path / "pred", "--labels", tmp_path / "gt", "--no-progress"],
                           capsys)
    assert code == 0, err
    rows = read_csv(tmp_path / "o" / "metrics.csv")
    assert float(rows[0]["hd95"]) == pytest.approx(
        binary.hd95(prediction == 1, label == 1, voxelspacing=(0.7, 0.9, 3.0)), rel=1e-6)


def test_input_nifti_with_rotated_affine_keeps_it(workspace, tmp_path, capsys):
    hu = np.random.default_rng(0).normal(40, 200, (40, 36, 5)).astype(np.int16)
    write_nifti(tmp_path / "scans" / "mine.nii.gz", hu, rotated_affine())
    code, stdout, _ = run_cli(["--volume", "--checkpoint", workspace / "tiny.pth", "--input",
                               tmp_path / "scans" / "mine.nii.gz", "--output", tmp_path / "seg",
                               "--no-progress"], capsys)
    assert code == 0 and "mine.nii.gz" in stdout
    out = nib.load(tmp_path / "seg/predictions/mine.nii.gz")
    assert out.shape == hu.shape and out.get_data_dtype() == np.uint8
    np.testing.assert_allclose(out.affine, rotated_affine(), atol=1e-5)
    assert np.asanyarray(out.dataobj).max() < 9


def test_input_follows_the_metric_mode_resize_procedure(workspace, tmp_path, capsys):
    """--metric-mode paper on --input predicts with the published resizing, not the default."""
    from datasets import normalize_intensity
    from swin_unet.evaluation import load_model
    from swin_unet.evaluation.inference import predict_volume
    hu = np.random.default_rng(4).normal(40, 200, (40, 36, 3)).astype(np.int16)
    write_nifti(tmp_path / "scan.nii.gz", hu, np.eye(4))
    model = load_model(workspace / "tiny.pth").model
    image = normalize_intensity(hu, "ct")
    expected = {mode: predict_volume(model, image, 32, resize=resize)
                for mode, resize in (("mm", "bicubic"), ("paper", "paper"))}
    assert (expected["mm"] != expected["paper"]).any()  # the two procedures differ here
    for mode in ("mm", "paper"):
        code, _, err = run_cli(["--checkpoint", workspace / "tiny.pth", "--input",
                                tmp_path / "scan.nii.gz", "--output", tmp_path / mode,
                                "--metric-mode", mode, "--no-progress"], capsys)
        assert code == 0, err
        out = np.asanyarray(nib.load(tmp_path / mode / "predictions/scan.nii.gz").dataobj)
        np.testing.assert_array_equal(out, expected[mode])


def test_input_dicom_series_gets_a_prediction_in_its_geometry(workspace, tmp_path, capsys):
    zyx = np.random.default_rng(1).normal(40, 200, (5, 36, 40)).astype(np.int16)
    written = write_dicom_series(tmp_path / "patient7", zyx)
    code, _, _ = run_cli(["--volume", "--checkpoint", workspace / "tiny.pth", "--input",
                          tmp_path / "patient7", "--output", tmp_path / "seg", "--no-progress"],
                         capsys)
    assert code == 0
    out = sitk.ReadImage(str(tmp_path / "seg/predictions/patient7.nii.gz"))
    assert out.GetSize() == written.GetSize()
    np.testing.assert_allclose(out.GetOrigin(), written.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(out.GetSpacing(), written.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(out.GetDirection(), written.GetDirection(), atol=1e-6)
    # The same input a second time needs --overwrite.
    code, _, err = run_cli(["--checkpoint", workspace / "tiny.pth", "--input",
                            tmp_path / "patient7", "--output", tmp_path / "seg"], capsys)
    assert code == 2 and "patient7.nii.gz: exists" in err


def test_original_format_checkpoint_with_rgb_kernels(workspace, tmp_path, capsys):
    """A flat state dict with the original prefix and 3-channel patch embedding."""
    torch.manual_seed(1)
    config = tiny_config("synapse")
    config.model.in_chans = 3
    rgb = build_model(config.model)
    state = {f"module.swin_unet.{k}": v for k, v in rgb.state_dict().items()}
    torch.save(state, tmp_path / "original.pth")
    scan = np.random.default_rng(2).normal(40, 200, (32, 32, 3)).astype(np.int16)
    write_nifti(tmp_path / "scan.nii.gz", scan, np.eye(4))
    tiny = [f"--set=model.{k}={json.dumps(v)}" for k, v in TINY.items()]
    args = ["--checkpoint", tmp_path / "original.pth", "--input", tmp_path / "scan.nii.gz",
            "--output", tmp_path / "seg", "--no-progress"] + tiny
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "pass --dataset" in err
    code, _, err = run_cli(args + ["--dataset", "synapse"], capsys)
    assert code == 0, err
    # Summed kernels on one channel == the original network on the slice repeated 3 times.
    from datasets import normalize_intensity
    x = torch.from_numpy(normalize_intensity(scan, "ct")[:, :, 0]).float()[None, None]
    with torch.no_grad():
        expected = rgb.eval()(x.repeat(1, 3, 1, 1)).argmax(1)[0].numpy()
    pred = np.asanyarray(nib.load(tmp_path / "seg/predictions/scan.nii.gz").dataobj)[:, :, 0]
    assert (pred == expected).mean() > 0.999
    # Some forks save the same state dict wrapped as {"model": ...}: the same predictions.
    torch.save({"model": state}, tmp_path / "wrapped.pth")
    args[1], args[5] = tmp_path / "wrapped.pth", tmp_path / "seg2"
    code, _, err = run_cli(args + ["--dataset", "synapse"], capsys)
    assert code == 0, err
    wrapped = np.asanyarray(nib.load(tmp_path / "seg2/predictions/scan.nii.gz").dataobj)
    assert np.array_equal(wrapped[:, :, 0], pred)


def test_cli_errors_exit_2_with_one_line_naming_the_file(workspace, tmp_path, capsys):
    code, _, err = run_cli(["--dataset", "phantom", "--predictions", tmp_path], capsys)
    assert code == 2 and err.strip() == "error: --predictions and --labels go together"
    code, _, err = run_cli(["--dataset", "phantom"], capsys)
    assert code == 2 and "give --dataset and --checkpoint" in err
    # A missing data root: one line naming it, then the expected layouts as an indented block.
    code, _, err = run_cli(["--dataset", "synapse", "--root", tmp_path / "no-such-folder",
                            "--checkpoint", workspace / "tiny.pth", "--output", tmp_path / "m"],
                           capsys)
    first, *block = err.strip().splitlines()
    assert code == 2 and first == f"error: {tmp_path / 'no-such-folder'}: Synapse data not found"
    assert block and all(line.startswith("  ") for line in block if line)
    assert any("test_vol_h5/case0001.npy.h5" in line for line in block)
    # A 4-D scan whose channels the model does not take: the message names the file.
    write_nifti(tmp_path / "cine.nii.gz", np.zeros((40, 36, 4, 3), np.int16), np.eye(4))
    code, _, err = run_cli(["--checkpoint", workspace / "tiny.pth", "--input",
                            tmp_path / "cine.nii.gz", "--output", tmp_path / "c", "--no-progress"],
                           capsys)
    assert code == 2 and "cine.nii.gz: image has 3 channel(s)" in err, err
    (tmp_path / "fake.pth").write_text("not a checkpoint")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b garbage")
    runs = [
        (["--checkpoint", tmp_path / "fake.pth", "--input", workspace / "phantom",
          "--output", tmp_path / "o"], "fake.pth"),
        (["--checkpoint", workspace / "tiny.pth", "--input", tmp_path / "broken.nii.gz",
          "--output", tmp_path / "o"], "broken.nii.gz: unreadable NIfTI header"),
    ]
    for args, message in runs:
        done = subprocess.run([sys.executable, str(ROOT / "test.py"), "--volume", "--no-progress"]
                              + [str(a) for a in args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)
        lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2, done.stderr
        assert len(lines) == 1 and message in lines[0], done.stderr
        assert "Traceback" not in done.stderr


def test_checkpoint_of_another_data_set_does_not_use_its_training_paths(workspace, tmp_path,
                                                                        capsys):
    """Trained on 'synapse' at some path with its own test cases; scored on the phantom."""
    torch.manual_seed(0)
    config = tiny_config("synapse")
    config.data.root = str(tmp_path / "training-machine" / "Synapse")
    config.data.test_cases = ["1", "2"]
    model = build_model(config.model)
    torch.save({"model": model.state_dict(), "config": config_to_dict(config),
                "class_names": SYNAPSE, "epoch": 150}, tmp_path / "synapse.pth")
    code, _, err = run_cli(["--dataset", "phantom", "--root", workspace / "phantom",
                            "--checkpoint", tmp_path / "synapse.pth", "--output", tmp_path / "o",
                            "--no-progress"], capsys)
    assert code == 0, err
    assert {r["case"] for r in read_csv(tmp_path / "o" / "metrics.csv")} == {"case0003"}


def test_transunet_release_is_scored_in_unit_spacing_and_says_so(workspace, tmp_path, capsys):
    import h5py
    folder = tmp_path / "Synapse" / "test_vol_h5"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    label = np.zeros((4, 32, 32), np.uint8)  # (slices, H, W) as released
    label[:, 8:20, 10:24] = 5
    with h5py.File(folder / "case0001.npy.h5", "w") as handle:
        handle["image"] = rng.random((4, 32, 32), dtype=np.float32)  # already windowed
        handle["label"] = label
    out = tmp_path / "o"
    code, stdout, err = run_cli(["--dataset", "synapse", "--root", tmp_path / "Synapse",
                                 "--set", "data.test_cases=[1]", "--checkpoint",
                                 workspace / "tiny.pth", "--output", out, "--save-nifti",
                                 "--no-progress"], capsys)
    assert code == 0, err
    assert "unit spacing" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert any("unit spacing" in note for note in summary["notes"])
    prediction = nib.load(out / "predictions" / "case0001.nii.gz")
    assert prediction.shape == (32, 32, 4)
    np.testing.assert_allclose(prediction.affine, np.eye(4))
    liver = read_csv(out / "metrics.csv")[4]
    expected = case_metrics(np.asanyarray(prediction.dataobj), np.moveaxis(label, 0, -1), 9,
                            spacing=(1, 1, 1))[4]
    assert liver["class_name"] == "liver"
    assert float(liver["hd95"]) == pytest.approx(expected["hd95"])
