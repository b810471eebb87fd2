"""Score existing label files (test.py --predictions/--labels): no model, no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..errors import InputError
from .metrics import case_metrics
from .output_folder import RunResult, remove_results, write_results
from ..report.builder import ReportBuilder
from ..io.dicom_seg import read_seg_volume, seg_files, seg_highest_label
from ..io.volumes import find_inputs, read_volume, same_grid

__all__ = ["evaluate_predictions"]


def _image_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: {what} folder not found")
    files = seg_files(folder) if what == "labels" else {}
    if files:  # DICOM SEG label maps; DICOM series beside them give their grids
        return files
    for name, path, series in find_inputs(folder):
        if series is not None:
            raise InputError(f"{path}: {what} must be NIfTI/NRRD/MHA files, found a DICOM series")
        if name in files:
            raise InputError(f"{path}: two {what} files for case {name} ({files[name].name})")
        files[name] = path
    return files


def evaluate_predictions(predictions: Path, labels: Path, output: Path, mode: str,
                         class_names: Optional[list[str]] = None,
                         progress: bool = True,
                         report: Optional[ReportBuilder] = None, ignore_geometry: bool = False,
                         stale: Sequence[Path] = ()) -> RunResult:
    """Score label files in ``predictions`` against the same-named files in ``labels``.

    Spacing comes from the label files' headers. Without ``class_names`` the classes are
    1..max label found, named ``class_1``... ``report`` draws labels without an image. Every
    pair's grid is checked from the headers before anything is scored; ``ignore_geometry``
    scores pairs whose affines differ voxel by voxel (``summary.json``: ``geometry_ignored``).
    ``stale`` (an earlier run's results, from :func:`check_output`) go once the checks pass.

    Raises
    ------
    InputError
        An empty folder, a prediction without a label, shapes that differ, affines that differ
        (without ``ignore_geometry``), NaN or values out of range; the message names the file.
    """
    predicted = _image_files(predictions, "predictions")
    references = _image_files(labels, "labels")
    missing = [name for name in predicted if name not in references]
    if missing:
        raise InputError(f"{labels / (missing[0] + '.nii.gz')}: missing label for prediction "
                         f"{predicted[missing[0]]}")
    unused = len(references) - len(predicted)
    result = RunResult(kind="predictions", output=output)
    if unused:
        result.notes.append(f"{unused} label file(s) without a prediction were not scored")
    pairs = [(name, predicted[name], references[name]) for name in sorted(predicted)]
    mismatched = [name for name, pred, label in pairs
                  if not _is_seg(label) and not same_grid(pred, label, ignore_geometry)]
    if mismatched:
        result.notes.append(f"--ignore-geometry: {len(mismatched)} prediction(s) whose affine "
                            f"differs from their label's were scored voxel by voxel")
    if class_names is None:
        highest = max(_highest_label(label) for _, _, label in pairs)
        class_names = [f"class_{i}" for i in range(1, max(highest, 1) + 1)]
        result.notes.append(f"classes 1..{len(class_names)} taken from the labels' values "
                            f"(pass --dataset for names)")
        names_given = False
    else:
        names_given = True
    num_classes = len(class_names) + 1
    if report is not None:
        report.class_names = list(class_names)  # perhaps named from the labels' values
    remove_results(output, stale)
    output.mkdir(parents=True, exist_ok=True)
    extra = {"predictions": str(predictions), "labels": str(labels),
             "ignore_geometry": bool(ignore_geometry), "geometry_ignored": mismatched}
    per_case = {}
    for name, pred_path, label_path in tqdm(pairs, desc="cases", unit="case",
                                            disable=not progress):
        pred = read_volume(pred_path, dtype=None)
        if _is_seg(label_path):
            label = _seg_label(label_path, pred, class_names if names_given else None,
                               ignore_geometry, mismatched, name)
        else:
            label = read_volume(label_path, dtype=None)
        try:
            per_case[name] = case_metrics(pred.array, label.array, num_classes,
                                          spacing=label.spacing, mode=mode)
        except InputError as exc:
            raise exc.at(pred_path if exc.key == "prediction" else label_path) from None
        if report is not None:
            report.add_case(name, pred.array, None, label.array, label.affine, label.spacing,
                            per_case[name])
        write_results(output, per_case, class_names, mode, result, False, n_listed=len(pairs),
                      **extra)
    return write_results(output, per_case, class_names, mode, result, True, report, **extra)


def _is_seg(path: Path) -> bool:
    return path.suffix.lower() == ".dcm"


def _seg_label(path: Path, pred, class_names, ignore_geometry: bool, mismatched: list,
               name: str):
    """A SEG label in its series' grid (or the prediction's), checked against the prediction."""
    label = read_seg_volume(path, pred.affine, pred.array.shape[-3:], class_names, name)
    if label.array.shape != pred.array.shape[-3:]:
        raise InputError(f"{path}: the SEG's series is {label.array.shape}, the prediction "
                         f"{pred.array.shape}", path=path)
    if not np.allclose(label.affine, pred.affine, atol=1e-3):
        if not ignore_geometry:
            raise InputError(f"{path}: the SEG's series has another affine than the "
                             f"prediction {pred.path} (--ignore-geometry scores them voxel by "
                             f"voxel)", path=path)
        mismatched.append(name)
    return label


def _highest_label(path: Path) -> int:
    """The largest value of a label file (read_volume refuses NaN or infinite values)."""
    if _is_seg(path):
        return seg_highest_label(path)
    array = read_volume(path, dtype=None).array
    return int(np.max(array)) if array.size else 0
