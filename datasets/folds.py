"""Cross-validation folds of the labelled non-test cases, and nnU-Net's ``splits_final.json``.

A fold is ``{"train": [...], "val": [...]}``; the folds of a data set are a list of them whose
``val`` lists partition the cases. The list is what nnU-Net writes as ``splits_final.json``,
so folds made here and there can be exchanged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional, Sequence, Union

from swin_unet.errors import InputError

from .cases import _stable_rank
from .folder import read_json

__all__ = ["SPLITS_FINAL", "make_folds", "read_splits_final", "write_splits_final",
           "fold_pool", "resolve_fold"]

logger = logging.getLogger(__name__)

SPLITS_FINAL = "splits_final.json"


def make_folds(cases: Sequence[str], folds: int, seed: int = 0) -> list[dict[str, list[str]]]:
    """``folds`` folds of ``cases``, the same on every machine for the same ``seed``.

    The cases are ordered by a hash of (seed, case) and dealt round-robin, so fold sizes differ
    by at most one; each list is sorted.

    Raises
    ------
    InputError
        Fewer than two folds, or fewer cases than folds.
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise InputError(f"config key 'data.folds': need at least 2 folds, got {folds!r}",
                         key="data.folds")
    unique = list(dict.fromkeys(cases))
    if len(unique) < folds:
        raise InputError(f"config key 'data.folds': {folds} folds need at least {folds} "
                         f"labelled non-test cases, there are {len(unique)}", key="data.folds")
    ordered = sorted(unique, key=lambda c: _stable_rank(c, seed))
    out = []
    for k in range(folds):
        val = set(ordered[k::folds])
        out.append({"train": sorted(c for c in unique if c not in val), "val": sorted(val)})
    return out


def read_splits_final(path: Union[str, Path]) -> list[dict[str, list[str]]]:
    """The folds of an nnU-Net ``splits_final.json``: a list of {"train": [...], "val": [...]}.

    Raises
    ------
    InputError
        Not JSON, not a list of such folds, or a case id that is not a string or number.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a list of folds [{{\"train\": [...], \"val\": "
                         f"[...]}}, ...]", path=path)
    folds = []
    for k, fold in enumerate(data):
        if not isinstance(fold, dict) or not {"train", "val"} <= set(fold):
            raise InputError(f"{path}: fold {k} is not {{\"train\": [...], \"val\": [...]}}",
                             path=path)
        entry = {}
        for key in ("train", "val"):
            cases = fold[key]
            if not isinstance(cases, list) or not all(
                    isinstance(c, (str, int)) and not isinstance(c, bool) for c in cases):
                raise InputError(f"{path}: fold {k} '{key}' must be a list of case names",
                                 path=path)
            entry[key] = [str(c) for c in cases]
        folds.append(entry)
    return folds


def write_splits_final(path: Union[str, Path], folds: Sequence[dict]) -> Path:
    """Write ``folds`` as nnU-Net's ``splits_final.json`` (only "train" and "val" per fold)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [{"train": list(f["train"]), "val": list(f["val"])} for f in folds]
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def fold_pool(source) -> list[str]:
    """The cases folds are made of: a source's training and validation cases, not its test ones."""
    test = set(source.cases("test"))
    pool = dict.fromkeys(source.cases("train") + source.cases("val"))
    return [case for case in pool if case not in test]


def _check_given_folds(folds: list[dict], pool: Sequence[str], test: Sequence[str],
                       where: Path) -> None:
    known, held_out = set(pool), set(test)
    seen: dict[str, int] = {}
    for k, fold in enumerate(folds):
        for case in fold["train"] + fold["val"]:
            if case in held_out:
                raise InputError(f"{where}: fold {k} lists test case {case}", path=where)
            if case not in known:
                raise InputError(f"{where}: fold {k} lists case {case}, which is not a "
                                 f"labelled case of the data set", path=where)
        for case in fold["val"]:
            if case in seen:
                raise InputError(f"{where}: case {case} is a validation case of folds "
                                 f"{seen[case]} and {k}", path=where)
            seen[case] = k


def resolve_fold(source, fold: str, folds: int, seed: int,
                 given: Optional[Path] = None) -> tuple[dict[str, list[str]], list[dict]]:
    """Fold ``fold`` ("0".."folds-1", or "all") of ``source``'s labelled non-test cases.

    ``given``: an nnU-Net ``splits_final.json`` whose folds are used instead of new ones (its
    fold count then replaces ``folds``). ``all`` trains on every case, with no validation.

    Returns
    -------
    (dict, list)
        The fold's {"train", "val", "test"} case lists, and every fold (for splits_final.json).

    Raises
    ------
    InputError
        A fold out of range, fewer cases than folds, or a ``given`` file that does not fit.
    """
    pool = fold_pool(source)
    test = source.cases("test")
    if given is not None:
        every = read_splits_final(given)
        _check_given_folds(every, pool, test, given)
        logger.info("folds from %s (%d folds)", given, len(every))
    else:
        every = make_folds(pool, folds, seed)
    if fold == "all":
        cases = sorted(dict.fromkeys(c for f in every for c in f["train"] + f["val"]))
        return {"train": cases, "val": [], "test": list(test)}, every
    if not str(fold).isdigit() or int(fold) >= len(every):
        raise InputError(f"--fold: {fold!r} is not a fold number 0..{len(every) - 1} or 'all'",
                         key="data.fold")
    chosen = every[int(fold)]
    return {"train": list(chosen["train"]), "val": list(chosen["val"]), "test": list(test)}, every
