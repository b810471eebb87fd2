"""The project's data-set package: the clone's ``datasets/`` folder, or ``swin_unet_datasets``.

In the clone the data sets are the top-level package ``datasets`` (``python train.py``, the
tests and the benchmarks import it so). Installed, the same code is ``swin_unet_datasets``: a
top-level ``datasets`` in site-packages would shadow Hugging Face's package of that name (a
common install beside PyTorch). Every import of the data layer from the library and the
command lines goes through :func:`project_datasets`, which finds the right one; in a clone
where another ``datasets`` comes first on ``sys.path``, the clone's folder is loaded as
``swin_unet_datasets``, so that ``import datasets`` keeps giving the other package.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

from .config import REPO_ROOT
from .errors import InputError, format_error

__all__ = ["project_datasets", "add_dataset_option", "INSTALLED_NAME"]

INSTALLED_NAME = "swin_unet_datasets"
_CLONE = REPO_ROOT / "datasets"  # beside the package in a clone (also an editable install)


def _is_clone_folder(path: Optional[str]) -> bool:
    return path is not None and Path(path).resolve().parent == _CLONE.resolve()


def _missing_requirement(exc: ModuleNotFoundError, clone: bool) -> InputError:
    hint = (f"pip install -r {REPO_ROOT / 'requirements.txt'}" if clone
            else f"pip install {exc.name}")
    return InputError(f"the data layer needs the package '{exc.name}', which is not "
                      f"installed: {hint}", path=_CLONE if clone else None)


def _load_clone_as_installed_name() -> ModuleType:
    """The clone's folder as ``swin_unet_datasets`` (its own imports are relative)."""
    spec = importlib.util.spec_from_file_location(
        INSTALLED_NAME, _CLONE / "__init__.py", submodule_search_locations=[str(_CLONE)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[INSTALLED_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[INSTALLED_NAME]
        raise
    return module


def _clone_datasets() -> ModuleType:
    module = sys.modules.get("datasets")
    if module is not None and _is_clone_folder(getattr(module, "__file__", None)):
        return module
    loaded = sys.modules.get(INSTALLED_NAME)
    if loaded is not None and _is_clone_folder(getattr(loaded, "__file__", None)):
        return loaded
    if module is None:
        try:
            spec = importlib.util.find_spec("datasets")
        except (ImportError, ValueError):
            spec = None
        if spec is not None and _is_clone_folder(spec.origin):
            return importlib.import_module("datasets")  # the clone's, as its scripts import it
    # Another ``datasets`` (Hugging Face's) comes first, or the clone is not on sys.path.
    return _load_clone_as_installed_name()


def project_datasets() -> ModuleType:
    """This project's data-set package.

    Returns
    -------
    module
        ``datasets`` or ``swin_unet_datasets`` (``open_dataset``, ``DATASET_NAMES``, ...):
        the clone's folder when the library runs from a clone, the installed package else.

    Raises
    ------
    InputError
        A package the data layer needs (h5py, ...) is not installed, or the install lacks the
        data-set package.
    """
    # A clone holds train.py beside the folder; installed, site-packages/datasets may be
    # Hugging Face's.
    clone = (REPO_ROOT / "train.py").is_file() and (_CLONE / "registry.py").is_file()
    try:
        if clone:
            return _clone_datasets()
        return importlib.import_module(INSTALLED_NAME)
    except ModuleNotFoundError as exc:
        if exc.name == INSTALLED_NAME:
            raise InputError(f"the data-set package '{INSTALLED_NAME}' is not installed "
                             f"beside swin_unet (an incomplete install: reinstall "
                             f"swin-unet)") from None
        raise _missing_requirement(exc, clone) from None


def add_dataset_option(parser: argparse.ArgumentParser, **kwargs) -> None:
    """``--dataset`` with the data-set table's names as its choices (every command line).

    A data layer that cannot be imported ends the command with its one-line error and
    status 2.
    """
    try:
        names = project_datasets().DATASET_NAMES
    except InputError as exc:
        parser.exit(2, format_error(exc) + "\n")
    parser.add_argument("--dataset", choices=names, **kwargs)
