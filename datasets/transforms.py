"""MONAI transform chains: the cache-time in-plane resize and the 2-D training augmentation."""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import (Compose, Identityd, OneOf, RandAffined, RandFlipd, Randomizable,
                              RandRotate90d, RandRotated, RandScaleIntensityFixedMeand,
                              RandShiftIntensityd, Resize)

from swin_unet.errors import InputError

__all__ = ["AUGMENTATIONS", "resize_slices", "volume_to_slices", "build_augmentation",
           "apply_seeded"]

KEYS = ("image", "label")
# "recipe": the published augmentation of CT / MRI slices; "photo": for 2-D photographs and
# ultrasound (orientation means little, lighting and contrast vary).
AUGMENTATIONS = ("recipe", "photo")


def volume_to_slices(volume: np.ndarray, channels: bool) -> np.ndarray:
    """(X, Y, Z) -> (Z, 1, X, Y), or (C, X, Y, Z) -> (Z, C, X, Y) when ``channels``."""
    if not channels:
        volume = volume[None]
    return np.ascontiguousarray(np.moveaxis(volume, -1, 0))


def resize_slices(slices: Union[np.ndarray, torch.Tensor], size: Sequence[int],
                  is_label: bool = False) -> np.ndarray:
    """Resize a stack of 2-D slices in-plane.

    Parameters
    ----------
    slices : array of shape (N, X, Y) or (N, C, X, Y)
        Slices (and channels) to resize; every slice is resized on its own.
    size : (H, W)
        Output in-plane size.
    is_label : bool
        Labels use nearest-neighbour ("nearest-exact": pixel centres, no half-pixel shift);
        images bicubic interpolation, as the published recipe's cubic resize.

    Returns
    -------
    np.ndarray
        float32 array of shape (N, H, W) or (N, C, H, W).
    """
    array = np.asarray(slices, dtype=np.float32)
    lead = array.shape[:-2]
    if tuple(array.shape[-2:]) == tuple(size):
        return array
    # Slices (and channels) become MONAI's channel axis: one 2-D interpolation call for all.
    flat = array.reshape((-1,) + array.shape[-2:])
    resize = Resize(spatial_size=tuple(int(v) for v in size),
                    mode="nearest-exact" if is_label else "bicubic",
                    align_corners=None if is_label else False, dtype=torch.float32)
    out = np.asarray(resize(flat), dtype=np.float32)
    return out.reshape(lead + tuple(size))


def build_augmentation(square: bool = True, kind: str = "recipe") -> Compose:
    """The training augmentation ``kind``, applied to {"image": (C, H, W), "label": (1, H, W)}.

    ``kind="recipe"`` is the published 2-D augmentation: with p=0.5 a random rot90 followed by
    a flip along a random axis; otherwise with p=0.5 a rotation by an angle in [-20, 20]
    degrees; else nothing. ``kind="photo"`` is :func:`_photo_augmentation`. The label is
    always resampled nearest-neighbour. Deviations from the original code, on purpose: the
    image is rotated with bilinear (not nearest) interpolation, and augmentation runs after the
    cache-time resize instead of at the original 512 x 512 (several times cheaper per slice).
    For a non-square ``img_size`` (``square=False``) no odd rot90 is drawn: it would swap H
    and W (the recipe's first branch is then a flip along a random axis only).

    Raises
    ------
    InputError
        An unknown ``kind``.
    """
    if kind == "photo":
        return _photo_augmentation(square)
    if kind != "recipe":
        raise InputError(f"unknown augmentation {kind!r} (expected one of "
                         f"{', '.join(AUGMENTATIONS)})")
    flip = OneOf([RandFlipd(KEYS, prob=1.0, spatial_axis=0),
                  RandFlipd(KEYS, prob=1.0, spatial_axis=1)])
    # rot90 by k in 1..4 (4 == 0) then a flip on either axis gives the 4 reflections, uniformly,
    # like the original's rot90 by k in 0..3 followed by a random flip.
    rot90_flip = Compose([RandRotate90d(KEYS, prob=1.0, max_k=4), flip]) if square else flip
    rotate = RandRotated(KEYS, range_x=math.radians(20.0), prob=1.0, keep_size=True,
                         mode=("bilinear", "nearest"), padding_mode="zeros")
    return OneOf([rot90_flip, rotate, Identityd(KEYS)], weights=[0.5, 0.25, 0.25])


def _photo_augmentation(square: bool) -> Compose:
    """For photographs and ultrasound: each with p=0.5, a flip along each axis, a rot90 (square
    sizes only), a rotation within 15 degrees with a scaling within 10 % (reflected border),
    a contrast change (x0.85-1.15 about the mean) and a brightness shift (+-0.1).
    """
    geometric = [RandFlipd(KEYS, prob=0.5, spatial_axis=0),
                 RandFlipd(KEYS, prob=0.5, spatial_axis=1)]
    if square:
        geometric.append(RandRotate90d(KEYS, prob=0.5, max_k=3))
    geometric.append(RandAffined(KEYS, prob=0.5, rotate_range=math.radians(15.0),
                                 scale_range=(0.1, 0.1), mode=("bilinear", "nearest"),
                                 padding_mode="reflection"))
    lighting = [RandScaleIntensityFixedMeand("image", factors=0.15, prob=0.5),
                RandShiftIntensityd("image", offsets=0.1, prob=0.5)]
    return Compose(geometric + lighting)


def _share_state(transform, state: np.random.RandomState) -> None:
    if isinstance(transform, Compose):
        # The base method sets only this node's generator (OneOf's choice); Compose's own
        # override would draw a fresh RandomState for every child.
        Randomizable.set_random_state(transform, state=state)
        for child in transform.transforms:
            _share_state(child, state)
    elif isinstance(transform, Randomizable):
        transform.set_random_state(state=state)


def apply_seeded(transform: Compose, data: dict, seed: int) -> dict:
    """Apply a MONAI ``transform`` with all its randomness drawn from ``seed``.

    One RandomState shared by every random transform of the tree, instead of
    ``Compose.set_random_state`` (a new RandomState per transform), and MetaTensor tracking
    off while it runs (restored after), which makes a sample several times cheaper
    (docs/performance.md).
    """
    _share_state(transform, np.random.RandomState(seed))
    tracking = get_track_meta()
    set_track_meta(False)
    try:
        return transform(data)
    finally:
        set_track_meta(tracking)
