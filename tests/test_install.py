"""`pip install .`: the library, the data-set code (as `swin_unet_datasets`) and the configs
install and work from any folder, beside another top-level `datasets` package."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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


def test_every_package_folder_is_listed_for_the_wheel():
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    folders = {".".join(p.parent.relative_to(REPO).parts)
               for p in (REPO / "swin_unet").rglob("__init__.py")}
    assert folders | {"swin_unet.configs", "swin_unet_datasets"} == listed


def test_wheel_installs_library_data_sets_configs_and_command(tmp_path):
    wheel = build_wheel(tmp_path)
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
