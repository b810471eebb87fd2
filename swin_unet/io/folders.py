"""Output folders: one writer at a time (a lock), and a record of the files this project wrote."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

from ..errors import InputError
from .paths import inside_output

__all__ = ["MANIFEST_NAME", "RunLock", "Manifest", "OutputKind", "TRAIN_RUN", "TEST_RESULTS",
           "check_output_folder", "check_reads", "remove_written"]

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
MANIFEST_NAME = ".swin-unet-files.json"
_MANIFEST_TMP = MANIFEST_NAME + ".tmp"


def check_output_folder(folder: PathLike) -> Path:
    """``folder`` as an output folder: a folder, or a name that is free.

    Raises
    ------
    InputError
        ``folder`` is a file, or a link that leads nowhere.
    """
    folder = Path(folder)
    if folder.is_symlink() and not folder.exists():
        raise InputError(f"{folder}: --output is a link to {os.readlink(folder)}, which does "
                         f"not exist", path=folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: --output exists and is not a folder", path=folder)
    return folder


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
    """A lock file in an output folder: created atomically, holding the owner's pid and host.

    A lock whose process is gone (killed, crashed) is taken over; one held by a live process
    on this host makes :meth:`acquire` refuse. Taking over is itself atomic: the stale lock is
    renamed to a name unique to this process before a new one is created exclusively, so of
    two processes that find the same stale lock only one wins.
    """

    def __init__(self, folder: PathLike, name: str = "train.lock"):
        self.path = Path(folder) / name
        self.held = False

    def _owner(self, path: Optional[Path] = None) -> tuple[Optional[int], str]:
        try:
            text = (path or self.path).read_text(encoding="utf-8", errors="replace").split()
        except OSError:
            return None, ""
        pid = int(text[0]) if text and text[0].isdigit() else None
        return pid, text[1] if len(text) > 1 else ""

    def acquire(self) -> None:
        """Take the lock.

        Raises
        ------
        InputError
            Another live process holds it; the message names the folder, the pid and the lock.
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
                stale = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
                try:
                    os.replace(self.path, stale)  # only one of several takers succeeds
                except FileNotFoundError:
                    continue
                if self._owner(stale)[0] != pid:
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
            except OSError as exc:
                raise InputError(f"{self.path}: cannot create the lock file "
                                 f"({exc.strerror or exc})", path=self.path) from None
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
            if self._owner()[0] == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False


def _is_lock(name: str) -> bool:
    return name in {kind.lock_name for kind in (TRAIN_RUN, TEST_RESULTS)} or ".lock.stale-" in name


def _listing(folder: Path, skip: Iterable[str]) -> set[str]:
    """Files and links under ``folder`` (relative, '/'-separated); linked folders not entered."""
    found: set[str] = set()
    skip = set(skip)
    for directory, dirs, files in os.walk(folder, followlinks=False):
        base = Path(directory)
        for name in files + [d for d in dirs if (base / d).is_symlink()]:
            relative = (base / name).relative_to(folder).as_posix()
            if relative not in skip and not _is_lock(name) and relative != _MANIFEST_TMP:
                found.add(relative)
    return found


class Manifest:
    """``.swin-unet-files.json`` in an output folder: which of its files this project wrote.

    :meth:`start` records the files already there that are not the project's (the user's);
    :meth:`finish` records every file that appeared since as written. A run killed before it
    finished leaves ``complete: false``: its files are then those not recorded at the start.
    """

    def __init__(self, folder: PathLike, tool: str):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self.tool = tool

    def _read(self) -> Optional[dict]:
        if not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {"complete": bool(data["complete"]), "before": set(data["before"]),
                    "written": set(data.get("written", ()))}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{self.path}: unreadable record of the files written here "
                             f"({exc}); remove the results by hand or choose another --output",
                             path=self.path) from None

    def exists(self) -> bool:
        """Whether the folder has a record (a run of this project wrote in it)."""
        return self.path.is_file()

    def written(self) -> list[Path]:
        """The files this project wrote in the folder that are still there."""
        record = self._read()
        if record is None or not self.folder.is_dir():
            return []
        present = _listing(self.folder, [MANIFEST_NAME])
        names = record["written"] & present if record["complete"] else present - record["before"]
        return [self.folder / name for name in sorted(names)]

    def kept(self, removing: Iterable[Path] = ()) -> list[Path]:
        """The files in the folder this project did not write (or that are not ``removing``)."""
        gone = {Path(p) for p in removing}
        return [self.folder / name for name in sorted(_listing(self.folder, [MANIFEST_NAME]))
                if self.folder / name not in gone]

    def start(self) -> None:
        """Record the files there now, except the project's own, as the user's."""
        self.folder.mkdir(parents=True, exist_ok=True)
        ours = {p.relative_to(self.folder).as_posix() for p in self.written()}
        self._write(False, _listing(self.folder, [MANIFEST_NAME]) - ours, ours)

    def finish(self) -> None:
        """Record every file that is there and was not at the start as written.

        Safe to call whatever happened: a complete record is left as it is; one that cannot be
        written is left incomplete, which still tells the project's files from the user's.
        """
        record = self._read() if self.folder.is_dir() else None
        if record is not None and not record["complete"]:
            before = record["before"]
            try:
                self._write(True, before, _listing(self.folder, [MANIFEST_NAME]) - before)
            except InputError as exc:
                logger.warning("%s", exc)

    def _write(self, complete: bool, before: set[str], written: set[str]) -> None:
        text = json.dumps({"tool": self.tool, "complete": complete, "before": sorted(before),
                           "written": sorted(written)}, indent=1)
        tmp = self.folder / _MANIFEST_TMP
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise InputError(f"{self.path}: cannot write ({exc.strerror or exc})",
                             path=self.path) from None


@dataclass(frozen=True)
class OutputKind:
    """One command's output folder: the tool its record names, its lock, the files it writes.

    ``writes`` are glob patterns relative to the folder: the files a run writes by name, which
    tell its files from the user's in a folder that has no record (written before records).
    """

    tool: str
    lock_name: str
    noun: str
    writes: tuple[str, ...]

    def manifest(self, folder: PathLike) -> Manifest:
        """The folder's record of the files this command wrote."""
        return Manifest(folder, self.tool)

    def files_by_name(self, folder: PathLike) -> list[Path]:
        """The files in ``folder`` that match :attr:`writes`, pattern by pattern."""
        found: list[Path] = []
        for pattern in self.writes:
            found += [p for p in sorted(Path(folder).glob(pattern))
                      if p.is_file() and p not in found]
        return found

    def written(self, folder: PathLike) -> list[Path]:
        """The files a run of this command wrote in ``folder``: its record's, or in a folder
        without one, :meth:`files_by_name`."""
        manifest = self.manifest(folder)
        return manifest.written() if manifest.exists() else self.files_by_name(folder)

    def claim(self, folder: PathLike) -> RunLock:
        """Make ``folder`` this process's: created if missing, its lock taken (held on return).

        Raises
        ------
        InputError
            ``folder`` is a file or a dangling link, cannot be created, or another process
            holds its lock (the message names the lock file).
        """
        folder = check_output_folder(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{folder}: cannot create the {self.noun} ({exc.strerror or exc})",
                             path=folder) from None
        lock = RunLock(folder, self.lock_name)
        lock.acquire()
        return lock


TRAIN_RUN = OutputKind(
    "train.py", "train.lock", "run folder",
    ("config.yaml", "train.log", "splits_final.json", "checkpoints/*.pth",
     "checkpoints/*.pth.tmp", "tensorboard/**/events.out.tfevents.*"))
TEST_RESULTS = OutputKind(
    "test.py", "test.lock", "output folder",
    ("metrics.csv", "summary.json", "report.html", "predictions/*.nii.gz", "predictions/*.png",
     "predictions/*.ctbl", "predictions/*.txt", "figures/*.png", "figures/*.svg",
     "figures/*.pdf", "overlays/*.png", "probabilities/*.npz", "uncertainty/*.nii.gz"))


def remove_written(folder: PathLike, paths: Iterable[Path], reads: Iterable[PathLike] = ()
                   ) -> list[Path]:
    """Delete ``paths`` (files this project wrote in ``folder``); returns them.

    Links are removed, never followed; a path that resolves outside ``folder`` is refused.
    Emptied sub-folders go too. The files still there are listed in one log line.

    Raises
    ------
    InputError
        A file the run reads (``reads``: ``--pretrained``, ``--checkpoint``, ``--labels``...)
        is among ``paths`` (:func:`check_reads`), or one lies in a linked folder; checked
        before anything is deleted.
    """
    folder = Path(folder)
    paths = list(paths)
    check_reads(paths, reads)
    for path in paths:
        inside_output(path.parent, folder)
    for path in paths:
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != folder and parent.is_dir() and not parent.is_symlink() and not any(
                parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    if paths:
        kept = Manifest(folder, "").kept(paths)
        logger.info("--overwrite: removed %d file(s) an earlier run wrote in %s%s", len(paths),
                    folder, f"; kept {len(kept)} file(s) it did not write: "
                    f"{', '.join(str(p.relative_to(folder)) for p in kept[:8])}"
                    f"{', ...' if len(kept) > 8 else ''}" if kept else "")
    return paths


def check_reads(paths: Iterable[Path], reads: Iterable[PathLike]) -> None:
    """Refuse when a file to delete (``paths``) is one a run reads, or lies in a folder it reads.

    Raises
    ------
    InputError
        Naming the file read and the file that would be deleted.
    """
    paths = list(paths)
    # A target itself may be a link (removed, not followed); the folders above it are resolved.
    targets = {os.path.join(os.path.realpath(p.parent), p.name): p for p in paths}
    for read in reads:
        hit = None
        for name in {os.path.realpath(read), os.path.normpath(os.path.abspath(read))}:
            hit = hit or targets.get(name) or next(
                (p for t, p in targets.items() if t.startswith(name.rstrip(os.sep) + os.sep)),
                None)
        if hit is not None:
            raise InputError(f"{read}: --overwrite would delete {hit}, which this run reads; "
                             f"move it or choose another --output", path=read)
