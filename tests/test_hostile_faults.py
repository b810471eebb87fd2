"""A full disk and read-only folders during train.py and test.py: one line, nothing lost.

Each test mounts a small tmpfs, so it runs only as root (skipped otherwise).
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datasets import generate_phantom

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.img_size=64", "model.embed_dim=12", "model.depths=[1,1,1,1]",
        "model.num_heads=[1,1,1,1]", "model.window_size=2", "train.batch_size=8",
        "train.val_every=1", "data.num_workers=0", "train.cpu_threads=1"]


def _mount(folder: Path, *options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *options, str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount: {done.stderr.strip()}")


@pytest.fixture
def disk(tmp_path):
    """A 24 MiB tmpfs, unmounted (with anything bound inside it) after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "disk"
    _mount(folder, "-t", "tmpfs", "-o", "size=24m", "tmpfs")
    yield folder
    for line in reversed(Path("/proc/mounts").read_text().splitlines()):
        point = line.split()[1]
        if point == str(folder) or point.startswith(f"{folder}/"):
            subprocess.run(["umount", point], check=False)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return generate_phantom(tmp_path_factory.mktemp("data") / "phantom", "abdomen", n_cases=3,
                            shape=(64, 64, 4))


def _fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` up to ``leave`` free bytes."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with open(disk / "filler", "wb") as handle:
        handle.write(bytes(max(free - leave, 0)))


def _read_only(folder: Path) -> None:
    _mount(folder, "--bind", str(folder))
    _mount(folder, "-o", "remount,ro,bind")


def _run(script: str, *args: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True,
                          text=True, cwd=REPO, timeout=600)
    lines = [line for line in done.stderr.splitlines()
             if line.startswith(("error:", "Traceback", "Exception"))]
    return done.returncode, "\n".join(lines)


def _train(phantom, output, epochs, *extra):
    args = ["--quiet", "--device", "cpu", "--dataset", "phantom", "--root", str(phantom),
            "--output", str(output), *extra]
    for item in TINY + [f"train.epochs={epochs}"]:
        args += ["--set", item]
    return _run("train.py", *args)


def _test(checkpoint, phantom, output, *extra):
    return _run("test.py", "--volume", "--dataset", "phantom", "--root", str(phantom),
                "--checkpoint", str(checkpoint), "--output", str(output), "--save-nifti",
                "--no-progress", *extra)


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "filler"}


def _no_temporaries(folder: Path) -> None:
    left = [p for p in folder.rglob("*") if ".tmp" in p.name]
    assert not left, left


def _one_line(code, err, cause, under):
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert f"({cause})" in err.lower() and str(under) in err, err


@pytest.fixture(scope="module")
def trained(phantom, tmp_path_factory):
    """A finished one-epoch run on an ordinary disk: the checkpoint test.py reads."""
    run = tmp_path_factory.mktemp("trained") / "run"
    code, err = _train(phantom, run, 1)
    assert code == 0, err
    return run / "checkpoints" / "best.pth"


def test_train_on_a_full_then_read_only_disk_is_one_line_and_keeps_the_run(disk, phantom):
    run = disk / "run"
    code, err = _train(phantom, run, 1)
    assert code == 0, err
    before = _files(run / "checkpoints")
    _fill(disk, 64 << 10)
    code, err = _train(phantom, run, 2, "--resume")
    _one_line(code, err, "no space left on device", run)
    assert _files(run / "checkpoints") == before
    _no_temporaries(run)
    (disk / "filler").unlink()
    before = _files(run)
    _mount(disk, "-o", "remount,ro")
    code, err = _train(phantom, run, 2, "--resume")
    _one_line(code, err, "read-only file system", run)
    assert _files(run) == before


@pytest.mark.parametrize("folder", ["checkpoints", "tensorboard"])
def test_a_read_only_subfolder_of_a_run_is_one_line_naming_it(disk, phantom, folder):
    run = disk / "run"
    (run / folder).mkdir(parents=True)
    _read_only(run / folder)
    code, err = _train(phantom, run, 1)
    _one_line(code, err, "read-only file system", run / folder)
    _no_temporaries(run)


def test_test_py_on_a_full_disk_is_one_line_and_leaves_no_temporary(disk, phantom, trained):
    _fill(disk, 40 << 10)
    code, err = _test(trained, phantom, disk / "out")
    _one_line(code, err, "no space left on device", disk / "out")
    _no_temporaries(disk / "out")


def test_test_py_into_a_read_only_folder_keeps_the_earlier_results(disk, phantom, trained):
    out = disk / "out"
    code, err = _test(trained, phantom, out)
    assert code == 0, err
    before = _files(out)
    _read_only(out)
    code, err = _test(trained, phantom, out, "--overwrite")
    _one_line(code, err, "read-only file system", out)
    assert _files(out) == before
