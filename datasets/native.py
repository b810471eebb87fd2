"""Patch mode's slices: each volume's slices at their own size, or resampled to ``data.spacing``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from swin_unet.errors import InputError
from swin_unet.sizes import resampled_size

from .readers import read_nifti_header

if TYPE_CHECKING:
    from .base import DataSource, VolumeEntry

__all__ = ["patch_slices", "inplane_spacing"]


def positive_spacing(spacing: Sequence[float], entry: "VolumeEntry") -> tuple[float, float]:
    """The in-plane part of ``spacing``; resampling to ``data.spacing`` needs it positive."""
    inplane = (float(spacing[0]), float(spacing[1]))
    if not all(np.isfinite(v) and v > 0 for v in inplane):
        raise InputError(f"{entry.image_path}: in-plane spacing {list(inplane)} is not positive; "
                         f"patch mode cannot resample it to data.spacing (set data.spacing=null "
                         f"to keep the slices as stored)", path=entry.image_path,
                         key="data.spacing")
    return inplane


def inplane_spacing(source: "DataSource", entry: "VolumeEntry") -> tuple[float, float]:
    """``entry``'s in-plane spacing (mm), from the NIfTI header when there is one."""
    if entry.image_path.name.lower().endswith((".nii", ".nii.gz")):
        return positive_spacing(read_nifti_header(entry.image_path).spacing, entry)
    return positive_spacing(source.load(entry).spacing, entry)


def patch_slices(source: "DataSource", spacing: Optional[tuple[float, float]],
                 dtype: np.dtype, entry: "VolumeEntry") -> tuple[np.ndarray, np.ndarray]:
    """(Z, C, H, W) ``dtype`` images and (Z, H, W) labels of ``entry`` for the patch cache.

    Normalised as in resize mode; resampled in-plane from the volume's spacing to ``spacing``
    (image bicubic, labels nearest, as resize mode resizes), or kept at their size when it is
    None. A 2-D image is one slice at its own pixels.
    """
    from .slices import prepare_volume

    raw = source._load_for_cache(entry, None)
    if raw.label is None:
        raise InputError(f"{entry.image_path}: training case {entry.case} has no label")
    image = source._normalised(raw)
    own = positive_spacing(raw.spacing, entry) if spacing is not None else None
    size = resampled_size(image.shape[-3:-1], own, spacing)
    return prepare_volume(image, raw.label, size, dtype)
