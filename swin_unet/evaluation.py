"""What test.py runs: score a data set with a checkpoint, score existing predictions, segment scans."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import nibabel as nib
import numpy as np
import torch
from tqdm import tqdm

from .config import Config, DataConfig, apply_overrides, config_from_dict
from .errors import InputError
from .inference import predict_volume
from .metrics import case_metrics, summarize
from .model import build_model, checkpoint_state, load_state, read_checkpoint
from .report import write_metrics_csv, write_summary_json
from .volume_io import (NIFTI_SUFFIXES, Volume, find_inputs, read_geometry, read_volume,
                        write_labels)

__all__ = ["LoadedModel", "load_model", "check_output", "remove_results", "evaluate_volumes",
           "evaluate_predictions", "segment_inputs", "RunResult",
           "resolve_intensity_for"]

logger = logging.getLogger(__name__)

_OUTPUT_FILES = ("metrics.csv", "summary.json", "report.html")
# Result folders and the files test.py writes in them.
_OUTPUT_FOLDERS = {"predictions": ("*.nii.gz", "*.png", "*.ctbl", "*.txt"),
                   "figures": ("*.png", "*.svg", "*.pdf"), "overlays": ("*.png",)}


@dataclass
class LoadedModel:
    """A network ready for inference, with the config and classes it was trained with."""

    model: torch.nn.Module
    config: Config
    class_names: list[str]
    source: str  # "project" (this project's training) or "swin_unet" (the original code)
    path: Path


@dataclass
class RunResult:
    """What a test.py run produced."""

    summary: Optional[dict] = None
    per_case: dict = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def resolve_intensity_for(config: Config) -> str:
    """The intensity normalisation the checkpoint's model was trained with.

    Raises
    ------
    InputError
        ``data.intensity`` is "auto" for a folder data set, whose modality is not stored.
    """
    from datasets import default_intensity_for
    from datasets.intensity import resolve_intensity
    default = default_intensity_for(config.dataset, config.data.layout)
    if config.data.intensity == "auto" and default is None:
        raise InputError(f"the checkpoint's config has data.intensity 'auto' for data set "
                         f"'{config.dataset}', whose modality it does not store; pass "
                         f"--set data.intensity=ct|zscore|minmax")
    return resolve_intensity(config.data.intensity, default or "zscore")


def load_model(path: Path, dataset: Optional[str] = None, overrides: Sequence[str] = (),
               device: Optional[torch.device] = None) -> LoadedModel:
    """Build the network a checkpoint was trained as and load its weights.

    This project's checkpoints carry their config and class names. An original Swin-Unet
    checkpoint (a flat state dict) gets the default config for ``dataset``, with the number
    of classes read from its output layer; its RGB patch kernels are summed for 1 channel.

    Raises
    ------
    InputError
        Not a checkpoint, an ImageNet encoder rather than a segmentation network, or an
        original checkpoint without ``dataset``.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    state, source = checkpoint_state(checkpoint, path)
    if source == "project":
        if not isinstance(checkpoint["config"], dict):
            raise InputError(f"{path}: the checkpoint's 'config' is not a mapping")
        try:
            config = config_from_dict(checkpoint["config"])
        except InputError as exc:
            raise InputError(f"{path}: stored config: {exc}") from None
        class_names = [str(n) for n in checkpoint.get("class_names") or []]
    else:
        if source != "swin_unet" or "output.weight" not in state:
            raise InputError(f"{path}: not a trained Swin-Unet checkpoint (no decoder weights; "
                             f"an ImageNet encoder only initialises training)")
        if dataset is None:
            raise InputError(f"{path}: an original-format Swin-Unet checkpoint stores no config "
                             f"or class names; pass --dataset")
        config = Config(dataset=dataset)
        config.model.num_classes = int(state["output.weight"].shape[0])
        class_names = []
    if dataset is not None and dataset != config.dataset:
        # The training data's location and splits mean nothing for another data set; its
        # preprocessing must stay the one the network learned.
        logger.info("%s: trained on %s, evaluated on %s: data.root, layout and case lists "
                    "reset", path, config.dataset, dataset)
        try:
            intensity = resolve_intensity_for(config)
        except InputError:
            logger.warning("%s: data.intensity 'auto' of a folder data set: the %s default is "
                           "used unless --set data.intensity=... says otherwise", path, dataset)
            intensity = "auto"
        config.data = DataConfig(intensity=intensity, ct_window=list(config.data.ct_window),
                                 num_workers=config.data.num_workers)
        config.dataset = dataset
    config = apply_overrides(config, list(overrides))
    if not class_names:
        from datasets import class_names_for
        class_names = (class_names_for(dataset or config.dataset, config.data.layout,
                                      config.data.root, config.data.class_names)
                       if (dataset or config.dataset) else [])
    if len(class_names) != config.model.num_classes - 1:
        raise InputError(f"{path}: the model predicts {config.model.num_classes} classes but "
                         f"{len(class_names)} class names are known ({', '.join(class_names)})")
    try:
        model = build_model(config.model)
    except ValueError as exc:
        raise InputError(f"{path}: stored model config: {exc}") from None
    load_state(model, checkpoint, path, strict=True)  # logs what it loaded
    del checkpoint, state
    model.eval()
    if device is not None:
        model.to(device)
    return LoadedModel(model, config, class_names, source, path)


def _result_files(output: Path) -> list[Path]:
    """What a test.py run writes into ``output``: the tables, predictions, figures."""
    found = [output / name for name in _OUTPUT_FILES if (output / name).is_file()]
    for folder, patterns in _OUTPUT_FOLDERS.items():
        if (output / folder).is_dir():
            found += sorted(p for pattern in patterns for p in (output / folder).glob(pattern)
                            if p.is_file())
    return found


def check_output(output: Path, overwrite: bool, files: Iterable[Path] = (),
                 keep: Iterable[Path] = ()) -> list[Path]:
    """Refuse to replace an earlier run's results unless ``overwrite``; return those results.

    Nothing is removed here: the caller checks its inputs first, then removes the returned
    files with :func:`remove_results`, so a run that fails its checks leaves the earlier
    results as they were. ``keep`` are the folders being read (``--predictions``,
    ``--labels``, ``--input``): an output whose clearing would touch them is refused.

    Raises
    ------
    InputError
        ``output`` is a file, holds results (tables, predictions, figures, or one of
        ``files``) and ``overwrite`` is not given, or clearing it would touch ``keep``.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: --output exists and is not a folder", path=output)
    existing = _result_files(output) if output.is_dir() else []
    existing += [f for f in files if f.is_file() and f not in existing]
    if existing and not overwrite:
        raise InputError(f"{existing[0]}: exists from an earlier run; pass --overwrite or "
                         f"choose another --output", path=existing[0])
    for folder in keep:
        folder = Path(folder).resolve()
        if any(folder in p.resolve().parents for p in existing):
            raise InputError(f"{output}: --overwrite would delete files of {folder}, which "
                             f"this run reads; choose another --output", path=output)
    return existing


def remove_results(output: Path, stale: Sequence[Path]) -> None:
    """Remove an earlier run's results (from :func:`check_output`) before writing new ones."""
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        logger.info("--overwrite: removed %d result file(s) of an earlier run in %s",
                    len(stale), output)


def _reference_for(item: dict) -> Volume:
    """The geometry to write a data set's prediction with: its NIfTI header when it has one.

    The header keeps qform/sform codes and units exactly; otherwise (TransUNet's HDF5 and
    other releases) the data set's affine is all there is.
    """
    path = Path(item["image_path"])
    shape = tuple(np.shape(item["image"])[-3:])
    reference = None
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        header_only = nib.load(str(path))  # the voxels are not read
        if tuple(header_only.shape[:3]) == shape and np.allclose(
                header_only.affine, item["affine"], atol=1e-4):
            reference = header_only
    return Volume(item["case"], item["image"], tuple(item["spacing"]),
                  np.asarray(item["affine"]), path, reference)


def _write_results(output: Path, per_case: dict, class_names: list[str], mode: str,
                   result: RunResult, complete: bool, **extra) -> RunResult:
    """metrics.csv and summary.json of the cases scored so far (``complete`` False until all).

    Written after every case, so an interrupted run keeps what it scored.
    """
    summary = summarize(per_case, class_names, mode)
    write_metrics_csv(output / "metrics.csv", per_case, class_names)
    write_summary_json(output / "summary.json", summary, notes=result.notes, complete=complete,
                       **extra)
    result.summary, result.per_case = summary, per_case
    if complete:
        result.written += [output / "metrics.csv", output / "summary.json"]
    return result


def evaluate_volumes(loaded: LoadedModel, volumes: Sequence[dict], output: Path, mode: str,
                     save_nifti: bool = False, batch_size: int = 16, tta: bool = False,
                     device: Optional[torch.device] = None, amp: bool = False,
                     unit_spacing_note: Optional[str] = None,
                     progress: bool = True) -> RunResult:
    """Predict and score each volume of a data set; write metrics.csv, summary.json (+ NIfTI).

    Raises
    ------
    InputError
        A volume without a label, or a label that does not fit the model's classes.
    """
    output.mkdir(parents=True, exist_ok=True)
    result = RunResult(notes=[unit_spacing_note] if unit_spacing_note else [])
    num_classes = len(loaded.class_names) + 1
    per_case: dict[str, list[dict]] = {}
    seconds = []
    for item in tqdm(volumes, desc="volumes", unit="vol", disable=not progress):
        if item["label"] is None:
            raise InputError(f"{item['image_path']}: case {item['case']} has no label to score "
                             f"against (use --input to segment unlabelled scans)")
        start = time.perf_counter()
        try:
            prediction = predict_volume(loaded.model, item["image"],
                                        loaded.config.model.img_size, batch_size=batch_size,
                                        mode=mode, tta=tta, device=device, amp=amp)
            per_case[item["case"]] = case_metrics(prediction, item["label"], num_classes,
                                                  spacing=item["spacing"], mode=mode)
        except InputError as exc:
            raise InputError(f"{item['image_path']}: {exc}") from None
        if save_nifti:
            (output / "predictions").mkdir(exist_ok=True)
            path = output / "predictions" / f"{item['case']}.nii.gz"
            result.written.append(write_labels(prediction, _reference_for(item), path))
        seconds.append(time.perf_counter() - start)
        _write_results(output, per_case, loaded.class_names, mode, result, complete=False,
                       checkpoint=str(loaded.path), n_listed=len(volumes))
    if not per_case:
        raise InputError("no volumes to evaluate in the selected split")
    return _write_results(output, per_case, loaded.class_names, mode, result, complete=True,
                          checkpoint=str(loaded.path),
                          seconds_per_volume=float(np.mean(seconds)))


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
                         progress: bool = True, ignore_geometry: bool = False,
                         stale: Sequence[Path] = ()) -> RunResult:
    """Score label files in ``predictions`` against the same-named files in ``labels``.

    Spacing comes from the label files' headers. Without ``class_names`` the classes are
    1..max label found, named ``class_1``... Every pair's geometry is checked from the headers
    before anything is scored; ``ignore_geometry`` scores pairs whose affines differ voxel by
    voxel anyway, and ``summary.json`` lists them under ``geometry_ignored``. ``stale`` (an
    earlier run's results, from :func:`check_output`) are removed once the checks pass.

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
    result = RunResult()
    if unused:
        result.notes.append(f"{unused} label file(s) without a prediction were not scored")
    pairs = [(name, predicted[name], references[name]) for name in sorted(predicted)]
    mismatched = [name for name, pred, label in pairs
                  if _geometry_differs(pred, label, ignore_geometry)]
    remove_results(output, stale)
    if mismatched:
        result.notes.append(f"--ignore-geometry: {len(mismatched)} prediction(s) whose affine "
                            f"differs from their label's were scored voxel by voxel")
    if class_names is None:
        highest = max(_highest_label(label) for _, _, label in pairs)
        class_names = [f"class_{i}" for i in range(1, max(highest, 1) + 1)]
        result.notes.append(f"classes 1..{len(class_names)} taken from the labels' values "
                            f"(pass --dataset for names)")
    num_classes = len(class_names) + 1
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
            culprit = pred_path if str(exc).startswith("prediction") else label_path
            raise InputError(f"{culprit}: {exc}", path=culprit) from None
        _write_results(output, per_case, class_names, mode, result, complete=False,
                       n_listed=len(pairs), **extra)
    return _write_results(output, per_case, class_names, mode, result, complete=True, **extra)


def _geometry_differs(pred_path: Path, label_path: Path, ignore: bool) -> bool:
    """Whether a prediction's grid differs from its label's (an error unless ``ignore``).

    Raises
    ------
    InputError
        The shapes differ, or (without ``ignore``) the affines, naming both files.
    """
    pred_shape, pred_affine = read_geometry(pred_path)
    label_shape, label_affine = read_geometry(label_path)
    if pred_shape != label_shape:
        raise InputError(f"{pred_path}: shape {pred_shape} does not match the label "
                         f"{label_path} of shape {label_shape}", path=pred_path)
    # The tolerance of the data sets' integrity check: float rounding between writers.
    if np.allclose(pred_affine, label_affine, rtol=1e-4, atol=1e-3):
        return False
    if not ignore:
        worst = float(np.max(np.abs(pred_affine - label_affine)))
        raise InputError(f"{pred_path}: geometry differs from its label {label_path} (affines "
                         f"differ by up to {worst:.4g} mm); pass --ignore-geometry to score "
                         f"voxel by voxel anyway", path=pred_path)
    logger.warning("%s: affine differs from the label's (%s); scored voxel by voxel "
                   "(--ignore-geometry)", pred_path, label_path)
    return True


def _highest_label(path: Path) -> int:
    """The largest value of a label file, which must be finite."""
    array = read_volume(path, dtype=None).array
    if array.size == 0:
        return 0
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise InputError(f"{path}: label contains NaN or infinite values", path=path)
    return int(np.max(array))


def segment_inputs(loaded: LoadedModel, inputs: Path, output: Path, batch_size: int = 16,
                   tta: bool = False, device: Optional[torch.device] = None,
                   amp: bool = False, overwrite: bool = False,
                   normalise: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                   progress: bool = True, mode: str = "mm") -> RunResult:
    """Segment a user's scans; write ``output/predictions/<case>.nii.gz`` in their geometry.

    ``mode`` picks the resize procedure of :func:`predict_volume` (``paper``: the published one).

    Raises
    ------
    InputError
        An empty or unreadable input, a prediction file that exists (without ``overwrite``).
    """
    from datasets import normalize_intensity
    found = find_inputs(inputs)
    names = [name for name, _, _ in found]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise InputError(f"{inputs}: two inputs would both be written as {duplicate}.nii.gz")
    folder = output / "predictions"
    targets = [folder / f"{name}.nii.gz" for name in names]
    stale = check_output(output, overwrite, targets,
                         keep=[inputs if inputs.is_dir() else inputs.parent])
    if normalise is None:
        intensity = resolve_intensity_for(loaded.config)
        window = loaded.config.data.ct_window

        def normalise(array: np.ndarray) -> np.ndarray:
            return normalize_intensity(array, intensity, window, channels_first=array.ndim == 4)
    for _, path, series in found:
        if series is None:
            read_geometry(path)  # every header readable before the first scan is segmented
    remove_results(output, stale)
    folder.mkdir(parents=True, exist_ok=True)
    result = RunResult()
    for (name, path, series), target in tqdm(list(zip(found, targets)), desc="scans",
                                             unit="scan", disable=not progress):
        volume = read_volume(path, name, series)
        if not np.isfinite(volume.array).all():
            raise InputError(f"{path}: image contains NaN or infinite values")
        try:
            prediction = predict_volume(loaded.model, normalise(volume.array),
                                        loaded.config.model.img_size, batch_size=batch_size,
                                        mode=mode, tta=tta, device=device, amp=amp)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
        result.written.append(write_labels(prediction, volume, target))
    return result
