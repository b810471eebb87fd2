"""Exception types shared by the library and the command-line tools."""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

__all__ = ["InputError", "WriteFault", "one_line", "parsing", "write_fault", "writing",
           "WRITE_FAULTS"]

# File-system faults that are the machine's state, not a bug: one line, naming the path.
WRITE_FAULTS = {errno.ENOSPC: "no space left on device", errno.EROFS: "read-only file system",
                errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                errno.EDQUOT: "disk quota exceeded"}


class InputError(ValueError):
    """A problem with something the user gave: a file, a folder, a config key or value.

    The message names the file or key and says what is wrong, in one line. Library code raises
    it; the command-line tools turn it into one line on stderr (followed by the indented
    ``details`` block, when there is one) and exit status 2.

    Parameters
    ----------
    message : str
        The one-line description, naming the file or key.
    path : str or Path, optional
        The offending file, when there is one: callers that add context read it here rather
        than from the message.
    key : str, optional
        The offending config key or option, when there is one.
    details : str, optional
        Help that needs lines of its own (the layouts a data set may have and where it is
        published), shown under the one-line message.
    """

    def __init__(self, message: str, *, path: Union[str, Path, None] = None,
                 key: Optional[str] = None, details: Optional[str] = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None
        self.key = key
        self.details = details

    def at(self, path: Union[str, Path]) -> "InputError":
        """This error as one about ``path``: itself when it names a file already, else the same
        message prefixed with ``path`` (the key kept)."""
        if self.path is not None:
            return self
        return InputError(f"{path}: {self}", path=path, key=self.key, details=self.details)


class WriteFault(InputError):
    """A file could not be written or created: the disk is full, the file system read-only,
    or the folder not the user's to write. ``errno`` holds the cause."""

    def __init__(self, message: str, *, path: Union[str, Path, None] = None,
                 error: int = 0) -> None:
        super().__init__(message, path=path)
        self.errno = error


def write_fault(exc: BaseException, path: Union[str, Path, None] = None,
                folder: Union[str, Path, None] = None) -> Optional[WriteFault]:
    """The one-line :class:`WriteFault` for ``exc`` when it is (or was raised while handling)
    an OSError of :data:`WRITE_FAULTS`; None for anything else.

    torch.save, for one, reports a full disk as a RuntimeError of its zip writer with the
    OSError as its context, so the chain is searched. The message names ``path`` (the file
    being written: a temporary file's error names the file it stands for), else the
    OSError's own file name, else ``folder``.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, WriteFault):
            return exc
        if isinstance(exc, OSError) and exc.errno in WRITE_FAULTS:
            where = os.fsdecode(next((p for p in (path, exc.filename, folder) if p is not None),
                                     "output"))
            return WriteFault(f"{where}: cannot write ({WRITE_FAULTS[exc.errno]})", path=where,
                              error=exc.errno)
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def writing(path: Union[str, Path, None] = None,
            folder: Union[str, Path, None] = None) -> Iterator[None]:
    """Turn a file-system fault inside into its :class:`WriteFault` (see :func:`write_fault`
    for ``path`` and ``folder``); any other failure passes unchanged."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is a file-system fault
        fault = write_fault(exc, path, folder)
        if fault is None:
            raise
        raise fault from None


def one_line(exc: BaseException) -> str:
    """The command-line tools' one-line form of an error (a multi-line message joined)."""
    return " ".join(str(exc).split())


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    reason = text[0].strip() if text else ""
    if isinstance(exc, MemoryError) or not reason:
        reason = f"{type(exc).__name__}{': ' + reason if reason else ''}"
    return reason[:200]


@contextmanager
def parsing(path: Union[str, Path], what: str) -> Iterator[None]:
    """Turn any failure of a third-party parser reading ``path`` into an :class:`InputError`.

    Wrap only the parser call itself: third-party readers (nibabel, h5py, SimpleITK, zipfile,
    torch.load, yaml, json) raise dozens of exception types for a damaged file, and which ones
    is not part of their API. Our own code stays outside, so its bugs still show as bugs.

    Raises
    ------
    InputError
        ``"<path>: unreadable <what> (<first line of the parser's message>)"``, with ``path``.
    """
    try:
        yield
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring: the parser's own failures
        raise InputError(f"{path}: unreadable {what} ({_reason(exc)})", path=path) from None
def format_error(exc: BaseException) -> str:
    """What the command-line tools print for ``exc``: ``error:`` and its one line, then its
    ``details`` (if any) indented by two spaces, their lines kept."""
    text = f"error: {one_line(exc)}"
    details = getattr(exc, "details", None)
    if details:
        text += "".join(f"\n  {line}" if line.strip() else "\n"
                        for line in str(details).strip("\n").splitlines())
    return text
