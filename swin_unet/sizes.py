"""Image sizes as the model and the data path both take them: ``224`` or ``(H, W)``."""

from __future__ import annotations

import numbers
from typing import Sequence, Union

from .errors import InputError

__all__ = ["as_pair"]


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
