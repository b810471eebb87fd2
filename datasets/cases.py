"""Case identifiers and the standard train/val/test splits of each data set."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Iterable, Optional, Sequence

from swin_unet.config import Split, choices
from swin_unet.errors import InputError

__all__ = [
    "SPLITS",
    "SYNAPSE_TRAIN",
    "SYNAPSE_TEST",
    "ACDC_VAL",
    "ACDC_TEST",
    "acdc_train_default",
    "normalize_synapse_case",
    "normalize_acdc_case",
    "normalize_case_list",
    "deterministic_split",
    "resolve_splits",
]

logger = logging.getLogger(__name__)

SPLITS = choices(Split)

# TransUNet's split, used by every Synapse paper: 18 training and 12 test cases, no validation.
SYNAPSE_TRAIN = tuple(f"case{n:04d}" for n in (5, 6, 7, 9, 10, 21, 23, 24, 26, 27, 28, 30, 31,
                                                33, 34, 37, 39, 40))
SYNAPSE_TEST = tuple(f"case{n:04d}" for n in (1, 2, 3, 4, 8, 22, 25, 29, 32, 35, 36, 38))

# The usual 70/10/20 2-D split of the 100 labelled ACDC patients.
ACDC_TEST = tuple(f"patient{n:03d}" for n in (2, 3, 8, 9, 12, 14, 17, 24, 42, 48, 49, 53, 55,
                                               64, 67, 79, 81, 88, 92, 95))
ACDC_VAL = tuple(f"patient{n:03d}" for n in (19, 21, 29, 33, 41, 50, 61, 71, 76, 80))

_SYNAPSE_ID = re.compile(r"^(?:case|img|label)?_?0*(\d{1,4})(?:\.nii(?:\.gz)?)?$", re.IGNORECASE)
_ACDC_ID = re.compile(r"^(?:patient|case)?_?0*(\d{1,3})$", re.IGNORECASE)


def acdc_train_default() -> tuple[str, ...]:
    """The 70 ACDC training patients: 1..100 minus the validation and test ones."""
    held_out = set(ACDC_VAL) | set(ACDC_TEST)
    return tuple(p for p in (f"patient{n:03d}" for n in range(1, 101)) if p not in held_out)


def normalize_synapse_case(value: object, key: str = "case id") -> str:
    """``1``, ``"0001"``, ``"case0001"`` or ``"img0001"`` -> ``"case0001"``.

    Raises
    ------
    InputError
        ``value`` is not a Synapse case id; the message names ``key``.
    """
    match = _SYNAPSE_ID.match(str(value).strip())
    if not match:
        raise InputError(f"{key}: {value!r} is not a Synapse case id "
                         f"(expected e.g. 1, 0001, case0001 or img0001)")
    return f"case{int(match.group(1)):04d}"


def normalize_acdc_case(value: object, key: str = "case id") -> str:
    """``2``, ``"002"`` or ``"patient002"`` -> ``"patient002"``.

    Raises
    ------
    InputError
        ``value`` is not an ACDC patient id; the message names ``key``.
    """
    match = _ACDC_ID.match(str(value).strip())
    if not match:
        raise InputError(f"{key}: {value!r} is not an ACDC patient id "
                         f"(expected e.g. 2, 002 or patient002)")
    return f"patient{int(match.group(1)):03d}"


def normalize_case_list(values: Iterable[object], normalize, key: str) -> list[str]:
    """Normalise every id of a config case list, keeping order and dropping repeats."""
    out: list[str] = []
    for i, value in enumerate(values):
        case = normalize(value, f"{key}[{i}]")
        if case not in out:
            out.append(case)
    return out


def _stable_rank(case: str, seed: int) -> str:
    # A hash, not random.shuffle: the order must not depend on Python's hash seed or version.
    return hashlib.sha256(f"{seed}:{case}".encode()).hexdigest()


def deterministic_split(cases: Sequence[str], fractions=(0.7, 0.1, 0.2),
                        seed: int = 0) -> dict[str, list[str]]:
    """Split ``cases`` into train/val/test by fixed fractions, the same on every machine.

    Each of val and test gets at least one case when there are at least three cases, so a
    small data set still has something to validate and test on.
    """
    ordered = sorted(cases, key=lambda c: _stable_rank(c, seed))
    n = len(ordered)
    n_test = round(fractions[2] * n)
    n_val = round(fractions[1] * n)
    if n >= 3:
        n_test, n_val = max(n_test, 1), max(n_val, 1)
    elif n == 2:
        n_test, n_val = 1, 0
    else:
        n_test, n_val = 0, 0
    test = sorted(ordered[:n_test])
    val = sorted(ordered[n_test:n_test + n_val])
    train = sorted(ordered[n_test + n_val:])
    return {"train": train, "val": val, "test": test}


def resolve_splits(defaults: dict[str, Sequence[str]], overrides: dict[str, Optional[list]],
                   normalize) -> dict[str, list[str]]:
    """Default splits replaced by the config's case lists where those are given.

    ``overrides`` maps split names to the raw config lists (``None``: keep the default).
    Overlapping splits are allowed (e.g. to debug on training cases) but logged.
    """
    splits = {name: list(defaults.get(name, ())) for name in SPLITS}
    for name in SPLITS:
        raw = overrides.get(name)
        if raw is not None:
            splits[name] = normalize_case_list(raw, normalize, f"data.{name}_cases")
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        common = sorted(set(splits[a]) & set(splits[b]))
        if common:
            logger.warning("cases in both the %s and the %s split: %s", a, b, ", ".join(common))
    return splits
