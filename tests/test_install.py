"""`pip install .`: the library installs and works from any folder, with no top-level `datasets`."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_holds_the_library_only_and_works_from_elsewhere(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "swin_unet", source / "swin_unet",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "datasets", source / "datasets",
                    ignore=shutil.ignore_patterns("__pycache__"))  # present, yet not packaged
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp_path / "wheel")],
                           capture_output=True, text=True, errors="replace", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("swin_unet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    assert {n.split("/")[0] for n in names} == {"swin_unet", wheel.name.split("-py3")[0]
                                                + ".dist-info"}
    metadata = next(n for n in names if n.endswith("METADATA"))
    requires = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Requires-Dist: torch" in requires and "Requires-Dist: monai" in requires
    # From an unrelated folder, with only the installed files on the path (no clone).
    script = ("import swin_unet, torch\n"
              "m = swin_unet.SwinUnet(img_size=64, num_classes=3, embed_dim=12, window_size=2,"
              " num_heads=(1, 2, 2, 4)).eval()\n"
              "print(swin_unet.__file__, tuple(m(torch.zeros(1, 1, 64, 64)).shape))\n"
              "import importlib.util; print(importlib.util.find_spec('datasets'))\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    run = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, "
                          f"{str(tmp_path / 'site')!r}); exec({script!r})"],
                         capture_output=True, text=True, cwd=work)
    assert run.returncode == 0, run.stderr
    first, spec = run.stdout.splitlines()[:2]
    location, shape = first.split(" ", 1)
    assert location.startswith(str(tmp_path / "site")) and shape == "(1, 3, 64, 64)"
    assert spec == "None" or str(REPO) not in spec  # no `datasets` of ours installed
