"""Claiming a run folder: never over a finished run by accident, never two processes at once."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Optional, Union

from ..errors import InputError
from ..io.folders import TRAIN_RUN, Manifest, RunLock, check_output_folder, remove_written

__all__ = ["RUN_MARKERS", "LOCK_NAME", "existing_run", "clear_run", "RunLock", "claim_run_folder",
           "run_manifest"]

logger = logging.getLogger(__name__)

# A folder holding any of these holds a run: its config or its checkpoints.
RUN_MARKERS = ("config.yaml", "checkpoints/last.pth", "checkpoints/best.pth")
LOCK_NAME = TRAIN_RUN.lock_name


def existing_run(folder: Path) -> Optional[Path]:
    """The first file that shows ``folder`` holds a run, or None."""
    return next((folder / name for name in RUN_MARKERS if (folder / name).exists()), None)


def run_manifest(folder: Union[str, Path]) -> Manifest:
    """The record of the files train.py wrote in ``folder``."""
    return TRAIN_RUN.manifest(folder)


def clear_run(folder: Path, reads: Iterable[Union[str, Path]] = ()) -> list[Path]:
    """Remove the files of the run in ``folder`` (for ``--overwrite``); returns what it removed.

    Exactly the files the folder's record says a run wrote (so the curves of two runs never mix
    in TensorBoard); a folder without a record (an older run) loses only the files a run
    writes by name. Anything else the user keeps there stays, and is listed in the log.

    Raises
    ------
    InputError
        A file this run reads (``reads``: ``--pretrained``) is among them; nothing is removed.
    """
    return remove_written(folder, TRAIN_RUN.written(folder), reads)


def claim_run_folder(folder: Union[str, Path], resume: bool, overwrite: bool,
                     reads: Iterable[Union[str, Path]] = ()) -> RunLock:
    """Make ``folder`` this run's: refuse a folder in use or holding a run, take its lock.

    Parameters
    ----------
    folder : str or Path
        The run folder (created if missing).
    resume : bool
        The run continues the one in the folder (``--resume``).
    overwrite : bool
        Start afresh: the earlier run's files are removed, after the lock is taken.
    reads : paths
        Files the run reads (``--pretrained``): refused if ``overwrite`` would remove them.

    Returns
    -------
    RunLock
        Held; release it when the run ends.

    Raises
    ------
    InputError
        ``folder`` is a file, is in use by another process, or holds a run and neither
        ``resume`` nor ``overwrite`` is given; the message names the folder and both ways on.
    """
    folder = check_output_folder(folder)
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other: --resume continues the "
                         "run in the folder, --overwrite deletes it")
    lock = TRAIN_RUN.claim(folder)
    try:
        found = existing_run(folder)
        if found is not None and not (resume or overwrite):
            raise InputError(f"{folder}: holds a run ({found.relative_to(folder)} exists); pass "
                             f"--resume to continue it, or --overwrite to delete it and start "
                             f"afresh", path=folder)
        if overwrite:
            clear_run(folder, reads)
        run_manifest(folder).start()
    except BaseException:
        lock.release()
        raise
    return lock
