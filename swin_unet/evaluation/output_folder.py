"""test.py's output folder: earlier results refused or cleared when asked; results written as they come."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

from ..errors import InputError
from ..io.folders import (MANIFEST_NAME, TEST_RESULTS, RunLock, check_output_folder,
                          check_reads, remove_written)
from .metrics import summarize
from ..report.tables import write_metrics_csv, write_summary_json

__all__ = ["RunResult", "RESULT_FILES", "LOCK_NAME", "result_files",
           "check_output", "remove_results", "write_results", "claim_output", "claimed_output", "finish_output"]

logger = logging.getLogger(__name__)

LOCK_NAME = TEST_RESULTS.lock_name
# The tables and the page, named first when earlier results are listed.
RESULT_FILES = tuple(name for name in TEST_RESULTS.writes if "/" not in name)


@dataclass
class RunResult:
    """What a test.py run produced."""

    summary: Optional[dict] = None
    per_case: dict = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kind: str = "dataset"  # "dataset", "predictions" or "input" (EvaluationRequest.kind)
    output: Optional[Path] = None
    report: Optional[Path] = None  # report.html, unless the run was asked for none
    tables: list[str] = field(default_factory=list)  # printed instead of the summary's table


def result_files(output: Path) -> list[Path]:
    """What a test.py run writes into ``output`` and is there: tables, predictions, figures."""
    return TEST_RESULTS.files_by_name(output)


def claim_output(output: Path) -> RunLock:
    """Make ``output`` this run's: created if missing, its lock taken (one test.py at a time).

    Raises
    ------
    InputError
        ``output`` is a file or a dangling link, cannot be created, or another process holds
        its lock (the message names the lock file).
    """
    return TEST_RESULTS.claim(output)


def check_output(output: Path, overwrite: bool, files: Iterable[Path] = (),
                 keep: Iterable[Path] = ()) -> list[Path]:
    """Refuse to replace an earlier run's results unless ``overwrite``; return those results.

    An earlier run's results are exactly the files its record (the folder's manifest) lists;
    files of the user's are never results. Nothing is removed here: the caller checks its
    inputs first, then removes the returned files with :func:`remove_results`, so a run that
    fails its checks leaves the earlier results as they were. ``files`` are those the run will
    write; ``keep`` the files and folders it reads (``--checkpoint``, ``--predictions``,
    ``--labels``, the ``--input`` scans).

    Raises
    ------
    InputError
        ``output`` is a file; a file to write is one the run reads or one the user's; the
        folder holds results without ``overwrite``; with ``overwrite``, a file the run reads
        is among the results to remove, or the folder holds results but no record of them.
    """
    output = check_output_folder(output)
    keep = [Path(k) for k in keep]
    inputs = [k.resolve() for k in keep]

    def is_input(path: Path) -> bool:
        path = path.resolve()
        return any(k == path or k in path.parents for k in inputs)

    files = list(files)
    clash = next((f for f in files if f.exists() and is_input(f)), None)
    if clash is not None:
        raise InputError(f"{clash}: this run reads it and would write over it; choose another "
                         f"--output", path=clash)
    manifest = TEST_RESULTS.manifest(output)
    ours = manifest.written()
    foreign = next((f for f in files if (f.is_file() or f.is_symlink()) and f not in ours), None)
    if foreign is not None and manifest.exists():
        raise InputError(f"{foreign}: exists and was not written by test.py; move it or choose "
                         f"another --output", path=foreign)
    # Named first: what this run would replace, then the tables, then the rest.
    existing = [f for f in files if f in ours] + sorted(
        (f for f in ours if f not in files),
        key=lambda f: (f.name not in RESULT_FILES, RESULT_FILES.index(f.name)
                       if f.name in RESULT_FILES else 0, str(f)))
    if not manifest.exists():  # results of a run that kept no record, or the user's files
        existing = ([f for f in files if f.is_file()]
                    + [f for f in (result_files(output) if output.is_dir() else [])
                       if f not in files and not is_input(f)])
        if existing and overwrite:
            raise InputError(f"{existing[0]}: exists, and {output} has no record of the files "
                             f"test.py wrote ({MANIFEST_NAME}); remove them yourself or choose "
                             f"another --output", path=existing[0])
    if existing and not overwrite:
        raise InputError(f"{existing[0]}: exists from an earlier run; pass --overwrite or "
                         f"choose another --output", path=existing[0])
    check_reads(existing, keep)
    return existing


@contextmanager
def claimed_output(output: Path) -> Iterator[None]:
    """``output`` held by this run (:func:`claim_output`); on leaving, the files it wrote are
    recorded, the lock released, and a folder it created but left empty removed."""
    created = not Path(output).exists()
    lock = claim_output(output)
    try:
        yield
    finally:
        try:
            finish_output(output)
        finally:
            lock.release()
            if created and output.is_dir() and not any(output.iterdir()):
                output.rmdir()  # refused before writing anything: no empty folder left


def remove_results(output: Path, stale: Sequence[Path]) -> None:
    """Remove an earlier run's results (from :func:`check_output`) and start this run's record
    of the files it writes."""
    remove_written(output, stale)
    TEST_RESULTS.manifest(output).start()


def finish_output(output: Path) -> None:
    """Record the files this run wrote (whatever happened)."""
    TEST_RESULTS.manifest(output).finish()


def write_results(output: Path, per_case: dict, class_names: list[str], mode: str, result,
                  complete: bool, report=None, distance_unit: str = "mm", **extra):
    """metrics.csv and summary.json of the cases scored so far (``complete`` False until all).

    Called after every case, so an interrupted run keeps what it scored. ``result`` (an
    :class:`RunResult`) gets the summary; once ``complete``, also the
    written paths and ``report``'s page (a :class:`~swin_unet.report.builder.ReportBuilder`).
    Returns ``result``.
    """
    summary = summarize(per_case, class_names, mode, distance_unit)
    write_metrics_csv(output / "metrics.csv", per_case, class_names)
    # The values predictions hold: the data set's class order (Synapse: the 8-organ order,
    # not BTCV's raw label numbers).
    labels = {"0": "background", **{str(i): name for i, name in enumerate(class_names, 1)}}
    write_summary_json(output / "summary.json", summary, notes=result.notes, complete=complete,
                       label_values=labels, **extra)
    result.summary, result.per_case = summary, per_case
    if complete:
        result.written += [output / "metrics.csv", output / "summary.json"]
        result.report = report.write(summary, result.notes) if report is not None else None
    return result
