"""Dice and HD95 per case and class: fast, spacing-aware (``mm``) or the papers' (``paper``).

Two conventions are supported (see ``MODES``):

``paper``
    The published TransUNet / Swin-Unet procedure: HD95 in voxel units (spacing ignored), both
    as medpy computes them; a prediction where the ground truth is empty scores Dice 1 and
    HD95 0, an empty prediction scores Dice 0 and HD95 0. Kept only for comparison with
    published tables: it rewards false positives and makes a missed organ lower the HD95 mean.
``mm`` (default)
    HD95 in millimetres from the voxel spacing; an organ absent from both prediction and ground
    truth is not counted (NaN, excluded from means, counted in the summary); a missed organ
    scores Dice 0 and HD95 equal to the volume's diagonal in mm; a false positive where the
    ground truth is empty scores Dice 0 and HD95 equal to the diagonal too. No empty mask can
    improve a mean.

HD95 is medpy's definition: the 95th percentile (linear interpolation) of the pooled distances
from each surface voxel of one mask to the nearest surface voxel of the other, both
directions; surfaces are the voxels removed by one binary erosion with face connectivity, the
outside of the volume counting as background. It is computed on the bounding box of the two
masks with a KD-tree between the two surfaces, which gives medpy's values (same distances,
same percentile) at a fraction of the cost (``benchmarks/bench_metrics.py``).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..config import MetricConventions, choices, look_up_option
from ..errors import InputError

__all__ = [
    "MODES",
    "STATUSES",
    "surface_mask",
    "dice_score",
    "hausdorff95",
    "case_metrics",
    "summarize",
    "volume_diagonal",
]

MODES = choices(MetricConventions)
# Per case and class: both masks non-empty, organ missed, false positive, absent from both.
STATUSES = ("both", "missed", "false_positive", "absent")


def surface_mask(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` that one face-connected binary erosion removes.

    Equal to ``mask ^ scipy.ndimage.binary_erosion(mask, generate_binary_structure(ndim, 1))``
    (outside the array counts as background), written with shifted views because that is
    cheaper than ``binary_erosion`` (docs/performance.md).

    Parameters
    ----------
    mask : np.ndarray
        Boolean array of any dimension.

    Returns
    -------
    np.ndarray
        Boolean array of the same shape, True on the surface voxels.
    """
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1)
    core = tuple(slice(1, -1) for _ in range(mask.ndim))
    interior = mask.copy()
    for axis in range(mask.ndim):
        for start, stop in ((0, -2), (2, None)):
            shifted = list(core)
            shifted[axis] = slice(start, stop)
            interior &= padded[tuple(shifted)]
    return mask & ~interior


def dice_score(pred: np.ndarray, label: np.ndarray) -> float:
    """Dice coefficient ``2|A & B| / (|A| + |B|)`` of two binary masks (1.0 if both are empty).

    Parameters
    ----------
    pred, label : np.ndarray
        Arrays of the same shape; non-zero is foreground.
    """
    pred = np.asarray(pred, dtype=bool)
    label = np.asarray(label, dtype=bool)
    total = np.count_nonzero(pred) + np.count_nonzero(label)
    if total == 0:
        return 1.0
    return 2.0 * np.count_nonzero(pred & label) / float(total)


def _normalise_spacing(spacing: Optional[Sequence[float]], ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim, dtype=np.float64)
    values = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, ndim)
    if values.size != ndim:
        raise InputError(f"spacing has {values.size} values for a {ndim}-D volume")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise InputError(f"spacing must be positive and finite, got {values.tolist()}")
    return values


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Smallest box holding every True voxel of a non-empty mask."""
    return ndimage.find_objects(mask.astype(np.uint8), max_label=1)[0]


def _union_box(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _hd95_in_box(pred: np.ndarray, label: np.ndarray, spacing: np.ndarray) -> float:
    """HD95 of two non-empty masks cropped to a box that holds all of both.

    Every voxel outside the box is background in both masks, so the surfaces found in the
    box are the whole-volume surfaces and the distances between them are unchanged.
    """
    pred_points = np.argwhere(surface_mask(pred)) * spacing
    label_points = np.argwhere(surface_mask(label)) * spacing
    # Exact nearest neighbours between the two surfaces: faster (benchmarks/bench_metrics.py,
    # docs/performance.md) than a distance transform limited to the same box, whose cost grows with the
    # box's volume (scattered false positives make it large) rather than with the surfaces'
    # area.
    to_label, _ = cKDTree(label_points).query(pred_points, k=1, workers=-1)
    to_pred, _ = cKDTree(pred_points).query(label_points, k=1, workers=-1)
    return float(np.percentile(np.concatenate([to_label, to_pred]), 95))


def hausdorff95(pred: np.ndarray, label: np.ndarray,
                spacing: Optional[Sequence[float]] = None) -> float:
    """95th-percentile symmetric Hausdorff distance between two non-empty binary masks.

    Same definition and values as ``medpy.metric.binary.hd95(pred, label, voxelspacing)``.

    Parameters
    ----------
    pred, label : np.ndarray
        Arrays of the same shape; non-zero is foreground.
    spacing : sequence of float, optional
        Voxel size along each axis (one number for all axes); unit spacing if None.

    Returns
    -------
    float
        The distance, in the unit of ``spacing`` (voxels if None).

    Raises
    ------
    ValueError
        If the shapes differ or either mask is empty.
    """
    pred = np.asarray(pred, dtype=bool)
    label = np.asarray(label, dtype=bool)
    if pred.shape != label.shape:
        raise InputError(f"prediction shape {pred.shape} differs from label shape {label.shape}",
                         key="prediction")
    if not pred.any() or not label.any():
        raise ValueError("HD95 is undefined when a mask is empty")
    box = _union_box(_bounding_box(pred), _bounding_box(label))
    return _hd95_in_box(pred[box], label[box], _normalise_spacing(spacing, pred.ndim))


def volume_diagonal(shape: Sequence[int], spacing: Optional[Sequence[float]] = None) -> float:
    """Length of the volume's diagonal, in the unit of ``spacing``: the largest HD95 possible."""
    extent = np.asarray(shape, dtype=np.float64) * _normalise_spacing(spacing, len(shape))
    return float(np.sqrt(np.sum(extent ** 2)))


def _as_label_array(array: np.ndarray, name: str, num_classes: int) -> np.ndarray:
    """Integer view of a label map, checked to hold only values in [0, num_classes)."""
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating):
            raise InputError(f"{name}: expected an integer label map, got dtype {array.dtype}",
                             key=name)
        rounded = np.rint(array)
        if not np.all(np.isfinite(array)) or not np.array_equal(rounded, array):
            raise InputError(f"{name}: label map holds non-integer values", key=name)
        array = rounded.astype(np.int64)
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= num_classes:
            raise InputError(f"{name}: label values must be in [0, {num_classes - 1}], "
                             f"found {low}..{high}", key=name)
    if array.dtype.itemsize > 2 and num_classes <= 256:
        array = array.astype(np.uint8)  # find_objects and comparisons are cheaper on bytes
    return array


def case_metrics(pred: np.ndarray, label: np.ndarray, num_classes: int,
                 spacing: Optional[Sequence[float]] = (1.0, 1.0, 1.0), mode: str = "mm",
                 hd95: bool = True) -> list[dict]:
    """Dice and HD95 of every foreground class of one case.

    Parameters
    ----------
    pred, label : np.ndarray
        Label maps of the same shape (any dimension), values in ``[0, num_classes)``. Axes of
        length 1 are dropped (down to 2-D): a 2-D image stored as one slice is scored in 2-D.
    num_classes : int
        Number of classes including background (class 0, not scored).
    spacing : sequence of float, optional
        Voxel size per axis in mm (``mm`` mode; ignored in ``paper`` mode).
    mode : {"mm", "paper"}
        The empty-mask and unit conventions (module docstring).
    hd95 : bool
        Compute HD95 (the costly part); when False every ``hd95`` is None.

    Returns
    -------
    list of dict
        One dict per class 1..num_classes-1 with ``class_index``, ``dice``, ``hd95`` (float,
        NaN for an organ absent from both in ``mm`` mode, None when not computed), ``status``
        (one of ``STATUSES``), ``pred_voxels`` and ``label_voxels``.

    Raises
    ------
    InputError
        Shapes that differ, values out of range, a bad spacing or mode.
    """
    look_up_option(mode, MODES, "metric conventions")
    if num_classes < 2:
        raise InputError(f"num_classes must be at least 2, got {num_classes}")
    pred = _as_label_array(pred, "prediction", num_classes)
    label = _as_label_array(label, "label", num_classes)
    if pred.shape != label.shape:
        raise InputError(f"prediction shape {pred.shape} differs from label shape {label.shape}",
                         key="prediction")
    unit = (np.ones(label.ndim) if mode == "paper"
            else _normalise_spacing(spacing, label.ndim))
    # A 2-D image is a volume of one slice: it is scored in 2-D (an erosion across an axis of
    # length 1 would make every pixel a surface pixel). Axes of length 1 go, down to two.
    drop = tuple([axis for axis, n in enumerate(label.shape) if n == 1][:max(label.ndim - 2, 0)])
    if drop:
        pred, label, unit = np.squeeze(pred, drop), np.squeeze(label, drop), np.delete(unit, drop)
    diagonal = volume_diagonal(label.shape, unit)
    # One pass over each volume finds every class's box; all later work stays in the boxes.
    pred_boxes = ndimage.find_objects(pred, max_label=num_classes - 1)
    label_boxes = ndimage.find_objects(label, max_label=num_classes - 1)

    rows = []
    for index in range(1, num_classes):
        pred_box, label_box = pred_boxes[index - 1], label_boxes[index - 1]
        row = {"class_index": index, "pred_voxels": 0, "label_voxels": 0}
        if pred_box is not None and label_box is not None:
            box = _union_box(pred_box, label_box)
            pred_mask, label_mask = pred[box] == index, label[box] == index
            row["pred_voxels"] = int(np.count_nonzero(pred_mask))
            row["label_voxels"] = int(np.count_nonzero(label_mask))
            overlap = np.count_nonzero(pred_mask & label_mask)
            row["status"] = "both"
            row["dice"] = 2.0 * overlap / float(row["pred_voxels"] + row["label_voxels"])
            row["hd95"] = _hd95_in_box(pred_mask, label_mask, unit) if hd95 else None
        else:
            if pred_box is not None:
                row["pred_voxels"] = int(np.count_nonzero(pred[pred_box] == index))
                row["status"] = "false_positive"
            elif label_box is not None:
                row["label_voxels"] = int(np.count_nonzero(label[label_box] == index))
                row["status"] = "missed"
            else:
                row["status"] = "absent"
            row["dice"], distance = _empty_mask_scores(row["status"], mode, diagonal)
            row["hd95"] = distance if hd95 else None
        rows.append(row)
    return rows


def _empty_mask_scores(status: str, mode: str, diagonal: float) -> tuple[float, float]:
    """(Dice, HD95) of a class whose prediction or ground truth is empty."""
    if mode == "paper":
        # TransUNet's calculate_metric_percase: only a non-empty prediction over an empty
        # ground truth scores (1, 0); any empty prediction scores (0, 0).
        return (1.0, 0.0) if status == "false_positive" else (0.0, 0.0)
    if status == "absent":
        return math.nan, math.nan
    return 0.0, diagonal


def _mean(values: list[float]) -> float:
    """Mean of the finite values (NaN if none)."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarize(per_case: dict[str, list[dict]], class_names: list[str], mode: str,
              distance_unit: str = "mm") -> dict:
    """Mean over cases per class, then over classes, with counts of each empty-mask case.

    Parameters
    ----------
    per_case : dict of str to list of dict
        Case name to the rows :func:`case_metrics` returned for it.
    class_names : list of str
        Names of the foreground classes, class 1 first.
    mode : {"mm", "paper"}
        The convention the rows were computed with.
    distance_unit : str
        The unit of the data's spacing: "mm", or "px" for 2-D images (which store none, in
        either mode). ``paper`` mode ignores a spacing in mm: its unit is then "voxel".

    Returns
    -------
    dict
        ``metric_mode``, ``hd95_unit``, ``n_cases``, ``mean_dice``, ``mean_hd95`` (None when
        HD95 was not computed or no class was counted), ``n_absent`` (case-class pairs absent
        from both, excluded in ``mm`` mode), ``classes``: name to ``class_index``, ``dice``,
        ``hd95``, ``n_counted`` and a count per status; ``cases``: case to name to
        ``dice``, ``hd95``, ``status``. NaN means "not counted".

    Raises
    ------
    InputError
        Rows whose class indices do not match ``class_names``.
    """
    classes: dict[str, dict] = {}
    cases: dict[str, dict] = {}
    hd95_computed = True
    for index, name in enumerate(class_names, start=1):
        dice_values, hd95_values = [], []
        counts = {status: 0 for status in STATUSES}
        for case, rows in per_case.items():
            matching = [row for row in rows if row["class_index"] == index]
            if len(matching) != 1:
                raise InputError(f"case {case}: expected one result for class {index} "
                                 f"({name}), found {len(matching)}")
            row = matching[0]
            counts[row["status"]] += 1
            dice_values.append(row["dice"])
            if row["hd95"] is None:
                hd95_computed = False
            hd95_values.append(row["hd95"])
            cases.setdefault(case, {})[name] = {
                "dice": row["dice"], "hd95": row["hd95"], "status": row["status"]}
        counted = sum(1 for v in dice_values if not math.isnan(v))
        classes[name] = {"class_index": index, "dice": _mean(dice_values),
                         "hd95": _mean(hd95_values) if hd95_computed else None,
                         "n_counted": counted, **{f"n_{s}": n for s, n in counts.items()}}
    for case, rows in per_case.items():
        extra = sorted({row["class_index"] for row in rows} - set(range(1, len(class_names) + 1)))
        if extra:
            raise InputError(f"case {case}: class index {extra[0]} has no name "
                             f"({len(class_names)} class names given)")
    class_dice = [c["dice"] for c in classes.values()]
    class_hd95 = [c["hd95"] for c in classes.values()]
    mean_dice = _mean(class_dice)
    mean_hd95 = _mean(class_hd95) if hd95_computed else None
    return {
        "metric_mode": mode,
        "hd95_unit": ("px" if distance_unit == "px" else "voxel" if mode == "paper"
                      else distance_unit),
        "n_cases": len(per_case),
        "mean_dice": mean_dice,
        "mean_hd95": mean_hd95,
        "n_absent": sum(c["n_absent"] for c in classes.values()),
        "classes_not_counted": [n for n, c in classes.items() if math.isnan(c["dice"])],
        "classes": classes,
        "cases": cases,
    }
