"""Turn a scan to the orientation a model was trained in and back: axis permutations and flips.

A 2-D slice model has learned one voxel order: which axis the slices are cut across and which
way rows and columns run. Training records it (:func:`training_geometry`); before a user's scan
is segmented, :func:`plan_reorientation` finds the permutation and flips of its voxel axes that
give the same axis codes, and the labels go back through the inverse. Nothing is resampled.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import nibabel as nib
import numpy as np
from nibabel.orientations import axcodes2ornt, io_orientation

__all__ = ["Reorientation", "plan_reorientation", "axcodes_of", "inplane_geometry",
           "training_geometry", "scale_warnings", "OBLIQUE_TOLERANCE_DEG", "SCALE_FACTOR"]

# A slice direction further than this from every world axis is oblique: it is segmented along
# the nearest axis, with a warning.
OBLIQUE_TOLERANCE_DEG = 20.0
# In-plane spacing or field of view outside [low / SCALE_FACTOR, high * SCALE_FACTOR] of the
# training data's range draws a warning.
SCALE_FACTOR = 2.0


def axcodes_of(affine: np.ndarray) -> str:
    """Axis codes of the voxel axes in the RAS+ world, e.g. ``"LPS"`` (nibabel's aff2axcodes)."""
    return "".join(str(c) for c in nib.aff2axcodes(np.asarray(affine, dtype=np.float64)))


def _columns(affine: np.ndarray) -> np.ndarray:
    return np.asarray(affine, dtype=np.float64)[:3, :3]


def inplane_geometry(affine: np.ndarray, shape: Sequence[int],
                     slice_axis: int = 2) -> tuple[tuple[float, float], tuple[float, float]]:
    """In-plane voxel size (mm) and field of view (mm) across ``slice_axis``, in axis order."""
    sizes = np.linalg.norm(_columns(affine), axis=0)
    axes = [a for a in range(3) if a != slice_axis]
    spacing = tuple(float(sizes[a]) for a in axes)
    fov = tuple(float(sizes[a] * shape[a]) for a in axes)
    return spacing, fov


@dataclass(frozen=True)
class Reorientation:
    """A permutation and flips of the three spatial axes (the last three of an array).

    Attributes
    ----------
    permutation : tuple of int
        Target axis ``i`` is source axis ``permutation[i]``.
    flips : tuple of bool
        Target axis ``i`` runs the other way than its source axis.
    source_axcodes, target_axcodes : str
        The scan's axis codes and the model's (``None``: no record, nothing changed).
    obliquity_deg : float
        Angle between the scan's slice direction and the nearest world axis.
    slice_axis : int
        The axis, in the model's voxel order, that slices are cut across.
    note : str
        What was done, for the log.
    """

    permutation: tuple[int, int, int] = (0, 1, 2)
    flips: tuple[bool, bool, bool] = (False, False, False)
    source_axcodes: str = ""
    target_axcodes: Optional[str] = None
    obliquity_deg: float = 0.0
    slice_axis: int = 2
    note: str = ""

    @property
    def identity(self) -> bool:
        """True when the voxels are used as stored."""
        return self.permutation == (0, 1, 2) and not any(self.flips)

    def forward(self, array: np.ndarray) -> np.ndarray:
        """A view of ``array`` (spatial axes last) in the model's voxel order."""
        lead = array.ndim - 3
        out = np.transpose(array, tuple(range(lead)) + tuple(lead + p for p in self.permutation))
        flipped = tuple(lead + i for i, f in enumerate(self.flips) if f)
        return np.flip(out, flipped) if flipped else out

    def backward(self, array: np.ndarray) -> np.ndarray:
        """A view of ``array`` (spatial axes last, the model's order) in the scan's voxel order."""
        lead = array.ndim - 3
        flipped = tuple(lead + i for i, f in enumerate(self.flips) if f)
        out = np.flip(array, flipped) if flipped else array
        inverse = np.argsort(self.permutation)
        return np.transpose(out, tuple(range(lead)) + tuple(lead + int(p) for p in inverse))


def _obliquity(affine: np.ndarray, slice_axis: int) -> float:
    """Degrees between the normal of the planes across ``slice_axis`` and its nearest world axis."""
    columns = _columns(affine)
    a, b = [columns[:, i] for i in range(3) if i != slice_axis]
    normal = np.cross(a, b)
    norm = np.linalg.norm(normal)
    if norm == 0:
        return 0.0
    cosine = float(np.max(np.abs(normal)) / norm)
    return math.degrees(math.acos(min(1.0, cosine)))


def plan_reorientation(affine: np.ndarray, target_axcodes: Optional[str],
                       slice_axis: int = 2) -> tuple[Reorientation, list[str]]:
    """How to bring a scan with ``affine`` to ``target_axcodes``, and the warnings to log.

    Parameters
    ----------
    affine : np.ndarray
        The scan's 4x4 voxel-to-world (RAS+) matrix.
    target_axcodes : str or None
        The model's axis codes (``"LPS"``...); None keeps the stored order.
    slice_axis : int
        The model's slice axis, to measure how oblique the scan's slices are.

    Returns
    -------
    Reorientation, list of str
        The plan (its ``note`` says what was done) and warnings (oblique slices, a degenerate
        affine).
    """
    warnings: list[str] = []
    source = axcodes_of(affine) if np.all(np.isfinite(affine)) else "???"
    if target_axcodes is None:
        return Reorientation(source_axcodes=source, note=(
            "the checkpoint records no training orientation (original code or an older run): "
            "slices are cut across the file's third voxel axis as stored")), warnings
    ornt = io_orientation(np.asarray(affine, dtype=np.float64))
    if np.isnan(ornt).any():
        warnings.append(f"the affine does not give three distinct axes (axis codes {source}); "
                        f"the voxels are used as stored")
        return Reorientation(source_axcodes=source, target_axcodes=target_axcodes,
                             note="used as stored (degenerate affine)"), warnings
    target = axcodes2ornt(tuple(target_axcodes.upper()))
    permutation, flips = [], []
    for world, sign in target:
        axis = int(np.flatnonzero(ornt[:, 0] == world)[0])
        permutation.append(axis)
        flips.append(bool(ornt[axis, 1] != sign))
    nearest = "".join(str(c) for c in nib.orientations.ornt2axcodes(ornt))
    angle = _obliquity(affine, permutation[slice_axis])
    if permutation == [0, 1, 2] and not any(flips):
        note = f"stored as {nearest}, the model's orientation: used as stored"
    else:
        flipped = [i for i, f in enumerate(flips) if f]
        note = (f"stored as {nearest}, reoriented to the model's {target_axcodes} (voxel axes "
                f"{tuple(permutation)}"
                + (f", then axes {flipped} flipped" if flipped else "")
                + "); labels written back in the scan's own voxel order")
    if angle > OBLIQUE_TOLERANCE_DEG:
        warnings.append(f"the slices are oblique: {angle:.1f} degrees from the nearest world "
                        f"axis (tolerance {OBLIQUE_TOLERANCE_DEG:g}); segmented along the "
                        f"nearest axis, which the model may not have seen at this angle")
    return Reorientation(tuple(permutation), tuple(flips), nearest, target_axcodes, angle,
                         slice_axis, note), warnings


def _range(values: Iterable[float]) -> list[float]:
    values = list(values)
    return [round(min(values), 4), round(max(values), 4)]


def training_geometry(headers: Sequence[tuple[np.ndarray, Sequence[int]]],
                      slice_axis: int = 2) -> tuple[dict, list[str]]:
    """The geometry record of training volumes given as (affine, spatial shape) pairs.

    Returns
    -------
    dict, list of str
        ``{"axcodes", "slice_axis", "inplane_spacing", "field_of_view"}`` (the fields of
        :class:`~swin_unet.config.GeometryConfig`; the most common axis codes when the volumes
        disagree) and notes for the log.
    """
    if not headers:
        return {}, ["the training volumes store no geometry: none recorded"]
    codes = Counter(axcodes_of(affine) for affine, _ in headers)
    axcodes, count = codes.most_common(1)[0]
    notes = []
    if count < len(headers):
        notes.append(f"training volumes are stored in different orientations "
                     f"({dict(codes)}); {axcodes} (the most common) recorded")
    spacings, fovs = [], []
    for affine, shape in headers:
        spacing, fov = inplane_geometry(affine, shape, slice_axis)
        spacings += spacing
        fovs += fov
    return {"axcodes": axcodes, "slice_axis": slice_axis, "inplane_spacing": _range(spacings),
            "field_of_view": _range(fovs)}, notes


def scale_warnings(spacing: Sequence[float], fov: Sequence[float],
                   train_spacing: Optional[Sequence[float]],
                   train_fov: Optional[Sequence[float]],
                   factor: float = SCALE_FACTOR) -> list[str]:
    """Warnings for an in-plane spacing or field of view far outside the training data's range.

    A 2-D model resizes every slice to its input size, so a scan at another scale shows it
    organs of another size in pixels than it learned.
    """
    warnings = []
    for what, values, known in (("in-plane spacing", spacing, train_spacing),
                                ("field of view", fov, train_fov)):
        if not known:
            continue
        low, high = float(known[0]), float(known[1])
        if any(v < low / factor or v > high * factor for v in values):
            shown = " x ".join(f"{v:.3g}" for v in values)
            warnings.append(f"{what} {shown} mm is more than a factor {factor:g} outside the "
                            f"training data's {low:.3g}-{high:.3g} mm; a 2-D model resizes "
                            f"slices but does not rescale anatomy, so expect poorer labels")
    return warnings
