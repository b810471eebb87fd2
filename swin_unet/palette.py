"""Class colours: one colour per label everywhere (TensorBoard, figures, report, viewer tables)."""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["PALETTE", "class_colour", "class_colours", "colour_hex", "grey_image",
           "overlay_labels"]

# RGB 0-255 of classes 1, 2, 3, ...; background has none. Cycles past 12 classes. Chosen so
# that neighbouring class numbers contrast (Synapse: aorta red, gallbladder green, left kidney
# blue, right kidney yellow, liver magenta, pancreas cyan, spleen orange, stomach violet).
PALETTE = np.array([
    [230, 26, 26], [26, 191, 51], [38, 89, 242], [242, 217, 26],
    [217, 51, 217], [26, 217, 217], [242, 140, 26], [140, 77, 242],
    [153, 217, 64], [242, 115, 166], [89, 153, 153], [179, 128, 64],
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
    grey : (H, W) float in [0, 1]
        The slice, already scaled (:func:`grey_image`).
    labels : (H, W) int
        Label map, 0 = background (left grey).
    alpha : float
        Opacity of the colours.

    Returns
    -------
    np.ndarray
        (H, W, 3) float32 RGB in [0, 1].
    """
    rgb = np.repeat(np.asarray(grey, dtype=np.float32)[..., None], 3, axis=-1)
    labels = np.asarray(labels).astype(np.int64)
    colours = PALETTE[(np.maximum(labels, 1) - 1) % len(PALETTE)].astype(np.float32) / 255.0
    mask = (labels > 0)[..., None]
    return np.where(mask, (1 - alpha) * rgb + alpha * colours, rgb).astype(np.float32)
