"""Case ids as identifiers, never paths; every file opened or written kept inside its folder."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Union

from ..errors import InputError

__all__ = ["MAX_CASE_ID", "check_case_id", "printable", "inside", "inside_output"]

PathLike = Union[str, Path]

# A file name is at most 255 bytes; a case id leaves room for the suffixes added to it.
MAX_CASE_ID = 200
_DRIVE = re.compile(r"^[A-Za-z]:")


def _problem(case: str) -> str:
    if not case.strip():
        return "is empty"
    if "/" in case or "\\" in case:
        return "holds a path separator"
    if ".." in case or case == ".":
        return "holds '..' or is '.'"
    if _DRIVE.match(case):
        return "starts with a drive letter"
    if any(unicodedata.category(c)[0] == "C" for c in case):
        return "holds a control or invisible character"
    if case != case.strip():
        return "starts or ends with white space"
    if len(case.encode("utf-8", "surrogateescape")) > MAX_CASE_ID:
        return f"is longer than {MAX_CASE_ID} bytes"
    return ""


def printable(text: object) -> str:
    """``text`` with control and invisible characters escaped (``\\n``, ``\\u202e``), so that
    a message naming a hostile file name stays one readable line."""
    return "".join(c if unicodedata.category(c)[0] != "C" else repr(c)[1:-1] for c in str(text))


def check_case_id(case: object, source: object) -> str:
    """``case`` as a case id: a name that files are named after, never a path.

    Parameters
    ----------
    case : object
        The id as read (YAML may give a number).
    source : object
        Where it came from (a file, ``data.test_cases[1]``, a folder), for the message.

    Returns
    -------
    str
        The id.

    Raises
    ------
    InputError
        The id is empty, holds a path separator, ``..``, a drive letter, a control character,
        leading or trailing white space, or is over :data:`MAX_CASE_ID` bytes; the message
        names the id and ``source``.
    """
    where = printable(source)
    if isinstance(case, bool) or not isinstance(case, (str, int)):
        raise InputError(f"{where}: case id {case!r} is not a name (a string or a number)",
                         key=str(source))
    text = str(case)
    problem = _problem(text)
    if problem:
        raise InputError(f"{where}: case id {text!r} {problem}; a case id names files, it "
                         f"cannot be a path", key=str(source))
    return text


def _absolute(path: PathLike) -> str:
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def inside(path: PathLike, root: PathLike, what: str = "--root") -> Path:
    """``path``, refused unless it lies under ``root`` (an input: a file to read).

    The test is on the path as written (``..`` collapsed), not on where links point: users
    link their data into a data set's folder, and those links are followed.

    Raises
    ------
    InputError
        ``path`` lies outside ``root``; the message names both and ``what`` (the option).
    """
    if not _under(_absolute(path), _absolute(root)):
        raise InputError(f"{path}: outside {what} {root}; refused to read it", path=path)
    return Path(path)


def inside_output(path: PathLike, output: PathLike, what: str = "--output") -> Path:
    """``path``, refused unless it resolves under ``output`` (a file to write or delete).

    Links are resolved: a link in the output folder that leads elsewhere is refused, so
    nothing outside the folder is replaced or removed.

    Raises
    ------
    InputError
        ``path`` (or the folder a link in it leads to) lies outside ``output``.
    """
    target = os.path.realpath(os.fspath(path))
    if not _under(target, os.path.realpath(os.fspath(output))):
        where = "" if _absolute(path) == target else f" (a link to {target})"
        raise InputError(f"{path}{where}: outside {what} {output}; refused to write it",
                         path=path)
    return Path(path)
