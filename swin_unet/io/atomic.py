"""Files that appear whole or not at all: written under a temporary name, then renamed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

from ..errors import writing

__all__ = ["atomic_write", "atomic_text"]


def atomic_write(path: Union[str, Path], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then rename it to ``path``.

    The temporary name keeps the suffix (writers choose the format from it) and starts with a
    dot. A failure removes it, so a full disk or an interruption leaves the earlier file (or
    none) and no half-written one.

    Raises
    ------
    WriteFault
        A full, read-only or forbidden file system: one line naming ``path`` and the cause.
    """
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    with writing(path):
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return path


def atomic_text(path: Union[str, Path], text: str, newline: str = "\n") -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8",
                                                         newline=newline))
