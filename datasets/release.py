"""The preprocessed releases' conventions, checked instead of guessed: slice numbers, axis order.

TransUNet's Synapse release and MT-UNet's ACDC release store training cases slice by slice
(numbered from 0) and test cases as volumes with the slices first, [D, H, W]. Each check here
raises an InputError naming the file or case when the files do not follow the convention, so a
reader never stacks, transposes or rescales on a guess.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from swin_unet.errors import InputError

__all__ = ["ordered_slices", "slices_first_to_last", "check_slices_first", "check_unit_range"]

logger = logging.getLogger(__name__)

# Rounding in the releases' float32 intensities: values this far outside [0, 1] still count as
# windowed.
UNIT_RANGE_TOLERANCE = 1e-3


def _spans(values: Sequence[int]) -> str:
    """Sorted integers as "0, 3-5, 9"."""
    spans, start = [], None
    values = sorted(values)
    for i, value in enumerate(values):
        start = value if start is None else start
        if i + 1 == len(values) or values[i + 1] != value + 1:
            spans.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ", ".join(spans)


def ordered_slices(case: str, numbered: Sequence[tuple[int, Path]],
                   allow_gaps: bool = False) -> list[Path]:
    """The slice files of ``case`` in slice-number order, every number from 0 present once.

    Parameters
    ----------
    case : str
        The case (and phase) the files belong to, for messages.
    numbered : sequence of (int, Path)
        Each file with the slice number its name carries.
    allow_gaps : bool
        Stack a case with missing numbers anyway (``data.allow_slice_gaps``); the gap is
        logged as a warning.

    Returns
    -------
    list of Path
        The files sorted by slice number.

    Raises
    ------
    InputError
        Two files with one number, or (without ``allow_gaps``) missing numbers: stacked
        without them, the slices across a gap would sit one slice apart and every distance
        along z (HD95) would shrink.
    """
    ordered = sorted(numbered, key=lambda item: item[0])
    numbers = [n for n, _ in ordered]
    folder = ordered[0][1].parent
    for (a, first), (b, second) in zip(ordered, ordered[1:]):
        if a == b:
            raise InputError(f"{second}: slice number {b} of {case} again (also {first.name})")
    missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
    if missing and not allow_gaps:
        raise InputError(f"{folder}: {case} has no slice {_spans(missing)} (found "
                         f"{len(numbers)} slices numbered up to {numbers[-1]}); stacked without "
                         f"them, distances along z would shrink. Restore the files, or set "
                         f"data.allow_slice_gaps=true to stack the case anyway")
    if missing:
        logger.warning("%s: %s has no slice %s; stacked without them (data.allow_slice_gaps), "
                       "so the slices across the gap are one slice apart", folder, case,
                       _spans(missing))
    return [path for _, path in ordered]


def check_slices_first(path: Path, image_shape: tuple, label_shape: tuple,
                       keys: tuple[str, str]) -> None:
    """A release test volume: 3-D image and label of one shape, slices first [D, H, W].

    The slice axis is the first one by the release's convention; a volume whose first axis is
    longer than one of the in-plane axes does not fit it (ACDC volumes have 6-21 slices of
    planes over 150 pixels), and is refused rather than transposed on a guess.

    Raises
    ------
    InputError
        Not 3-D, image and label shapes differ, or the shape does not fit [D, H, W].
    """
    image_key, label_key = keys
    if len(image_shape) != 3 or tuple(image_shape) != tuple(label_shape):
        raise InputError(f"{path}: expected 3-D '{image_key}' and '{label_key}' of one shape "
                         f"[D, H, W], got {tuple(image_shape)} and {tuple(label_shape)}")
    depth, height, width = image_shape
    if depth > min(height, width):
        raise InputError(f"{path}: '{image_key}' of shape {tuple(image_shape)} does not fit the "
                         f"release's slices-first [D, H, W] (the first axis, the slices, is the "
                         f"longest); store it as [D, H, W], e.g. np.moveaxis(array, -1, 0)")


def slices_first_to_last(array: np.ndarray) -> np.ndarray:
    """[D, H, W] -> [H, W, D], the (X, Y, Z) order every reader returns."""
    return np.moveaxis(array, 0, -1)


def check_unit_range(image: np.ndarray, path: Path, intensity: str) -> bool:
    """Whether a release image holds its windowed [0, 1] intensities.

    Parameters
    ----------
    image : np.ndarray
        The image as read.
    path : Path
        Its file, for the message.
    intensity : str
        ``data.intensity`` as configured: ``"auto"`` trusts the release's convention, so values
        outside [0, 1] are an error; an explicit mode is the user's word for how to treat them.

    Returns
    -------
    bool
        True when every value is in [0, 1] up to rounding.

    Raises
    ------
    InputError
        Values outside [0, 1] (beyond rounding) with ``intensity`` "auto".
    """
    if image.size == 0:
        return True
    low, high = float(image.min()), float(image.max())
    inside = low >= -UNIT_RANGE_TOLERANCE and high <= 1 + UNIT_RANGE_TOLERANCE
    if not inside and intensity == "auto":
        raise InputError(f"{path}: intensities span [{low:g}, {high:g}], but the release stores "
                         f"CT windowed to [0, 1]; if the file holds HU, set data.intensity=ct "
                         f"(window data.ct_window), or another mode for other data")
    return inside
