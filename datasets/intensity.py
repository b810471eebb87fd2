"""Intensity normalisation shared by training and by inference on a user's own scans."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from swin_unet.config import IntensityMode, choices
from swin_unet.errors import InputError

__all__ = ["INTENSITY_MODES", "normalize_intensity", "resolve_intensity"]

# "ct": clip HU to the window and scale it to [0, 1] (the published Synapse preprocessing).
# "zscore": per volume (and per channel) mean 0, standard deviation 1 (nnU-Net's choice for MRI:
#           unlike min-max it is not dominated by a few bright voxels).
# "minmax": per volume (and per channel) scaled to [0, 1].
# "none":   the values as read; 2-D images are read scaled to [0, 1] by their bit depth (8-bit
#           / 255), which keeps the colours' relations that a per-channel rescaling would change.
INTENSITY_MODES = tuple(mode for mode in choices(IntensityMode) if mode != "auto")


def resolve_intensity(configured: str, default: str) -> str:
    """The mode to use: ``configured`` (a checked ``data.intensity``) unless it is ``"auto"``,
    then the data set's ``default``."""
    return default if configured == "auto" else configured


def normalize_intensity(array: np.ndarray, mode: str,
                        ct_window: Sequence[float] = (-125.0, 275.0),
                        channels_first: bool = False) -> np.ndarray:
    """Normalise an image volume (or slice) exactly as the training pipeline does.

    Parameters
    ----------
    array : np.ndarray
        Image intensities (HU for CT), any shape, e.g. (X, Y, Z).
    mode : str
        ``"ct"``, ``"zscore"``, ``"minmax"`` or ``"none"`` (see :data:`INTENSITY_MODES`); a data source's
        ``intensity`` attribute holds the resolved mode.
    ct_window : pair of float
        (low, high) HU window for ``"ct"``.
    channels_first : bool
        If True the first axis holds channels, each normalised on its own statistics.

    Returns
    -------
    np.ndarray
        float32 array of the same shape.

    Raises
    ------
    InputError
        Unknown ``mode`` or an empty ``ct_window``.
    """
    if mode not in INTENSITY_MODES:
        raise InputError(f"intensity mode {mode!r} is not one of {', '.join(INTENSITY_MODES)}"
                         + (" (resolve 'auto' through the data set first)" if mode == "auto"
                            else ""))
    # MONAI (seconds to import) only where volumes are normalised, not where a command
    # merely reads the data-set table (test.py --predictions, --help).
    from monai.transforms import NormalizeIntensity, ScaleIntensity, ScaleIntensityRange

    array = np.asarray(array)
    if mode == "none":
        return array.astype(np.float32)
    with_channels = array if channels_first else array[None]
    if mode == "ct":
        low, high = (float(v) for v in ct_window)
        if not high > low:
            raise InputError(f"config key 'data.ct_window': {list(ct_window)} is not a window "
                             f"(low < high)")
        transform = ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True,
                                        dtype=np.float32)
    elif mode == "zscore":
        transform = NormalizeIntensity(channel_wise=True, dtype=np.float32)
    else:
        transform = ScaleIntensity(minv=0.0, maxv=1.0, channel_wise=True, dtype=np.float32)
    # MONAI returns a (Meta)Tensor; callers get the NumPy array they passed in.
    out = np.asarray(transform(with_channels.astype(np.float32, copy=False)), dtype=np.float32)
    return out if channels_first else out[0]
