"""Geometry helpers for the phantoms: normalised grids, smooth deformations, ellipsoids, NIfTI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

__all__ = ["Grid", "SmoothWarp", "ellipsoid_mask", "tube_mask", "save_nifti"]


@dataclass
class Grid:
    """Normalised coordinates of a volume: u, v in [-1, 1] in-plane, w in [0, 1] along slices."""

    shape: tuple[int, int, int]

    def axis(self, dim: int, start: int = 0, stop=None) -> np.ndarray:
        """Coordinates of voxel centres ``start:stop`` along ``dim`` (float32)."""
        n = self.shape[dim]
        index = np.arange(start, n if stop is None else stop, dtype=np.float32) + 0.5
        return index / n * 2 - 1 if dim < 2 else index / n

    def box(self, centre: Sequence[float], radius: Sequence[float]) -> tuple[slice, ...]:
        """Voxel slices covering the normalised box ``centre +- radius`` (clipped)."""
        out = []
        for dim, (c, r) in enumerate(zip(centre, radius)):
            n = self.shape[dim]
            low, high = (c - r, c + r)
            if dim < 2:
                low, high = (low + 1) / 2, (high + 1) / 2
            start = int(np.clip(np.floor(low * n), 0, n))
            stop = int(np.clip(np.ceil(high * n), 0, n))
            out.append(slice(start, max(start, stop)))
        return tuple(out)

    def coords(self, box: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable (u, v, w) arrays over ``box``."""
        u = self.axis(0, box[0].start, box[0].stop)[:, None, None]
        v = self.axis(1, box[1].start, box[1].stop)[None, :, None]
        w = self.axis(2, box[2].start, box[2].stop)[None, None, :]
        return u, v, w


class SmoothWarp:
    """A smooth random displacement: a few low-frequency sine waves per coordinate."""

    def __init__(self, rng: np.random.Generator, amplitude: float, waves: int = 2):
        self.amplitude = float(amplitude)
        self.freq = rng.uniform(0.6, 1.6, size=(3, waves, 3)).astype(np.float32) * np.pi
        self.freq *= rng.choice([-1.0, 1.0], size=(3, waves, 3)).astype(np.float32)
        self.phase = rng.uniform(0, 2 * np.pi, size=(3, waves)).astype(np.float32)
        self.scale = (rng.uniform(0.5, 1.0, size=(3, waves)) / waves).astype(np.float32)

    def __call__(self, u: np.ndarray, v: np.ndarray, w: np.ndarray):
        """Displaced (u, v, w); the in-plane displacement is at most ``amplitude``."""
        out = []
        for dim, coord in enumerate((u, v, w)):
            shift = 0.0
            for k in range(self.freq.shape[1]):
                fu, fv, fw = self.freq[dim, k]
                shift = shift + self.scale[dim, k] * np.sin(fu * u + fv * v + fw * w
                                                            + self.phase[dim, k])
            gain = self.amplitude if dim < 2 else self.amplitude * 0.5
            out.append(coord + gain * shift)
        return out


def ellipsoid_mask(grid: Grid, centre, radii, angle: float = 0.0, warp=None,
                   bend: float = 0.0) -> tuple[tuple[slice, ...], np.ndarray]:
    """Boolean mask of a (warped, in-plane rotated, optionally bent) ellipsoid and its box.

    ``bend`` curves the long (u) axis: v is offset by ``bend * (u - cu)^2`` (a pancreas).
    """
    margin = 0.0 if warp is None else warp.amplitude
    reach = max(radii[0], radii[1]) * (1.0 + abs(bend)) + margin
    box = grid.box(centre, (reach, reach + abs(bend) * radii[0] ** 2, radii[2] + margin))
    u, v, w = grid.coords(box)
    if warp is not None:
        u, v, w = warp(u, v, w)
    du, dv, dw = u - centre[0], v - centre[1], w - centre[2]
    dv = dv - bend * du ** 2
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    a = (cos * du + sin * dv) / radii[0]
    b = (-sin * du + cos * dv) / radii[1]
    return box, (a * a + b * b + (dw / radii[2]) ** 2) <= 1.0


def tube_mask(grid: Grid, centre, radii, z_range=(0.0, 1.0), wobble: float = 0.0,
              rng=None) -> tuple[tuple[slice, ...], np.ndarray]:
    """Boolean mask of an elliptic tube along the slices (aorta, IVC, spine), with its box."""
    phase = 0.0 if rng is None else rng.uniform(0, 2 * np.pi)
    reach = (radii[0] + wobble, radii[1] + wobble, (z_range[1] - z_range[0]) / 2)
    box = grid.box((centre[0], centre[1], sum(z_range) / 2), reach)
    u, v, w = grid.coords(box)
    cu = centre[0] + wobble * np.sin(2 * np.pi * w + phase)
    return box, (((u - cu) / radii[0]) ** 2 + ((v - centre[1]) / radii[1]) ** 2) <= 1.0


def save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write ``array`` as NIfTI with ``affine`` as both qform and sform (scanner space)."""
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))
