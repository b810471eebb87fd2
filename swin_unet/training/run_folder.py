"""Claiming a run folder: never over a finished run by accident, never two processes at once."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Optional, Union

from ..errors import InputError

__all__ = ["RUN_MARKERS", "LOCK_NAME", "existing_run", "clear_run", "RunLock", "claim_run_folder"]

logger = logging.getLogger(__name__)

# A folder holding any of these holds a run: its config or its checkpoints.
RUN_MARKERS = ("config.yaml", "checkpoints/last.pth", "checkpoints/best.pth")
LOCK_NAME = "train.lock"


def existing_run(folder: Path) -> Optional[Path]:
    """The first file that shows ``folder`` holds a run, or None."""
    return next((folder / name for name in RUN_MARKERS if (folder / name).exists()), None)


def _run_files(folder: Path) -> list[Path]:
    """What a run writes: config, log, folds, checkpoints (and temporaries), TensorBoard events."""
    files = [folder / "config.yaml", folder / "train.log", folder / "splits_final.json"]
    checkpoints, tensorboard = folder / "checkpoints", folder / "tensorboard"
    if checkpoints.is_dir():
        files += sorted(checkpoints.glob("*.pth")) + sorted(checkpoints.glob("*.pth.tmp"))
    if tensorboard.is_dir():
        files += sorted(tensorboard.rglob("events.out.tfevents.*"))
    return [f for f in files if f.is_file()]


def clear_run(folder: Path) -> list[Path]:
    """Remove the files of the run in ``folder`` (for ``--overwrite``); returns what it removed.

    Only files a run writes are removed (so the curves of two runs never mix in TensorBoard),
    and the ``checkpoints/`` and ``tensorboard/`` folders when that leaves them empty; anything
    else the user keeps there stays.
    """
    removed = _run_files(folder)
    for path in removed:
        path.unlink()
    for sub in ("checkpoints", "tensorboard"):
        for directory in sorted((folder / sub).rglob("*"), key=lambda p: -len(p.parts)) + [
                folder / sub]:
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
    if removed:
        logger.info("--overwrite: removed %d file(s) of the earlier run in %s", len(removed),
                    folder)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True


class RunLock:
    """``train.lock`` in a run folder: created atomically, holding the owner's pid and host.

    A lock whose process is gone (killed, crashed) is taken over; one held by a live process
    on this host makes :meth:`acquire` refuse. Taking over is itself atomic: the stale lock is
    renamed to a name unique to this process before a new one is created exclusively, so of
    two processes that find the same stale lock only one wins.
    """

    def __init__(self, folder: Union[str, Path]):
        self.path = Path(folder) / LOCK_NAME
        self.held = False

    def _owner_of(self, path: Path) -> Optional[int]:
        try:
            text = path.read_text(encoding="utf-8", errors="replace").split()
        except OSError:
            return None
        return int(text[0]) if text and text[0].isdigit() else None

    def _owner(self) -> tuple[Optional[int], str]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace").split()
        except OSError:
            return None, ""
        pid = int(text[0]) if text and text[0].isdigit() else None
        return pid, text[1] if len(text) > 1 else ""

    def acquire(self) -> None:
        """Take the lock.

        Raises
        ------
        InputError
            Another live process holds it; the message names the folder and the pid.
        """
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = self._owner()
                if pid is not None and (_pid_alive(pid) or host not in ("", socket.gethostname())):
                    raise InputError(f"{self.path.parent}: in use by process {pid}"
                                     f"{' on ' + host if host else ''} (lock file {self.path}); "
                                     f"wait for it to finish or choose another --output",
                                     path=self.path.parent) from None
                if pid is None and self._young():
                    raise InputError(f"{self.path.parent}: another process is starting in it "
                                     f"(lock file {self.path})", path=self.path.parent) from None
                stale = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
                try:
                    os.replace(self.path, stale)  # only one of several takers succeeds
                except FileNotFoundError:
                    continue
                if self._owner_of(stale) != pid:
                    # Another taker replaced the stale lock first: that was its live lock.
                    try:
                        os.link(stale, self.path)
                    except OSError:
                        pass
                    stale.unlink(missing_ok=True)
                    continue
                stale.unlink(missing_ok=True)
                logger.info("%s: took over the lock of process %s, which is gone", self.path,
                            pid)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(me)
            self.held = True
            return
        raise InputError(f"{self.path.parent}: could not take the lock {self.path}",
                         path=self.path.parent)

    def _young(self) -> bool:
        # A lock without a pid yet was created an instant ago by a process still writing it.
        try:
            return time.time() - self.path.stat().st_mtime < 5.0
        except OSError:
            return False

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held:
            pid, _ = self._owner()
            if pid == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False


def claim_run_folder(folder: Union[str, Path], resume: bool, overwrite: bool) -> RunLock:
    """Make ``folder`` this run's: refuse a folder in use or holding a run, take its lock.

    Parameters
    ----------
    folder : str or Path
        The run folder (created if missing).
    resume : bool
        The run continues the one in the folder (``--resume``).
    overwrite : bool
        Start afresh: the earlier run's files are removed, after the lock is taken.

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
    folder = Path(folder)
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other: --resume continues the "
                         "run in the folder, --overwrite deletes it")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: --output exists and is not a folder", path=folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = RunLock(folder)
    lock.acquire()
    try:
        found = existing_run(folder)
        if found is not None and not (resume or overwrite):
            raise InputError(f"{folder}: holds a run ({found.relative_to(folder)} exists); pass "
                             f"--resume to continue it, or --overwrite to delete it and start "
                             f"afresh", path=folder)
        if overwrite:
            clear_run(folder)
    except BaseException:
        lock.release()
        raise
    return lock
