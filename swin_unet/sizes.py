"""Image sizes as the model and the data path both take them: ``224`` or ``(H, W)``."""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Union

from .errors import InputError

__all__ = ["as_pair", "patch_pair", "resampled_size"]


def as_pair(size: Union[int, Sequence[int]], key: str = "img_size") -> tuple[int, int]:
    """``224`` or ``(H, W)`` (NumPy integers and ``torch.Size`` included) -> ``(H, W)``.

    Raises
    ------
    InputError
        Not a positive int or a pair of positive ints; ``key`` names it.
    """
    def is_int(value) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    if is_int(size):
        pair = (int(size), int(size))
    elif isinstance(size, (list, tuple)) and len(size) == 2 and all(is_int(v) for v in size):
        pair = (int(size[0]), int(size[1]))
    else:
        raise InputError(f"{key}: expected an int or a pair of ints, got {size!r}", key=key)
    if min(pair) < 1:
        raise InputError(f"{key}: sizes must be positive, got {size!r}", key=key)
    return pair


def patch_pair(patch_size: Union[int, Sequence[int], None],
               img_size: Union[int, Sequence[int]]) -> tuple[int, int]:
    """Patch mode's patch (and sliding window) ``(H, W)``: ``patch_size``, or the model's
    ``img_size`` when it is None."""
    if patch_size is None:
        return as_pair(img_size)
    return as_pair(patch_size, "data.patch_size")


def resampled_size(shape_xy: Sequence[int], spacing_xy: Optional[Sequence[float]],
                   target_spacing: Optional[Sequence[float]]) -> tuple[int, int]:
    """The in-plane size of a slice of ``shape_xy`` pixels of ``spacing_xy`` mm once resampled
    to ``target_spacing`` mm: each side rounded, at least 1. No spacing on either side (2-D
    images, or ``data.spacing`` null): the size as it is."""
    shape = (int(shape_xy[0]), int(shape_xy[1]))
    if spacing_xy is None or target_spacing is None:
        return shape
    return tuple(max(1, int(math.floor(n * s / t + 0.5)))
                 for n, s, t in zip(shape, spacing_xy, target_spacing))
