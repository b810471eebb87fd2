"""Synthetic RGB skin-lesion photographs with masks, in the images/ + masks/ layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["lesion_image", "write_lesion_images"]

# Lesion tints (RGB gains over the skin's colour): brown, dark brown, red, blue-grey, tan.
# Pigmented lesions are darker than the skin around them; the tint and depth vary.
_LESION_TINTS = np.array([[1.0, 0.82, 0.72], [0.9, 0.72, 0.62], [1.05, 0.66, 0.66],
                          [0.78, 0.82, 1.0], [1.0, 0.9, 0.72]], dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth random field of unit standard deviation, correlated over about ``sigma`` pixels.

    Fine grain is filtered white noise; a coarse field is noise on a grid ``sigma`` apart,
    interpolated (bicubic): a large Gaussian filter costs 10x more for the same look.
    """
    if sigma <= 2.0:
        noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    else:
        coarse = rng.standard_normal((int(shape[0] / sigma) + 2, int(shape[1] / sigma) + 2))
        size = (int(coarse.shape[1] * sigma), int(coarse.shape[0] * sigma))
        field = Image.fromarray(coarse.astype(np.float32)).resize(size, Image.BICUBIC)
        noise = np.asarray(field)[:shape[0], :shape[1]]
    return noise / max(float(noise.std()), 1e-6)


def _lesion(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Coverage in [0, 1] (soft edge) and mask of one lesion of irregular outline."""
    h, w = shape
    radius = rng.uniform(0.14, 0.3) * min(h, w)
    centre = (rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w)
    elongation, angle = rng.uniform(0.75, 1.3), rng.uniform(0, np.pi)
    # The outline: a circle with a few random harmonics (lobes and notches).
    amplitudes = [rng.uniform(0.0, 0.22 / k ** 0.8) for k in range(2, 7)]
    phases = rng.uniform(0, 2 * np.pi, size=len(amplitudes))
    edge = rng.uniform(1.0, 4.0)  # width of the blurred border, in pixels
    # Work in the box the lesion can reach only (its farthest point, plus the border).
    reach = radius * (1.0 + sum(amplitudes)) * max(elongation, 1.0 / elongation) + edge
    r0, r1 = max(0, int(centre[0] - reach)), min(h, int(centre[0] + reach) + 2)
    c0, c1 = max(0, int(centre[1] - reach)), min(w, int(centre[1] + reach) + 2)
    du = np.arange(r0, r1, dtype=np.float32)[:, None] - centre[0]
    dv = np.arange(c0, c1, dtype=np.float32)[None, :] - centre[1]
    a = (np.cos(angle) * du + np.sin(angle) * dv) * elongation
    b = (-np.sin(angle) * du + np.cos(angle) * dv) / elongation
    distance = np.hypot(a, b)
    # cos(k theta + phase) = Re((a + ib)^k / |a + ib|^k * e^(i phase)): powers, no arctan.
    unit = (a + 1j * b) / np.maximum(distance, 1e-6)
    outline, power = np.ones_like(distance), unit
    for amplitude, phase in zip(amplitudes, phases):  # k = 2, 3, ...
        power = power * unit
        outline += amplitude * (power * np.exp(1j * phase)).real.astype(np.float32)
    signed = radius * outline - distance
    cover = np.zeros(shape, dtype=np.float32)
    cover[r0:r1, c0:c1] = np.clip(signed / edge + 0.5, 0.0, 1.0)
    inside = np.zeros(shape, dtype=bool)
    inside[r0:r1, c0:c1] = signed > 0
    return cover, inside


def lesion_image(seed: int, index: int, shape: Sequence[int] = (144, 176)):
    """(RGB uint8 (rows, cols, 3), mask uint8 (rows, cols) 0/255) of synthetic image ``index``.

    The image's size varies around ``shape`` (+-25 %); skin of varied tone with texture and
    uneven lighting, sometimes a dark vignette and hairs (unlabelled, as in dermoscopy); one or
    two lesions of irregular outline, varied colour, texture, border sharpness and contrast.
    Each image draws from its own stream: image i is the same whatever the number of images.
    """
    rng = np.random.default_rng([int(seed), int(index), 2])
    h = int(round(shape[0] * rng.uniform(0.75, 1.25)))
    w = int(round(shape[1] * rng.uniform(0.75, 1.25)))
    skin = np.array([rng.uniform(0.72, 0.92), rng.uniform(0.52, 0.72), rng.uniform(0.42, 0.62)],
                    dtype=np.float32)
    light = 1.0 + 0.07 * _smooth_noise(rng, (h, w), min(h, w) / 4)
    grain = 0.035 * _smooth_noise(rng, (h, w), 1.2) + 0.03 * _smooth_noise(rng, (h, w), 4.0)
    image = skin[None, None, :] * light[..., None] + grain[..., None]
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(1 if rng.random() < 0.8 else 2):
        cover, inside = _lesion(rng, (h, w))
        tint = _LESION_TINTS[rng.integers(len(_LESION_TINTS))] * rng.uniform(0.9, 1.1, 3)
        colour = skin * tint * rng.uniform(0.4, 0.75)
        contrast = rng.uniform(0.7, 1.0)
        # Texture: blotches of darker pigment, and sometimes dots (globules).
        blotch = rng.uniform(0.05, 0.15) * _smooth_noise(rng, (h, w), rng.uniform(1.5, 4.0))
        pigment = colour[None, None, :] * (1.0 + blotch[..., None])
        if rng.random() < 0.4:
            dots = ndimage.gaussian_filter((rng.random((h, w)) < 0.01).astype(np.float32), 1.0)
            pigment = pigment * (1.0 - 2.5 * dots[..., None])
        weight = (contrast * cover)[..., None]
        image = image * (1.0 - weight) + pigment * weight
        mask |= inside
    if rng.random() < 0.3:  # the dark round field of view of a dermatoscope
        rows = np.arange(h, dtype=np.float32)[:, None] / (h / 2) - 1
        cols = np.arange(w, dtype=np.float32)[None, :] / (w / 2) - 1
        radius = np.hypot(rows, cols)
        image *= np.clip(1.0 - 2.5 * (radius - rng.uniform(1.0, 1.2)), 0.3, 1.0)[..., None]
    for _ in range(int(rng.integers(0, 5)) if rng.random() < 0.5 else 0):
        # A hair: a dark quadratic curve across the image, 1-2 px wide.
        p = rng.uniform(0, 1, (3, 2)) * np.array([h, w], dtype=np.float32)
        t = np.linspace(0, 1, 4 * (h + w), dtype=np.float32)[:, None]
        points = (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t ** 2 * p[2]
        hair = np.zeros((h, w), dtype=np.float32)
        r = np.clip(points[:, 0].astype(int), 0, h - 1)
        c = np.clip(points[:, 1].astype(int), 0, w - 1)
        hair[r, c] = 1.0
        hair = np.clip(ndimage.gaussian_filter(hair, rng.uniform(0.5, 0.9)) * 3.0, 0.0, 1.0)
        image = image * (1.0 - 0.7 * hair[..., None]) + 0.1 * 0.7 * hair[..., None]
    image += rng.standard_normal(image.shape).astype(np.float32) * 0.012
    rgb = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return rgb, mask.astype(np.uint8) * 255


def write_lesion_images(root: Path, seed: int, n_images: int, shape: Sequence[int]) -> None:
    """``root/images/lesion_NNNN.jpg`` (JPEG, like dermoscopy releases),
    ``root/masks/lesion_NNNN_segmentation.png`` (0/255, ISIC's naming) and a ``dataset.json``
    naming the class "lesion"."""
    (root / "dataset.json").write_text(json.dumps(
        {"name": "synthetic skin lesions", "labels": {"background": 0, "lesion": 1}}, indent=1))
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for index in range(1, int(n_images) + 1):
        rgb, mask = lesion_image(seed, index, shape)
        name = f"lesion_{index:04d}"
        Image.fromarray(rgb).save(root / "images" / f"{name}.jpg", quality=92)
        Image.fromarray(mask).save(root / "masks" / f"{name}_segmentation.png")
