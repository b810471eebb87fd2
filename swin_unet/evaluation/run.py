"""What test.py runs: score a data set with a checkpoint, score existing predictions, segment scans.

:func:`run_evaluation` takes an :class:`EvaluationRequest` (test.py's options) and picks the
run; volumes go through the network as :class:`InferenceOptions` say. Existing predictions
are scored by :mod:`swin_unet.evaluation.scoring`; what every run writes is in
:mod:`swin_unet.evaluation.output_folder`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import numpy as np
from tqdm import tqdm

from ..data_layer import project_datasets
from ..errors import InputError, writing
from ..io.images import read_image
from .images import find_image_inputs, image_targets, segment_images, write_image_prediction
from .dicom_outputs import DicomOutputs
from .metrics import case_metrics
from ..io.orientation import Reorientation
from .output_folder import RunResult, check_output, claimed_output, remove_results, write_results
from ..report.builder import ReportBuilder, expect_figure_cases, report_for
from ..report.warnings import collect_warnings
from .scoring import evaluate_predictions
from ..report.viewer_tables import write_viewer_tables
from ..io.volumes import Volume, find_inputs, read_geometry, read_volume, with_header

__all__ = ["InferenceOptions", "EvaluationRequest", "RunResult", "run_evaluation", "check_output",
           "evaluate_volumes", "evaluate_predictions", "segment_inputs", "LoadedModel",
           "load_model", "resolve_intensity_for"]

if TYPE_CHECKING:
    import torch

    from .trained import LoadedModel


def __getattr__(name: str):
    """The model-loading names, on first use: scoring predictions needs no torch nor model."""
    if name in ("LoadedModel", "load_model", "resolve_intensity_for"):
        from . import trained
        return getattr(trained, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

logger = logging.getLogger(__name__)

PIXEL_NOTE = "2-D images store no spacing: HD95 is in pixels (px)"


@dataclass
class InferenceOptions:
    """How volumes go through the network (see :func:`~swin_unet.evaluation.inference.predict_volume`).

    Attributes
    ----------
    batch_size : int
        Slices per forward pass.
    resize : {"bicubic", "paper"}
        How slices are resized to the model and back (``inference.resize``).
    metric_conventions : {"mm", "paper"}
        How volumes are scored (``inference.metric_conventions``).
    tta : bool
        Average the probabilities of the four in-plane flips.
    device : torch.device, optional
        Where to run (default: where the model is).
    amp, progress : bool
        Mixed precision (``--amp``, as :func:`swin_unet.precision.autocast_dtype` chooses
        it); a progress bar.
    """

    batch_size: int = 16
    resize: str = "bicubic"
    metric_conventions: str = "mm"
    tta: bool = False
    device: Optional[torch.device] = None
    amp: bool = False
    progress: bool = True

    def segment(self, loaded: LoadedModel, image: np.ndarray, reference: Optional[Volume],
                plan: Optional[Reorientation] = None,
                paths: Optional[dict[str, Path]] = None,
                probabilities: Optional[np.ndarray] = None,
                spacing: Optional[Sequence[float]] = None) -> tuple[np.ndarray, list[Path]]:
        """The labels of ``image`` and the files of ``paths`` (``scan_outputs.segment_volume``;
        ``spacing``: the voxel size; a patch-mode network always runs in sliding windows)."""
        from .scan_outputs import SlidingWindow, segment_volume

        return segment_volume(loaded.model, image, reference, loaded.config.model.img_size,
                              len(loaded.class_names) + 1, plan, paths,
                              batch_size=self.batch_size, resize=self.resize, tta=self.tta,
                              device=self.device, amp=self.amp, probabilities=probabilities,
                              sliding=SlidingWindow.from_config(loaded.config), spacing=spacing)


def evaluate_volumes(loaded: LoadedModel, volumes: Sequence[Volume], output: Path,
                     options: InferenceOptions, save_nifti: bool = False,
                     unit_spacing_note: Optional[str] = None, report: Optional[ReportBuilder] = None,
                     probabilities: bool = False, scored: Optional[dict] = None,
                     complete: bool = True, extra: Optional[dict] = None) -> RunResult:
    """Predict and score each volume of a data set; write metrics.csv, summary.json (+ NIfTI).

    With ``save_nifti``, a 2-D image's prediction is written as ``predictions/<case>.png``
    (palette PNG) with ``overlays/<case>.png`` instead. A patch-mode network resamples from
    each volume's spacing, unless it is a release's unit spacing (``unit_spacing_note``).
    ``report`` draws each case as it is scored; viewer colour tables go beside predictions.
    ``probabilities``: also probabilities/ and, with TTA, uncertainty/ (see segment_inputs).
    ``scored``: the cases of earlier calls (cross-validation's other folds), which the tables
    keep and this call adds to; ``complete`` False leaves the tables marked incomplete for a
    later call; ``extra``: more summary.json keys (by default the checkpoint or checkpoints).

    Raises
    ------
    InputError
        A volume without a label, or a label that does not fit the model's classes.
    """
    from .scan_outputs import OutputKinds, output_paths  # torch: with the model only

    output.mkdir(parents=True, exist_ok=True)
    result = RunResult(notes=[unit_spacing_note] if unit_spacing_note else [], output=output)
    num_classes = len(loaded.class_names) + 1
    per_case: dict[str, list[dict]] = {} if scored is None else scored
    extra = loaded.summary_fields() if extra is None else extra
    seconds, unit = [], "mm"
    expect_figure_cases(report, getattr(volumes, "names", None) if scored is None else None)
    for item in tqdm(volumes, desc="volumes", unit="vol", disable=not options.progress):
        unit = item.distance_unit
        if item.label is None:
            raise InputError(f"{item.path}: case {item.case} has no label to score against "
                             f"(use --input to segment unlabelled scans)")
        start = time.perf_counter()
        paths = output_paths(output, item.case, OutputKinds(
            save_nifti and unit != "px", probabilities, probabilities and options.tta))
        try:
            prediction, written = options.segment(
                loaded, item.array, with_header(item) if paths else None, paths=paths,
                spacing=None if unit == "px" or unit_spacing_note else item.spacing)
            per_case[item.case] = case_metrics(prediction, item.label, num_classes,
                                               spacing=item.spacing, mode=options.metric_conventions)
        except InputError as exc:
            raise exc.at(item.path) from None
        if save_nifti and unit == "px":  # a 2-D image: a label PNG and an overlay
            result.written += write_image_prediction(
                prediction, read_image(item.path), output, item.case, num_classes)
        result.written += written
        seconds.append(time.perf_counter() - start)
        if report is not None:  # a 2-D image is shown as its file is, in colour if it is
            shown = read_image(item.path)[..., None] if unit == "px" else item.array
            report.add_case(item.case, prediction, shown, item.label,
                            item.affine, item.spacing, per_case[item.case])
        write_results(output, per_case, loaded.class_names, options.metric_conventions, result,
                      False, distance_unit=unit, **{"n_listed": len(volumes), **extra})
    if not per_case:
        raise InputError("no volumes to evaluate in the selected split")
    if unit == "px":
        result.notes.append(PIXEL_NOTE)
    elif save_nifti:
        write_viewer_tables(output / "predictions", loaded.class_names)
    if not complete:
        return result
    return write_results(output, per_case, loaded.class_names, options.metric_conventions, result,
                         True, report, distance_unit=unit, **extra,
                         seconds_per_volume=float(np.mean(seconds)))


def segment_inputs(loaded: LoadedModel, inputs: Path, output: Path, options: InferenceOptions,
                   overwrite: bool = False,
                   normalise: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                   report: Optional[ReportBuilder] = None, probabilities: bool = False,
                   keep_orientation: bool = False,
                   dicom: DicomOutputs = DicomOutputs()) -> RunResult:
    """Segment a user's scans; write ``output/predictions/<case>.nii.gz`` in their geometry.

    Each scan is turned to the model's orientation (its ``geometry`` record; as stored with
    ``keep_orientation`` or no record), segmented, and written back in its own voxel order.
    2-D images (an image file, or a folder of PNG/JPEG/TIFF/BMP files) give
    ``output/predictions/<name>.png`` at the image's own size and ``output/overlays/<name>.png``.
    ``options.resize`` picks the resize procedure of :func:`predict_volume` (``paper``: the
    published one). Viewer colour tables go beside; ``report`` shows scans and volumes in ml.
    ``probabilities`` also writes ``probabilities/<case>.npz`` and, with TTA,
    ``uncertainty/<case>.nii.gz``. nnU-Net's per-channel files (``CASE_0000``, ``CASE_0001``)
    are one multi-channel case. A DICOM series also gets the objects ``dicom`` asks for
    (``<case>_seg.dcm``, ``<case>_rtstruct.dcm``; see :class:`DicomOutputs`).

    Raises
    ------
    InputError
        An empty or unreadable input, a prediction file that exists (without ``overwrite``).
    """
    from .predictor import Predictor  # torch: with the model
    from .scan_outputs import OutputKinds, output_paths

    predictor = Predictor(loaded, options)
    if normalise is not None:
        predictor.normalise = normalise
    images = find_image_inputs(inputs)
    found = [] if images else find_inputs(inputs, channels=True)
    expect_figure_cases(report, names := [entry[0] for entry in images + found])
    if images:  # 2-D images: a label PNG and an overlay each, at the image's own size
        remove_results(output, check_output(output, overwrite, image_targets(
            output, [name for name, _ in images]), keep=[p for _, p in images] + [loaded.path]))
        result = RunResult(kind="input", output=output, notes=[
            f"label PNGs (values 0..{len(loaded.class_names)}, class colours) in "
            f"{output / 'predictions'}, the images with their classes in {output / 'overlays'}"])
        result.written = segment_images(
            images, output, loaded.config.model.in_chans, len(loaded.class_names) + 1,
            lambda volume: predictor.segment(volume)[0], predictor.normalise, options.progress)
        return result
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise InputError(f"{inputs}: two inputs would both be written as {duplicate}.nii.gz")
    kinds = OutputKinds(probabilities=probabilities, uncertainty=probabilities and options.tta)
    targets = [output_paths(output, name, kinds) for name in names]
    dicom_targets = [dicom.paths(output, name, series) for name, _, series in found]
    read = [f for _, path, _ in found for f in (path if isinstance(path, list) else [path])]
    stale = check_output(output, overwrite, [p for paths in targets + dicom_targets
                                             for p in paths.values()], keep=read + [loaded.path])
    for file in (f for f in read if f.is_file()):
        read_geometry(file)  # every header readable before the first scan is segmented
    remove_results(output, stale)
    (output / "predictions").mkdir(parents=True, exist_ok=True)
    result = RunResult(kind="input", output=output)
    for (name, path, series), paths, dicom_paths in tqdm(
            list(zip(found, targets, dicom_targets)), desc="scans", unit="scan",
            disable=not options.progress):
        volume = read_volume(path, name, series)
        prediction, written, image = predictor.segment_scan(volume, paths, keep_orientation)
        result.written += written + dicom.write(prediction, path, series, dicom_paths,
                                                loaded.class_names, paths.get("probabilities"),
                                                result.notes)
        if report is not None:
            report.add_case(name, prediction, image, None, volume.affine, volume.spacing)
    write_viewer_tables(output / "predictions", loaded.class_names)
    result.report = report.write(None, result.notes) if report is not None else None
    return result


@dataclass
class EvaluationRequest:
    """What ``test.py`` is asked to do; its options, by the same names (see its ``--help``)."""

    dataset: Optional[str] = None
    root: Optional[str] = None
    split: str = "test"
    # One checkpoint, or several: an ensemble (their mean probabilities).
    checkpoint: Union[Path, Sequence[Path], None] = None
    predictions: Optional[Path] = None
    labels: Optional[Path] = None
    input: Optional[Path] = None
    output: Optional[Path] = None
    overwrite: bool = False
    ignore_geometry: bool = False
    save_nifti: bool = False
    save_probabilities: bool = False
    keep_orientation: bool = False
    dicom_seg: Optional[bool] = None
    rtstruct: bool = False
    metric_mode: Optional[str] = None
    batch_size: Optional[int] = None
    tta: bool = False
    amp: bool = False
    device: str = "auto"
    max_pixels: Optional[int] = None
    overrides: Sequence[str] = ()
    progress: bool = True
    report: bool = True
    figure_cases: Sequence[str] = ()
    figure_slices: Optional[Sequence[int]] = None
    # Run folders whose best checkpoints score their own validation folds (evaluation.crossval);
    # compare: of several configurations, with paired differences.
    cross_validation: Sequence[Path] = ()
    compare: bool = False

    def checkpoints(self) -> list[Path]:
        """``checkpoint`` as a list: one path, or an ensemble's."""
        if self.checkpoint is None:
            return []
        if isinstance(self.checkpoint, (str, Path)):
            return [Path(self.checkpoint)]
        return [Path(p) for p in self.checkpoint]
    # With --input: run the network's ONNX graph (swin-unet export) in ONNX Runtime.
    onnx: Optional[Path] = None

    def kind(self) -> str:
        """Which run this is: "predictions", "input", "dataset" or "crossval".

        Raises
        ------
        InputError
            A combination of options that makes none of them, or a bad batch size.
        """
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.onnx and not self.input:
            raise InputError("the ONNX Runtime engine segments --input scans only")
        if self.compare and not self.cross_validation:
            raise InputError("--compare compares cross-validations: give --cross-validation "
                             "RUN RUN ...")
        if self.cross_validation:  # its options are checked by evaluation.crossval
            return "crossval"
        if self.predictions or self.labels:
            if not (self.predictions and self.labels):
                raise InputError("--predictions and --labels go together")
            if self.input or self.checkpoint:
                raise InputError("--predictions/--labels score existing files: drop "
                                 "--checkpoint and --input")
            return "predictions"
        if self.input:
            if not self.checkpoint:
                raise InputError("--input needs --checkpoint")
            if not self.output:
                raise InputError("--input needs --output (predictions go to OUTPUT/predictions/)")
            return "input"
        if not self.dataset or not self.checkpoint:
            raise InputError("give --dataset and --checkpoint, or --predictions and --labels, "
                             "or --checkpoint and --input (see --help)")
        return "dataset"


def run_evaluation(request: EvaluationRequest) -> RunResult:
    """Score a data set with a checkpoint, score existing predictions, or segment scans.

    What the run warns is collected for the report and summary.json.

    Raises
    ------
    InputError
        Bad options, unreadable files, a checkpoint whose classes are not the data set's, or
        results of an earlier run in the output folder (without ``overwrite``).
    """
    with collect_warnings(), writing(folder=request.output):  # a full or read-only disk
        return _run(request)


def _run(request: EvaluationRequest) -> RunResult:
    kind = request.kind()
    if kind == "crossval":
        from .crossval import cross_validate
        return cross_validate(request)
    output = request.output or Path("outputs") / (f"eval_{request.predictions.name}" if kind
                                                  == "predictions" else f"test_{request.dataset}")
    with claimed_output(output):
        return _run_in(request, kind, output)


def _run_in(request: EvaluationRequest, kind: str, output: Path) -> RunResult:
    datasets = project_datasets()
    if kind == "predictions":
        stale = check_output(output, request.overwrite,
                             keep=[request.predictions, request.labels])
        names = (datasets.class_names_for(request.dataset, root=request.root)
                 if request.dataset else None)
        return evaluate_predictions(request.predictions, request.labels, output,
                                    request.metric_mode or "mm", names, request.progress,
                                    report_for(request, output, names or []),
                                    request.ignore_geometry, stale)
    from .inference import resolve_device
    from .networks import inference_options, load_models, request_overrides

    device = resolve_device(request.device)
    if request.onnx:
        import torch
        device = torch.device("cpu")  # the session's providers choose where the graph runs
    loaded = load_models(request.checkpoints(), request.dataset, request_overrides(request),
                         device)
    options = inference_options(request, loaded, device)
    if request.onnx:
        from dataclasses import replace

        from .onnx_export import OnnxNetwork
        loaded = replace(loaded, model=OnnxNetwork(request.onnx, loaded.config.model))
    if kind == "input":
        return segment_inputs(loaded, request.input, output, options, request.overwrite,
                              report=report_for(request, output, loaded.class_names,
                                                options, **{"trained on": loaded.config.dataset}),
                              probabilities=request.save_probabilities,
                              keep_orientation=request.keep_orientation,
                              dicom=DicomOutputs(request.dicom_seg, request.rtstruct, "+".join(
                                  path.name for path in request.checkpoints())))
    stale = check_output(output, request.overwrite, keep=list(request.checkpoints()))
    source = datasets.open_dataset(request.dataset, loaded.config.data)
    if list(source.class_names) != loaded.class_names:
        raise InputError(f"{loaded.path}: trained for classes "
                         f"{', '.join(loaded.class_names)}; {request.dataset} has "
                         f"{', '.join(source.class_names)}", path=loaded.path)
    source.check_integrity((request.split,))  # a bad case fails now, not after the others
    remove_results(output, stale)
    note = None
    if not source.stores_spacing:
        note = (f"{source.layout}: the release stores no voxel spacing; unit spacing is "
                f"used, so HD95 is in voxels even with the mm conventions")
    report = report_for(request, output, loaded.class_names, options,
                        **{"data root": loaded.config.data.root})
    return evaluate_volumes(loaded, source.volumes(request.split), output, options,
                            request.save_nifti, note, report, request.save_probabilities)
