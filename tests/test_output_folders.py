"""--overwrite removes only what this project wrote; one writer per output folder."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from swin_unet.errors import InputError
from swin_unet.io.folders import MANIFEST_NAME, Manifest, remove_written
from swin_unet.training.run_folder import claim_run_folder
from test_test_cli import ROOT, run_cli
from test_test_cli_safety import _pairs, _score
import train as train_cli


def _errors(err):
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_overwrite_keeps_the_users_files_and_never_enters_a_linked_folder(tmp_path, capsys,
                                                                          caplog):
    _pairs(tmp_path)
    out = tmp_path / "out"
    assert _score(tmp_path, capsys)[0] == 0
    record = json.loads((out / MANIFEST_NAME).read_text())
    assert record["complete"] and "metrics.csv" in record["written"]
    (out / "README.md").write_text("mine")
    (out / "figures" / "my_drawing.png").write_bytes(b"mine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.nii.gz").write_bytes(b"mine")
    os.symlink(elsewhere, out / "predictions")
    caplog.set_level("INFO")
    code, _, err = _score(tmp_path, capsys, "--overwrite")
    assert code == 0, err
    assert "kept 3 file(s) it did not write: README.md, figures/my_drawing.png, predictions" \
        in caplog.text
    assert (out / "README.md").read_text() == "mine"
    assert (out / "figures" / "my_drawing.png").read_bytes() == b"mine"
    assert (elsewhere / "precious.nii.gz").read_bytes() == b"mine"
    assert json.loads((out / "summary.json").read_text())["complete"] is True


def test_a_file_the_run_reads_among_those_to_delete_is_refused_before_deleting(tmp_path):
    run = tmp_path / "run"
    lock = claim_run_folder(run, resume=False, overwrite=False)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best.pth").write_bytes(b"weights")
    (run / "config.yaml").write_text("dataset: phantom\n")
    Manifest(run, "train.py").finish()
    lock.release()
    code = train_cli.main(["--dataset", "phantom", "--output", str(run), "--overwrite",
                           "--pretrained", str(run / "checkpoints" / "best.pth")])
    assert code == 2
    assert (run / "checkpoints" / "best.pth").read_bytes() == b"weights"
    assert (run / "config.yaml").exists() and not (run / "train.lock").exists()
    with pytest.raises(InputError, match="--overwrite would delete .*best.pth, which this run"):
        remove_written(run, Manifest(run, "train.py").written(), [run / "checkpoints"])


def test_a_dangling_link_as_output_is_one_line(tmp_path, capsys):
    os.symlink(tmp_path / "gone", tmp_path / "link")
    assert train_cli.main(["--dataset", "phantom", "--output", str(tmp_path / "link")]) == 2
    assert "is a link to" in _errors(capsys.readouterr().err)[0]
    _pairs(tmp_path)
    code, _, err = run_cli(["--predictions", tmp_path / "pred", "--labels", tmp_path / "gt",
                            "--output", tmp_path / "link", "--no-progress"], capsys)
    assert code == 2 and len(_errors(err)) == 1 and "which does not exist" in err


def test_an_earlier_run_killed_before_its_record_was_complete_is_still_told_apart(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "mine.txt").write_text("mine")
    Manifest(folder, "test.py").start()
    (folder / "metrics.csv").write_text("case\n")  # then killed: no finish()
    assert Manifest(folder, "test.py").written() == [folder / "metrics.csv"]


# Another test.py holding the folder (its lock, as RunLock writes it), without importing torch.
_HOLDER = textwrap.dedent("""
    import os, socket, time
    with open({lock!r}, "x") as handle:
        handle.write(f"{{os.getpid()}} {{socket.gethostname()}}\\n")
    print("held", flush=True)
    time.sleep(120)
""")


def test_a_second_test_py_into_a_folder_in_use_refuses_at_once(tmp_path, capsys):
    _pairs(tmp_path)
    (tmp_path / "out").mkdir()
    lock = tmp_path / "out" / "test.lock"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER.format(lock=str(lock))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = _score(tmp_path, capsys)
        assert code == 2 and len(_errors(err)) == 1
        assert f"in use by process {holder.pid}" in err and str(lock) in err
        assert not (tmp_path / "out" / "metrics.csv").exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
    assert _score(tmp_path, capsys)[0] == 0  # the dead holder's lock is taken over
    assert not lock.exists()


@pytest.mark.slow  # two fresh interpreters: ~25 s on a loaded machine
def test_two_test_py_at_once_one_refuses_and_the_results_are_the_others(tmp_path):
    _pairs(tmp_path)
    command = [sys.executable, str(ROOT / "test.py"), "--predictions", str(tmp_path / "pred"),
               "--labels", str(tmp_path / "gt"), "--output", str(tmp_path / "out"),
               "--no-progress", "--no-report"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path) for _ in range(2)]
    done = [(r.wait(timeout=300), r.communicate()) for r in runs]
    codes = sorted(code for code, _ in done)
    # Both may finish one after the other (the second then finds results); never both 0.
    assert codes == [0, 2], done
    refused = next(err for code, (_, err) in done if code == 2)
    assert "in use by process" in refused or "exists from an earlier run" in refused
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["complete"] is True and summary["n_cases"] == 3
    assert np.isfinite(summary["mean_dice"])
