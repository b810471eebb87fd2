"""RT Structure Sets (rt-utils): one ROI per class of a label map, checked by rasterising back."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ..errors import InputError
from ..palette import class_colour
from .atomic import atomic_write
from .dicom_seg import present_classes
from .dicom_series import Series, slice_geometry

__all__ = ["write_rtstruct", "rasterise_rtstruct", "RTSTRUCT_SUFFIX", "MIN_CHECKED_VOXELS",
           "MIN_DICE"]

logger = logging.getLogger(__name__)

RTSTRUCT_SUFFIX = "_rtstruct.dcm"
# Contours must rasterise back to the label map with at least this Dice, for classes larger
# than MIN_CHECKED_VOXELS (smaller ones are a few pixels where a contour's corners dominate).
MIN_DICE = 0.95
MIN_CHECKED_VOXELS = 50


def _builder():
    try:
        from rt_utils import RTStruct, ds_helper
    except ImportError:
        raise InputError("--rtstruct needs rt-utils: pip install rt-utils "
                         "(or pip install 'swin-unet[dicom]')", key="rtstruct") from None
    return RTStruct, ds_helper


def write_rtstruct(labels: np.ndarray, series: Series, class_names: Sequence[str],
                   path: Union[str, Path], checkpoint: str) -> tuple[Path | None, dict]:
    """Write ``labels`` (X, Y, Z over the checked ``series``) as an RT Structure Set.

    One ROI per class present, named after the class, in its colour. The contours are
    rasterised back (:func:`rasterise_rtstruct`); if a class larger than 50 voxels comes
    back with a Dice below 0.95 the file is not written.

    Returns
    -------
    Path or None, dict
        The file (None when no class is present or a class failed the check) and the Dice of
        each checked class by name.
    """
    import pydicom

    RTStruct, ds_helper = _builder()
    path = Path(path)
    present = present_classes(labels, len(class_names))
    if not present:
        logger.warning("%s: no class predicted, no RT Structure Set written", path.name)
        return None, {}
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files]
    for header in headers:
        # rt-utils steps along a row by PixelSpacing[0], which DICOM defines as the spacing
        # between rows: the copies it reads get the two swapped (none are written).
        header.PixelSpacing = list(header.PixelSpacing)[::-1]
    structure = RTStruct(headers, ds_helper.create_rtstruct_dataset(headers))
    structure.set_series_description(f"Swin-Unet model {checkpoint}"[:64])
    for c in present:
        # rt-utils takes masks as (rows, columns, slices).
        structure.add_roi(mask=np.transpose(labels == c, (1, 0, 2)), name=class_names[c - 1],
                          color=list(class_colour(c)), description=f"Swin-Unet {checkpoint}"[:64],
                          roi_generation_algorithm="AUTOMATIC")
    _complete(structure.ds, headers[0])
    dice = {}
    back = rasterise_rtstruct(structure.ds, series)
    for c in present:
        name = class_names[c - 1]
        truth = labels == c
        if truth.sum() > MIN_CHECKED_VOXELS:
            got = back.get(name, np.zeros_like(truth))
            dice[name] = float(2 * (got & truth).sum() / (got.sum() + truth.sum()))
    failed = {name: value for name, value in dice.items() if value < MIN_DICE}
    if failed:
        logger.warning("%s: not written: contours rasterise back with Dice %s (< %.2f)",
                       path.name, ", ".join(f"{n} {v:.3f}" for n, v in failed.items()), MIN_DICE)
        return None, dice
    atomic_write(path, lambda tmp: structure.ds.save_as(tmp, enforce_file_format=True))
    return path, dice


def _complete(dataset, source) -> None:
    """What rt-utils leaves out or too long for dciodvfy: Type 2 study/series attributes, the
    frame of reference, contour coordinates as at most 16-character decimal strings."""
    from pydicom.valuerep import DSfloat

    for keyword in ("ReferringPhysicianName", "AccessionNumber", "OperatorsName",
                    "PositionReferenceIndicator"):
        if keyword not in dataset:
            setattr(dataset, keyword, source.get(keyword, ""))
    dataset.FrameOfReferenceUID = source.FrameOfReferenceUID
    for roi in dataset.ROIContourSequence:
        for contour in getattr(roi, "ContourSequence", []):
            contour.ContourData = [DSfloat(float(v), auto_format=True)
                                   for v in contour.ContourData]


def rasterise_rtstruct(dataset, series: Series) -> dict[str, np.ndarray]:
    """Each ROI of an RT Structure Set as a bool mask (X, Y, Z) on ``series``' voxel grid.

    Contour points (patient coordinates, mm) go to voxel indices through the series' own
    geometry; each closed contour is filled and the fills of one slice combined by parity, so
    inner contours cut holes.
    """
    import cv2

    origin, spacing, direction = slice_geometry(series)
    axes = np.asarray(direction).reshape(3, 3) * np.asarray(spacing)
    inverse = np.linalg.inv(axes)
    rows, columns = int(series.headers[0].Rows), int(series.headers[0].Columns)
    shape = (columns, rows, len(series.headers))
    names = {int(item.ROINumber): str(item.ROIName) for item in dataset.StructureSetROISequence}
    masks = {}
    for roi in dataset.ROIContourSequence:
        mask = np.zeros(shape, dtype=bool)
        for contour in getattr(roi, "ContourSequence", []):
            points = np.asarray(contour.ContourData, dtype=np.float64).reshape(-1, 3)
            voxels = (points - np.asarray(origin)) @ inverse.T
            k = int(round(float(np.median(voxels[:, 2]))))
            if not 0 <= k < shape[2]:
                continue
            fill = np.zeros((rows, columns), dtype=np.uint8)
            cv2.fillPoly(fill, [np.round(voxels[:, :2]).astype(np.int32)], 1)
            mask[:, :, k] ^= fill.T.astype(bool)
        masks[names[int(roi.ReferencedROINumber)]] = mask
    return masks
