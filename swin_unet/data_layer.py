"""The project's top-level ``datasets`` package, imported with a check that it is ours.

Hugging Face's ``datasets`` (a common install beside PyTorch) has the same top-level name. Run
from the repository root, Python finds ours first; run from elsewhere with the repository not
first on ``sys.path``, ``import datasets`` could silently return theirs. Every import of the
data layer from the library and the command lines goes through :func:`project_datasets`, which
says so in one line instead of failing later on a missing attribute.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

from .config import REPO_ROOT
from .errors import InputError, format_error

__all__ = ["project_datasets", "add_dataset_option"]

_OURS = REPO_ROOT / "datasets"


def project_datasets() -> ModuleType:
    """This project's ``datasets`` package.

    Returns
    -------
    module
        ``datasets`` from the repository (``open_dataset``, ``DATASET_NAMES``, ...).

    Raises
    ------
    InputError
        Another package named ``datasets`` (Hugging Face's, usually) is imported instead of
        ours; ``path`` is the impostor's location.
    """
    module = sys.modules.get("datasets")
    if module is None:
        try:
            module = importlib.import_module("datasets")
        except ModuleNotFoundError as exc:
            if exc.name != "datasets":  # ours was found, but a package it needs is missing
                raise InputError(f"the data layer needs the package '{exc.name}', which is not "
                                 f"installed: pip install -r {REPO_ROOT / 'requirements.txt'}",
                                 path=_OURS) from None
            raise InputError(f"no 'datasets' package can be imported: put {REPO_ROOT} (the "
                             f"repository) first on PYTHONPATH", path=_OURS) from None
    origin = Path(getattr(module, "__file__", None) or ".").resolve().parent
    if origin != _OURS.resolve():
        raise InputError(f"{origin}: 'import datasets' found this package, not the project's "
                         f"{_OURS} (Hugging Face's 'datasets' shadows it?); run from the "
                         f"repository root or put {REPO_ROOT} first on PYTHONPATH",
                         path=origin)
    return module


def add_dataset_option(parser: argparse.ArgumentParser, **kwargs) -> None:
    """``--dataset`` with the data-set table's names as its choices (both command lines).

    A shadowed ``datasets`` package ends the command with its one-line error and status 2.
    """
    try:
        names = project_datasets().DATASET_NAMES
    except InputError as exc:
        parser.exit(2, format_error(exc) + "\n")
    parser.add_argument("--dataset", choices=names, **kwargs)
