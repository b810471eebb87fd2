"""test.py's output folder: earlier results refused, or cleared only when asked and safe."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

from .errors import InputError

__all__ = ["RESULT_FILES", "RESULT_FOLDERS", "result_files", "check_output", "remove_results"]

logger = logging.getLogger(__name__)

RESULT_FILES = ("metrics.csv", "summary.json", "report.html")
# Result folders and the files test.py writes in them.
RESULT_FOLDERS = {"predictions": ("*.nii.gz", "*.png", "*.ctbl", "*.txt"),
                  "figures": ("*.png", "*.svg", "*.pdf"), "overlays": ("*.png",)}


def result_files(output: Path) -> list[Path]:
    """What a test.py run writes into ``output`` and is there: tables, predictions, figures."""
    output = Path(output)
    found = [output / name for name in RESULT_FILES if (output / name).is_file()]
    for folder, patterns in RESULT_FOLDERS.items():
        if (output / folder).is_dir():
            found += sorted(p for pattern in patterns for p in (output / folder).glob(pattern)
                            if p.is_file())
    return found


def check_output(output: Path, overwrite: bool, files: Iterable[Path] = (),
                 keep: Iterable[Path] = ()) -> list[Path]:
    """Refuse to replace an earlier run's results unless ``overwrite``; return those results.

    Nothing is removed here: the caller checks its inputs first, then removes the returned
    files with :func:`remove_results`, so a run that fails its checks leaves the earlier
    results as they were. ``keep`` are the folders being read (``--predictions``,
    ``--labels``, ``--input``): an output whose clearing would touch them is refused.

    Raises
    ------
    InputError
        ``output`` is a file, holds results (tables, predictions, figures, or one of
        ``files``) and ``overwrite`` is not given, or clearing it would touch ``keep``.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: --output exists and is not a folder", path=output)
    existing = result_files(output) if output.is_dir() else []
    existing += [f for f in files if f.is_file() and f not in existing]
    if existing and not overwrite:
        raise InputError(f"{existing[0]}: exists from an earlier run; pass --overwrite or "
                         f"choose another --output", path=existing[0])
    for folder in keep:
        folder = Path(folder).resolve()
        if any(folder in p.resolve().parents for p in existing):
            raise InputError(f"{output}: --overwrite would delete files of {folder}, which "
                             f"this run reads; choose another --output", path=output)
    return existing


def remove_results(output: Path, stale: Sequence[Path]) -> None:
    """Remove an earlier run's results (from :func:`check_output`) before writing new ones."""
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        logger.info("--overwrite: removed %d result file(s) of an earlier run in %s",
                    len(stale), output)
