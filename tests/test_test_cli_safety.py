"""test.py never loses results nor scores silently wrong: checks first, writes as it goes."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from swin_unet import evaluation
from swin_unet.evaluation import scoring
from test_test_cli import ROOT, read_csv, run_cli, write_nifti, workspace  # noqa: F401


def _pairs(tmp_path, affines=None, cases=("a", "b", "c")):
    label = np.zeros((12, 10, 4), np.uint8)
    label[2:8, 3:7, 1:3] = 1
    for i, case in enumerate(cases):
        affine = np.diag([0.8, 0.8, 2.0, 1.0]) if affines is None else affines[i]
        write_nifti(tmp_path / "pred" / f"{case}.nii.gz", np.roll(label, i, axis=0), affine)
        write_nifti(tmp_path / "gt" / f"{case}.nii.gz", label, np.diag([0.8, 0.8, 2.0, 1.0]))


def _score(tmp_path, capsys, *extra):
    return run_cli(["--predictions", tmp_path / "pred", "--labels", tmp_path / "gt",
                    "--output", tmp_path / "out", "--no-progress", *extra], capsys)


def test_a_prediction_in_another_geometry_is_refused_unless_ignore_geometry(tmp_path, capsys):
    shifted = np.diag([0.8, 0.8, 2.0, 1.0])
    shifted[:3, 3] = (5.0, 0.0, 0.0)
    _pairs(tmp_path, [np.diag([0.8, 0.8, 2.0, 1.0]), np.diag([0.8, 0.8, 2.0, 1.0]), shifted])
    code, _, err = _score(tmp_path, capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1
    assert str(tmp_path / "pred" / "c.nii.gz") in lines[0]
    assert str(tmp_path / "gt" / "c.nii.gz") in lines[0] and "--ignore-geometry" in lines[0]
    assert not (tmp_path / "out" / "metrics.csv").exists()  # refused before scoring a or b
    code, _, err = _score(tmp_path, capsys, "--ignore-geometry")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["ignore_geometry"] is True and summary["geometry_ignored"] == ["c"]
    assert summary["complete"] is True and summary["n_cases"] == 3


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_in_a_label_file_is_an_error_naming_it(tmp_path, capsys, value):
    _pairs(tmp_path)
    label = np.zeros((12, 10, 4), np.float32)
    label[0, 0, 0] = value
    write_nifti(tmp_path / "gt" / "b.nii.gz", label, np.diag([0.8, 0.8, 2.0, 1.0]))
    code, _, err = _score(tmp_path, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{tmp_path / 'gt' / 'b.nii.gz'}: label contains NaN or infinite values" in err


def test_an_interrupted_run_keeps_the_cases_it_scored(tmp_path, monkeypatch):
    _pairs(tmp_path)
    real, calls = scoring.case_metrics, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "case_metrics", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate_predictions(tmp_path / "pred", tmp_path / "gt", tmp_path / "out",
                                        "mm", ["organ"], progress=False)
    assert [r["case"] for r in read_csv(tmp_path / "out" / "metrics.csv")] == ["a", "b"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["complete"] is False and summary["n_cases"] == 2
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_overwrite_clears_stale_predictions_and_a_failed_run_leaves_results_alone(
        workspace, tmp_path, capsys):
    out = tmp_path / "seg"
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(workspace / "phantom/RawData/Training/img/img0001.nii.gz", scans / "one.nii.gz")
    args = ["--checkpoint", workspace / "tiny.pth", "--input", scans, "--output", out,
            "--no-progress"]
    shutil.copy(scans / "one.nii.gz", scans / "old_case.nii.gz")
    assert run_cli(args, capsys)[0] == 0
    (scans / "old_case.nii.gz").unlink()  # its prediction is stale now
    (out / "my_notes.txt").write_text("kept")
    (out / "predictions" / "one_corrected.nii.gz").write_bytes(b"the user's own correction")
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "--overwrite" in err
    # A run that fails its checks removes nothing.
    (scans / "two.nii.gz").write_bytes(b"\x1f\x8b not a scan")
    code, _, err = run_cli(args + ["--overwrite"], capsys)
    assert code == 2 and "two.nii.gz" in err
    assert (out / "predictions" / "old_case.nii.gz").exists()
    (scans / "two.nii.gz").unlink()
    assert run_cli(args + ["--overwrite"], capsys)[0] == 0
    written = sorted(p.name for p in (out / "predictions").iterdir())
    assert "old_case.nii.gz" not in written and "one.nii.gz" in written
    assert (out / "my_notes.txt").read_text() == "kept"
    assert (out / "predictions" / "one_corrected.nii.gz").read_bytes() == (
        b"the user's own correction")


def test_a_bad_case_fails_before_any_scoring(workspace, tmp_path, capsys):
    """The integrity check runs first: a truncated third label fails before case 1 is scored
    (results are written after each case, so scoring case 1 would leave a metrics.csv)."""
    root = tmp_path / "phantom"
    shutil.copytree(workspace / "phantom", root)
    label = root / "RawData/Training/label/label0003.nii.gz"
    label.write_bytes(label.read_bytes()[:200])
    code, _, err = run_cli(["--volume", "--dataset", "phantom", "--root", root, "--checkpoint",
                            workspace / "tiny.pth", "--output", tmp_path / "o",
                            "--set", "data.test_cases=[1,2,3]", "--no-progress"], capsys)
    assert code == 2 and str(label) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "metrics.csv").exists()


def test_cli_refuses_unreadable_configs_and_checkpoints_in_one_line(workspace, tmp_path):
    (tmp_path / "notes.pth").write_text("0\n1\nthese are notes\n")
    (tmp_path / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    runs = [
        ([ROOT / "test.py", "--volume", "--dataset", "synapse", "--root", workspace / "phantom",
          "--checkpoint", tmp_path / "notes.pth"], "notes.pth: not a readable PyTorch checkpoint"),
        ([ROOT / "train.py", "--dataset", "phantom", "--config", tmp_path / "binary.yaml",
          "--output", tmp_path / "run"], "binary.yaml: not a text file"),
    ]
    for args, message in runs:
        done = subprocess.run([sys.executable] + [str(a) for a in args], capture_output=True,
                              text=True, cwd=tmp_path, timeout=300)
        lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2, done.stderr
        assert len(lines) == 1 and message in lines[0], done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_files_being_read_are_never_results_to_clear_or_overwrite(workspace, tmp_path, capsys):
    out = tmp_path / "out"
    _pairs(tmp_path)
    shutil.move(tmp_path / "pred", out / "predictions")  # scoring an earlier --input run
    args = ["--predictions", out / "predictions", "--labels", tmp_path / "gt", "--output", out,
            "--no-progress"]
    assert run_cli(args, capsys)[0] == 0
    assert run_cli(args + ["--overwrite"], capsys)[0] == 0
    assert sorted(p.name for p in (out / "predictions").iterdir()) == [
        "a.nii.gz", "b.nii.gz", "c.nii.gz"]
    shutil.copy(workspace / "phantom/RawData/Training/img/img0001.nii.gz",
                out / "predictions" / "scan.nii.gz")
    code, _, err = run_cli(["--checkpoint", workspace / "tiny.pth", "--input",
                            out / "predictions", "--output", out, "--overwrite",
                            "--no-progress"], capsys)
    assert code == 2 and "reads it and would write over it" in err
    assert (out / "predictions" / "scan.nii.gz").stat().st_size > 1000
