"""Packaging, without building the wheel (tests/test_wheel.py builds it, marked slow): every
package folder listed, the configs and the data-set code under their installed names, the
command's entry point."""

import fnmatch
import importlib
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_for_the_wheel():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(REPO).parts)
               for p in (REPO / "swin_unet").rglob("__init__.py")}
    assert folders | {"swin_unet.configs", "swin_unet_datasets"} == listed


def test_every_config_is_package_data_of_swin_unet_configs():
    setuptools = PYPROJECT["tool"]["setuptools"]
    folders = setuptools["package-dir"]
    assert (folders["swin_unet.configs"], folders["swin_unet_datasets"]) == ("configs", "datasets")
    patterns = setuptools["package-data"]["swin_unet.configs"]
    configs = sorted(p.name for p in (REPO / "configs").iterdir() if p.is_file())
    assert configs and all(any(fnmatch.fnmatch(name, pattern) for pattern in patterns)
                           for name in configs), configs


def test_the_command_is_the_cli_main():
    module, function = PYPROJECT["project"]["scripts"]["swin-unet"].split(":")
    assert function == "main" and callable(getattr(importlib.import_module(module), function))
