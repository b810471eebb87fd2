"""The built wheel: its contents, and in a fresh virtual environment every swin-unet command
from a folder outside the clone, as the clone's scripts do there (slow: builds, installs, trains).

The library, the data-set code (as `swin_unet_datasets`) and the configs install and work from
any folder, beside another top-level `datasets` package."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.img_size=32", "model.embed_dim=12", "model.depths=[1,1,1,1]",
        "model.num_heads=[1,1,1,1]", "model.window_size=2", "train.epochs=1",
        "train.batch_size=4", "train.val_every=1", "train.cpu_threads=1"]


def build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of the clone's packaged files (no build isolation: offline)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(REPO / name, source / name)
    for name in ("swin_unet", "datasets", "configs"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp_path / "wheel")],
                           capture_output=True, text=True, errors="replace", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("swin_unet-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("build"))


def run(command, cwd, env=None, timeout=900):
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                          text=True, errors="replace", timeout=timeout)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel):
    """(venv bin folder, work folder outside the clone, environment without the clone)."""
    base = tmp_path_factory.mktemp("wheel")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", venv], base)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    # torch, MONAI and the rest from this environment, behind the venv's own packages.
    own = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base)
    Path(own.strip(), "_outer_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], base)
    work = base / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    run([python, "-c", "from swin_unet_datasets import generate_phantom; generate_phantom("
                       "'data/phantom', n_cases=3, shape=(32, 32, 4))"], work, env)
    return bin_dir, work, env


def clone(script, *args, cwd, env):
    """The clone's script run with the test's own Python (no swin_unet installed there)."""
    return run([sys.executable, REPO / script, *args], cwd, {**env, "PATH": os.environ["PATH"]})


def sets(items):
    return [a for item in items for a in ("--set", item)]


def test_train_test_predict_export_from_elsewhere_as_the_clone_does(installed):
    bin_dir, work, env = installed
    tool = bin_dir / "swin-unet"
    where = run([bin_dir / "python", "-c", "import swin_unet, swin_unet_datasets, importlib.util;"
                 "print(swin_unet.__file__); print(importlib.util.find_spec('datasets'))"],
                work, env).splitlines()
    assert str(REPO) not in where[0] and where[1] == "None"

    run([tool, "train", "--dataset", "phantom", "--output", "runs/installed", "--device", "cpu",
         "--quiet", *sets(TINY)], work, env)
    clone("train.py", "--dataset", "phantom", "--output", "runs/clone", "--device", "cpu",
          "--quiet", *sets(TINY), cwd=work, env=env)
    installed_config = (work / "runs/installed/config.yaml").read_text()
    assert installed_config == (work / "runs/clone/config.yaml").read_text()
    assert "dataset: phantom" in installed_config and "optimizer: adamw" in installed_config

    best = "runs/installed/checkpoints/best.pth"
    scored = {}
    for name, command in (("installed", [tool, "test"]), ("clone", None)):
        args = ["--volume", "--dataset", "phantom", "--checkpoint", best, "--output",
                f"test_{name}", "--device", "cpu", "--no-progress", "--no-report"]
        run(command + args, work, env) if command else clone("test.py", *args, cwd=work, env=env)
        scored[name] = (work / f"test_{name}" / "metrics.csv").read_text()
    assert scored["installed"] == scored["clone"] and scored["installed"].count("\n") > 8

    scan = next((work / "data/phantom").rglob("img*.nii.gz"))
    run([tool, "predict", "--checkpoint", best, "--input", scan, "--output", "pred",
         "--device", "cpu", "--no-progress", "--no-report"], work, env)
    clone("test.py", "--volume", "--checkpoint", best, "--input", scan, "--output", "pred_clone",
          "--device", "cpu", "--no-progress", "--no-report", cwd=work, env=env)
    (predicted,) = (work / "pred/predictions").glob("*.nii.gz")
    labels = np.asanyarray(nib.load(predicted).dataobj)
    np.testing.assert_array_equal(
        labels, np.asanyarray(nib.load(work / "pred_clone/predictions" / predicted.name).dataobj))
    np.save(work / "labels.npy", labels)
    run([bin_dir / "python", "-c",
         f"import numpy as np; from swin_unet import Predictor\n"
         f"p = Predictor.from_checkpoint({best!r}, device='cpu')\n"
         f"assert (p.predict_file({str(scan)!r}) == np.load('labels.npy')).all()"], work, env)

    out = run([tool, "export", "--checkpoint", best, "--output", "model.onnx"], work, env)
    assert float(out.split(" = ")[1].split()[0]) <= 1e-4
    run([tool, "predict", "--checkpoint", best, "--input", scan, "--output", "pred_onnx",
         "--engine", "onnxruntime", "--onnx", "model.onnx", "--no-progress", "--no-report"],
        work, env)
    onnx_labels = np.asanyarray(nib.load(work / "pred_onnx/predictions" / predicted.name).dataobj)
    assert (onnx_labels == labels).mean() >= 0.999

    image = work / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30), np.uint8)).save(image)
    run([tool, "predict", "--checkpoint", best, "--input", image, "--output", "pred_png",
         "--no-progress", "--no-report"], work, env)
    assert (work / "pred_png/predictions/photo.png").is_file()

    run([tool, "explain", "--help"], work, env)
    summary = json.loads((work / "test_installed" / "summary.json").read_text())
    assert summary["n_cases"] >= 1


def test_hugging_face_datasets_beside_it_keeps_its_name(installed):
    bin_dir, work, env = installed
    got = subprocess.run([bin_dir / "python", "-m", "pip", "install", "-q", "datasets"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=900)
    if got.returncode != 0:
        pytest.skip(f"Hugging Face's datasets could not be installed: {got.stderr[-300:]}")
    out = run([bin_dir / "python", "-c",
               "import datasets; print(hasattr(datasets, 'load_dataset'))\n"
               "from swin_unet.data_layer import project_datasets\n"
               "print(project_datasets().__name__)"], work, env)
    assert out.split() == ["True", "swin_unet_datasets"]
    run([bin_dir / "swin-unet", "train", "--dataset", "phantom", "--output", "runs/hf",
         "--device", "cpu", "--quiet", *sets(TINY)], work, env)
    assert (work / "runs/hf/checkpoints/best.pth").is_file()


def test_wheel_installs_library_data_sets_configs_and_command(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry_points = archive.read(next(n for n in names
                                         if n.endswith("entry_points.txt"))).decode()
    assert {n.split("/")[0] for n in names} == {
        "swin_unet", "swin_unet_datasets", wheel.name.split("-py3")[0] + ".dist-info"}
    site = tmp_path / "site"
    for config in (REPO / "configs").glob("*.yaml"):
        assert (site / "swin_unet" / "configs" / config.name).read_bytes() == config.read_bytes()
    assert "Requires-Dist: torch" in metadata and "Requires-Dist: monai" in metadata
    assert "Provides-Extra: onnx" in metadata
    assert "swin-unet = swin_unet.cli:main" in entry_points
    # Hugging Face's package name taken, and imported first, in an unrelated folder.
    fake = tmp_path / "hf" / "datasets"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("load_dataset = 'theirs'\n")
    (site / "swin_unet" / "configs" / "acdc.yaml").unlink()  # an incomplete install
    script = f"""
import sys
sys.path[:0] = [{str(site)!r}, {str(fake.parent)!r}]
import datasets, importlib, pkgutil
from swin_unet.data_layer import project_datasets
from swin_unet.config import dataset_config_path
from swin_unet.errors import InputError
from swin_unet.training import resolve_run_config
ours = project_datasets()
for module in pkgutil.iter_modules(ours.__path__):  # each one's own imports work installed
    importlib.import_module(ours.__name__ + "." + module.name)
print(ours.__name__, ours.__file__.startswith({str(site)!r}), datasets.load_dataset)
print(str(dataset_config_path("phantom").parent) == {str(site / "swin_unet" / "configs")!r})
config = resolve_run_config("phantom", "runs/x")[0]
print(config.dataset, config.train.epochs, config.data.augment)
try:
    resolve_run_config("acdc", "runs/y")
except InputError as exc:
    print("error:", exc)
"""
    work = tmp_path / "elsewhere"
    work.mkdir()
    run = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True,
                         cwd=work, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "swin_unet_datasets True theirs"
    assert lines[1] == "True"
    import yaml
    phantom = yaml.safe_load((REPO / "configs" / "phantom.yaml").read_text())
    assert lines[2] == f"phantom {phantom['train']['epochs']} {phantom['data']['augment']}"
    assert lines[3].startswith(f"error: {site / 'swin_unet' / 'configs' / 'acdc.yaml'}: the "
                               f"config of data set 'acdc' is missing")
