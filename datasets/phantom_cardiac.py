"""Synthetic short-axis cine MRI (RV, myocardium, LV at ED and ES) in the ACDC raw layout."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .phantom_shapes import Grid, SmoothWarp, save_nifti

__all__ = ["cardiac_frame", "write_cardiac_case"]

_BLOOD, _MYOCARDIUM, _TISSUE, _LUNG, _AIR = 320.0, 90.0, 150.0, 25.0, 4.0


def cardiac_frame(shape: Sequence[int], anatomy: dict, phase: str, rng: np.random.Generator):
    """Image (int16, arbitrary MR units) and label (uint8: 1 RV, 2 Myo, 3 LV) of one frame.

    ``anatomy`` holds the case's fixed geometry; ``phase`` "ED" (dilated) or "ES" (contracted:
    smaller cavities, thicker myocardium).
    """
    grid = Grid(tuple(int(v) for v in shape))
    u, v, w = grid.coords(tuple(slice(0, n) for n in grid.shape))
    u, v, w = anatomy["warp"](u, v, w)
    contraction = 1.0 if phase == "ED" else anatomy["contraction"]
    # Slices run from the base (w=0) to the apex (w=1): the ventricles taper towards the apex.
    taper = np.sqrt(np.clip(1.0 - (w / 1.08) ** 2, 0.0, 1.0))
    cu, cv = anatomy["lv_centre"]
    radius = np.hypot(u - cu, v - cv)
    lv_r = anatomy["lv_radius"] * contraction * taper
    wall = anatomy["wall"] * (1.0 if phase == "ED" else 1.3)
    lv = radius <= lv_r
    myo = (radius <= lv_r + wall * np.sqrt(taper)) & ~lv & (taper > 0.15)
    ru, rv = cu + anatomy["rv_offset"][0], cv + anatomy["rv_offset"][1]
    rv_axes = np.asarray(anatomy["rv_radii"]) * (1.0 if phase == "ED" else 0.75)
    angle = anatomy["rv_angle"]
    du, dv = u - ru, v - rv
    a = (np.cos(angle) * du + np.sin(angle) * dv) / rv_axes[0]
    b = (-np.sin(angle) * du + np.cos(angle) * dv) / rv_axes[1]
    rv_cavity = ((a * a + b * b) <= taper ** 2) & ~lv & ~myo & (w < 0.8)
    rv_cavity &= radius > lv_r + wall * np.sqrt(taper) + 0.02  # the septum separates them

    shape3 = grid.shape
    image = np.full(shape3, _AIR, dtype=np.float32)
    body = np.broadcast_to(((u / 0.95) ** 2 + (v / 0.85) ** 2) <= 1.0, shape3)
    lungs = np.broadcast_to((np.abs(u) > 0.45) & (np.abs(v) < 0.55) & (
        np.abs(u - cu) > anatomy["lv_radius"] + 0.25), shape3)
    image[body] = _TISSUE
    image[body & lungs] = _LUNG
    label = np.zeros(shape3, dtype=np.uint8)
    for mask, value, index in ((rv_cavity, _BLOOD * 0.95, 1), (myo, _MYOCARDIUM, 2),
                               (lv, _BLOOD, 3)):
        mask = np.broadcast_to(mask, shape3)
        image[mask] = value
        label[mask] = index
    # Smooth coil sensitivity (bias field) and Rician noise, as in magnitude MR images.
    bias = 1.0 + 0.2 * np.sin(anatomy["bias"][0] * u + anatomy["bias"][1] * v
                              + anatomy["bias"][2])
    image = image * np.broadcast_to(bias, shape3)
    noise = rng.standard_normal((2,) + shape3, dtype=np.float32) * 14.0
    image = np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2)
    return np.rint(image).astype(np.int16), label


def _anatomy(rng: np.random.Generator) -> dict:
    return {
        "warp": SmoothWarp(rng, 0.03),
        "lv_centre": (0.12 + rng.uniform(-0.08, 0.08), 0.05 + rng.uniform(-0.08, 0.08)),
        "lv_radius": rng.uniform(0.2, 0.26),
        "wall": rng.uniform(0.08, 0.1),
        "contraction": rng.uniform(0.6, 0.72),
        "rv_offset": (rng.uniform(-0.42, -0.36), rng.uniform(-0.12, 0.0)),
        "rv_radii": (rng.uniform(0.2, 0.25), rng.uniform(0.3, 0.36)),
        "rv_angle": rng.uniform(-0.35, 0.35),
        "bias": (rng.uniform(-2, 2), rng.uniform(-2, 2), rng.uniform(0, 2 * np.pi)),
    }


def _oblique_affine(shape: Sequence[int], spacing: Sequence[float], rng) -> np.ndarray:
    # Short-axis planes are oblique to the scanner axes: rotate about two axes.
    a, b = rng.uniform(-0.6, 0.6, size=2)
    rot_x = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rot_z = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot_z @ rot_x @ np.diag(spacing)
    affine[:3, 3] = rng.uniform(-50, 50, size=3) - affine[:3, :3] @ (np.asarray(shape) / 2)
    return affine


def write_cardiac_case(folder: Path, seed: int, index: int, shape: Sequence[int]) -> None:
    """Write ``folder/patientNNN/`` (Info.cfg, ED and ES frames with ``_gt`` labels)."""
    rng = np.random.default_rng([int(seed), int(index), 1])
    anatomy = _anatomy(rng)
    inplane = 200.0 / max(shape[0], shape[1]) * rng.uniform(0.9, 1.1)
    spacing = (inplane, inplane, float(rng.choice([5.0, 6.5, 8.0, 10.0])))
    affine = _oblique_affine(shape, spacing, rng)
    n_frames = int(rng.integers(20, 31))
    es = int(rng.integers(8, 14))
    patient = f"patient{index:03d}"
    out = folder / patient
    out.mkdir(parents=True)
    (out / "Info.cfg").write_text(
        f"ED: 1\nES: {es}\nGroup: NOR\nHeight: {rng.uniform(155, 195):.1f}\n"
        f"NbFrame: {n_frames}\nWeight: {rng.uniform(50, 100):.1f}\n")
    for frame, phase in ((1, "ED"), (es, "ES")):
        image, label = cardiac_frame(shape, anatomy, phase, rng)
        save_nifti(image, affine, out / f"{patient}_frame{frame:02d}.nii.gz")
        save_nifti(label, affine, out / f"{patient}_frame{frame:02d}_gt.nii.gz")
