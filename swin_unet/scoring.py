"""Score existing label files against references: ``test.py --predictions DIR --labels DIR``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm import tqdm

from .errors import InputError
from .metrics import case_metrics
from .report_builder import ReportBuilder
from .results import RunResult, finish_run
from .volume_io import find_inputs, read_volume

__all__ = ["evaluate_predictions"]

logger = logging.getLogger(__name__)


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
                         report: Optional[ReportBuilder] = None) -> RunResult:
    """Score label files in ``predictions`` against the same-named files in ``labels``.

    Spacing comes from the label files' headers. Without ``class_names`` the classes are
    1..max label found, named ``class_1``... ``report`` draws labels without an image.

    Raises
    ------
    InputError
        An empty folder, a prediction without a label, shapes that differ, values out of
        range; the message names the file.
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
    pairs = []
    for name in sorted(predicted):
        pairs.append((name, predicted[name], references[name]))
    if class_names is None:
        highest = max(int(np.max(read_volume(lab, dtype=None).array)) for _, _, lab in pairs)
        class_names = [f"class_{i}" for i in range(1, max(highest, 1) + 1)]
        result.notes.append(f"classes 1..{len(class_names)} taken from the labels' values "
                            f"(pass --dataset for names)")
    num_classes = len(class_names) + 1
    if report is not None:
        report.class_names = list(class_names)  # perhaps named from the labels' values
    output.mkdir(parents=True, exist_ok=True)
    per_case = {}
    for name, pred_path, label_path in tqdm(pairs, desc="cases", unit="case",
                                            disable=not progress):
        pred = read_volume(pred_path, dtype=None)
        label = read_volume(label_path, dtype=None)
        if pred.array.shape != label.array.shape:
            raise InputError(f"{pred_path}: shape {pred.array.shape} does not match the label "
                             f"{label_path} of shape {label.array.shape}")
        if not np.allclose(pred.affine, label.affine, atol=1e-3):
            logger.warning("%s: affine differs from the label's (%s); scored voxel by voxel",
                           pred_path, label_path)
        try:
            per_case[name] = case_metrics(pred.array, label.array, num_classes,
                                          spacing=label.spacing, mode=mode)
        except InputError as exc:
            raise exc.at(pred_path if exc.key == "prediction" else label_path) from None
        if report is not None:
            report.add_case(name, pred.array, None, label.array, label.affine, label.spacing,
                            per_case[name])
    return finish_run(output, per_case, class_names, mode, result, report,
                   predictions=str(predictions), labels=str(labels))
