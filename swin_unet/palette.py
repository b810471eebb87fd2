"""Class colours: one colour per label everywhere (TensorBoard, figures, report, viewer tables)."""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["PALETTE", "class_colour", "class_colours", "colour_hex", "grey_image",
           "overlay_labels"]

# RGB 0-255 of classes 1, 2, 3, ...; background has none. Cycles past 16 classes. Any two of
# the 16 differ by CIEDE2000 >= 20 (tests/test_report_palette.py), chosen greedily, each the
# colour farthest from those before it, among saturated mid-light sRGB colours.
PALETTE = np.array([
    [230, 26, 26], [26, 191, 51], [38, 89, 242], [242, 217, 26],
    [75, 225, 255], [255, 195, 240], [105, 90, 0], [225, 15, 165],
    [0, 120, 105], [255, 165, 105], [150, 165, 255], [0, 255, 210],
    [105, 75, 120], [165, 150, 90], [255, 120, 135], [30, 120, 0],
], dtype=np.uint8)


def class_colour(index: int) -> tuple[int, int, int]:
    """RGB 0-255 of foreground class ``index`` (1 = the first class)."""
    if index < 1:
        raise ValueError(f"class index {index}: background (0) has no colour")
    return tuple(int(c) for c in PALETTE[(index - 1) % len(PALETTE)])


def class_colours(num_foreground: int) -> np.ndarray:
    """(num_foreground, 3) uint8 colours of classes 1..num_foreground."""
    return np.array([class_colour(i) for i in range(1, num_foreground + 1)],
                    dtype=np.uint8).reshape(-1, 3)


def colour_hex(index: int) -> str:
    """``#rrggbb`` of foreground class ``index`` (for HTML)."""
    return "#{:02x}{:02x}{:02x}".format(*class_colour(index))


def grey_image(image: np.ndarray, window: Optional[tuple[float, float]] = None) -> np.ndarray:
    """Intensities scaled to [0, 1] float32 (clipped to ``window``, default the full range)."""
    image = np.asarray(image, dtype=np.float32)
    low, high = window if window is not None else (float(image.min()), float(image.max()))
    if not high > low:
        return np.zeros_like(image)
    return np.clip((image - low) / (high - low), 0.0, 1.0)


def overlay_labels(grey: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Labels in their class colours blended over a grey image.

    Parameters
    ----------
    grey : (H, W) or (H, W, 3) float in [0, 1]
        The slice, already scaled (:func:`grey_image`); an RGB one stays in colour.
    labels : (H, W) int
        Label map, 0 = background (left grey).
    alpha : float
        Opacity of the colours.

    Returns
    -------
    np.ndarray
        (H, W, 3) float32 RGB in [0, 1].
    """
    grey = np.asarray(grey, dtype=np.float32)
    rgb = grey if grey.ndim == 3 else np.repeat(grey[..., None], 3, axis=-1)
    labels = np.asarray(labels).astype(np.int64)
    colours = PALETTE[(np.maximum(labels, 1) - 1) % len(PALETTE)].astype(np.float32) / 255.0
    mask = (labels > 0)[..., None]
    return np.where(mask, (1 - alpha) * rgb + alpha * colours, rgb).astype(np.float32)
