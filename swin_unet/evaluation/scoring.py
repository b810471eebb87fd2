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
from ..io.volumes import find_inputs, read_volume, same_grid

__all__ = ["evaluate_predictions"]


def _image_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: {what} folder not found")
    files = {}
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
                  if not same_grid(pred, label, ignore_geometry)]
    if mismatched:
        result.notes.append(f"--ignore-geometry: {len(mismatched)} prediction(s) whose affine "
                            f"differs from their label's were scored voxel by voxel")
    if class_names is None:
        highest = max(_highest_label(label) for _, _, label in pairs)
        class_names = [f"class_{i}" for i in range(1, max(highest, 1) + 1)]
        result.notes.append(f"classes 1..{len(class_names)} taken from the labels' values "
                            f"(pass --dataset for names)")
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


def _highest_label(path: Path) -> int:
    """The largest value of a label file, which must be finite."""
    array = read_volume(path, dtype=None).array
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise InputError(f"{path}: label contains NaN or infinite values", path=path)
    return int(np.max(array)) if array.size else 0
