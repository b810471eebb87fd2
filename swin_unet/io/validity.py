"""What every reader refuses: NaN/Inf voxels, degenerate geometry, sizes beyond the limits and memory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import InputError

__all__ = ["MAX_PIXELS", "MEMORY_FACTOR", "check_finite", "check_geometry", "check_pixels",
           "check_memory", "available_memory", "max_pixels", "set_max_pixels"]

# The default pixel limit of one 2-D image (data.max_pixels, test.py --max-pixels): above any
# medical or dermoscopy photograph, far below what a crafted PNG of a few hundred KB declares.
MAX_PIXELS = 100_000_000
# Bytes per voxel a volume needs while it is segmented, in units of its float32 size: the read
# voxels, the float32 working copy, the normalised image and the labels and one class's scores.
MEMORY_FACTOR = 4
_limit = {"pixels": MAX_PIXELS}


def max_pixels() -> int:
    """The pixel limit now in force for 2-D images."""
    return _limit["pixels"]


def set_max_pixels(value: Optional[int]) -> None:
    """Set the pixel limit of 2-D images for this process (None: the default).

    Pillow's own bomb limit (``Image.MAX_IMAGE_PIXELS``) follows it, so that Pillow never
    refuses an image this limit allows.

    Raises
    ------
    InputError
        A limit that is not a positive integer.
    """
    value = MAX_PIXELS if value is None else value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"config key 'data.max_pixels': must be a positive number of pixels, "
                         f"got {value!r}", key="data.max_pixels")
    from PIL import Image

    _limit["pixels"] = int(value)
    Image.MAX_IMAGE_PIXELS = int(value)


def check_pixels(path: Union[str, Path], rows: int, columns: Optional[int] = None) -> None:
    """Refuse a 2-D image above the pixel limit, from its header, before it is decoded.

    ``columns`` None: ``rows`` is the pixel count alone (all that Pillow's bomb error says).

    Raises
    ------
    InputError
        Names the file, its size and the limit, and how to raise it.
    """
    pixels = int(rows) * (1 if columns is None else int(columns))
    if pixels > _limit["pixels"]:
        size = f"{pixels}" if columns is None else f"{columns}x{rows} = {pixels}"
        raise InputError(f"{path}: image of {size} pixels is above the limit of "
                         f"{_limit['pixels']} (data.max_pixels, or test.py --max-pixels, "
                         f"raises it)", path=path)


def check_finite(array: np.ndarray, path: Union[str, Path], what: str = "image") -> None:
    """Refuse NaN or infinite values, which a network turns into a silently wrong result.

    Raises
    ------
    InputError
        Names the file and how many values are NaN and how many infinite.
    """
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(
            array.dtype, np.complexfloating):
        return
    if np.isfinite(array).all():
        return
    nan = int(np.count_nonzero(np.isnan(array)))
    inf = int(array.size - nan - np.count_nonzero(np.isfinite(array)))
    raise InputError(f"{path}: {what} contains NaN or infinite values ({nan} NaN, {inf} "
                     f"infinite)", path=path)


def check_geometry(path: Union[str, Path], spacing: Sequence[float],
                   affine: Optional[np.ndarray] = None) -> None:
    """Refuse a voxel grid no result can be placed on.

    Every spacing finite and positive; the affine (when given) finite, its origin included
    (predictions copy it), and invertible: its three axes span space.

    Raises
    ------
    InputError
        Names the file and the bad spacing, origin or affine.
    """
    shown = tuple(float(v) for v in spacing)
    if not all(np.isfinite(v) and v > 0 for v in shown):
        raise InputError(f"{path}: voxel spacing {shown} mm: every spacing must be finite and "
                         f"positive (a damaged header)", path=path)
    if affine is None:
        return
    affine = np.asarray(affine, dtype=np.float64)
    if not np.isfinite(affine[:3, 3]).all():
        raise InputError(f"{path}: origin {tuple(float(v) for v in affine[:3, 3])} is not finite (a damaged "
                         f"header)", path=path)
    if not np.isfinite(affine).all():
        raise InputError(f"{path}: the affine holds NaN or infinite values (a damaged header)",
                         path=path)
    axes = affine[:3, :3]
    norms = np.linalg.norm(axes, axis=0)
    # |det| over the product of the axis lengths is the sine-like volume of the unit axes.
    if np.any(norms == 0) or abs(np.linalg.det(axes)) <= 1e-6 * float(np.prod(norms)):
        raise InputError(f"{path}: the affine is singular (its voxel axes do not span space: "
                         f"axis lengths {tuple(round(float(v), 6) for v in norms)} mm); a "
                         f"damaged header", path=path)


def available_memory() -> Optional[int]:
    """MemAvailable of /proc/meminfo in bytes; None where it is not known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(path: Union[str, Path], shape: Sequence[int],
                 factor: float = MEMORY_FACTOR) -> None:
    """Refuse a volume whose working copies would not fit the memory available now.

    Needed: voxels x 4 bytes (float32) x ``factor``, from the header's shape; compared with
    ``MemAvailable``, skipped where that is not known.

    Raises
    ------
    InputError
        Names the file, the bytes it needs and the bytes available.
    """
    voxels = int(np.prod([int(v) for v in shape], dtype=object))
    needed = int(voxels * 4 * factor)
    available = available_memory()
    if available is not None and needed > available:
        raise InputError(f"{path}: a volume of {voxels} voxels needs about {needed / 2**30:.1f} "
                         f"GiB to segment ({factor:g} float32 copies), more than the "
                         f"{available / 2**30:.1f} GiB of memory available", path=path)
