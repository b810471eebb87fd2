"""Segment one scan in the model's orientation; write its labels, probabilities and uncertainty."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..config import GeometryConfig
from .inference import predict_volume
from .sliding import SlidingWindow
from ..io.orientation import Reorientation, inplane_geometry, plan_reorientation, scale_warnings
from ..io.paths import check_case_id, inside_output
from ..io.volumes import Volume, write_labels, write_map, write_probabilities

__all__ = ["OutputKinds", "output_paths", "orient_scan", "check_intensities", "segment_volume"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputKinds:
    """Which files to write per case: the label map, the probabilities, the entropy map."""

    labels: bool = True
    probabilities: bool = False
    uncertainty: bool = False

    def folders(self) -> list[str]:
        """The sub-folders of OUTPUT these files go to."""
        return [name for name, wanted in (("predictions", self.labels),
                                          ("probabilities", self.probabilities),
                                          ("uncertainty", self.uncertainty)) if wanted]


_SUFFIX = {"predictions": ".nii.gz", "probabilities": ".npz", "uncertainty": ".nii.gz"}


def output_paths(output: Path, case: str, kinds: OutputKinds) -> dict[str, Path]:
    """``{"predictions": OUTPUT/predictions/<case>.nii.gz, ...}`` for the kinds asked for.

    Raises
    ------
    InputError
        ``case`` is not a case id, or a path leads out of ``output`` (a linked sub-folder).
    """
    check_case_id(case, f"{output}: case")
    return {folder: inside_output(Path(output) / folder / f"{case}{_SUFFIX[folder]}", output)
            for folder in kinds.folders()}


def orient_scan(volume: Volume, geometry: GeometryConfig,
                keep_orientation: bool = False) -> Reorientation:
    """The reorientation of a user's scan to the model's, logging what is done and any doubt.

    Logs (INFO) what is done with the scan's voxel order, and warns about oblique slices and
    an in-plane spacing or field of view far from the training data's.
    """
    shape = volume.array.shape[-3:]
    if keep_orientation:
        plan, warnings = Reorientation(note="--keep-orientation: used as stored"), []
    else:
        plan, warnings = plan_reorientation(volume.affine, geometry.axcodes,
                                            geometry.slice_axis)
    logger.info("%s: %s", volume.case, plan.note)
    # The scale in the model's frame: the in-plane axes are the ones it will see as rows and
    # columns.
    spacing, fov = inplane_geometry(volume.affine, shape, plan.permutation[plan.slice_axis])
    warnings += scale_warnings(spacing, fov, geometry.inplane_spacing, geometry.field_of_view)
    for warning in warnings:
        logger.warning("%s (%s): %s", volume.case, volume.path, warning)
    return plan


def check_intensities(volume: Volume, config) -> list[str]:
    """Warn when a scan's raw values cannot be what the model was trained on, naming both.

    A CT model (``data.intensity: ct``) was trained on Hounsfield units, where air (-1000) and
    fat (about -100) lie below -50: a scan with hardly any value there (an MR image, a CT
    export without its rescale) is far outside its training data.
    """
    from .trained import resolve_intensity_for

    if resolve_intensity_for(config) != "ct":
        return []
    sample = np.asarray(volume.array).ravel()[::max(1, volume.array.size // 1_000_000)]
    low, high = (float(v) for v in np.percentile(sample, [1, 99]))
    if low < -50:
        return []
    warning = (f"intensities {low:.0f} to {high:.0f} (1st to 99th percentile) do not look like "
               f"CT Hounsfield units (air -1000, fat about -100), which this CT model was "
               f"trained on (data.intensity ct): an MR image or a CT export without its "
               f"rescale gives meaningless results")
    logger.warning("%s (%s): %s", volume.case, volume.path, warning)
    return [warning]


def segment_volume(model: torch.nn.Module, image: np.ndarray, reference: Optional[Volume],
                   img_size: Union[int, Sequence[int]], num_classes: int,
                   plan: Optional[Reorientation] = None,
                   paths: Optional[dict[str, Path]] = None, *, batch_size: int = 16,
                   resize: str = "bicubic", tta: bool = False,
                   device: Optional[torch.device] = None, amp: bool = False,
                   probabilities: Optional[np.ndarray] = None,
                   sliding: Optional[SlidingWindow] = None,
                   spacing: Optional[Sequence[float]] = None) -> tuple[np.ndarray, list[Path]]:
    """Segment ``image`` (normalised, the scan's voxel order) and write the files of ``paths``.

    The volume is seen through ``plan`` (a view, not a copy) so that the model gets its own
    voxel order; labels, probabilities and entropy are written back through the inverse, in
    the scan's voxel order and geometry. Probabilities are held as float16 (K, X, Y, Z) and
    filled slab by slab: the largest array of the run.

    Parameters
    ----------
    reference : Volume or None
        The geometry files are written in (None when ``paths`` is empty).
    paths : dict, optional
        From :func:`output_paths`: ``predictions``, ``probabilities`` (npz with
        ``probabilities`` float16 (K, X, Y, Z) and ``affine``), ``uncertainty`` (float32
        entropy in nats of the (TTA-mean) probabilities, as NIfTI).
    probabilities : np.ndarray, optional
        A (K, X, Y, Z) float array in the scan's voxel order that receives the probabilities
        (instead of the float16 one allocated for ``paths["probabilities"]``).
    sliding : SlidingWindow, optional
        Patch mode's sliding windows (:func:`~swin_unet.evaluation.inference.predict_volume`).
    spacing : (float, float, float), optional
        The voxel size (mm) in the scan's voxel order; None: at the training spacing.

    Returns
    -------
    np.ndarray, list of Path
        uint8 labels in the scan's voxel order, and the files written.
    """
    plan = plan or Reorientation()
    paths = paths or {}
    slice_axis = plan.slice_axis  # moved last: predict_volume slices along the last axis
    shape = tuple(image.shape[-3:])

    def model_view(array: np.ndarray) -> np.ndarray:
        return np.moveaxis(plan.forward(array), -3 + slice_axis, -1)

    if probabilities is None and "probabilities" in paths:
        probabilities = np.empty((num_classes,) + shape, dtype=np.float16)
    entropy = np.empty(shape, dtype=np.float32) if "uncertainty" in paths else None
    inplane = None
    if spacing is not None:  # the model's in-plane axes: seen through the plan, slice axis out
        seen = [float(spacing[a]) for a in plan.permutation]
        inplane = tuple(seen[a] for a in range(3) if a != slice_axis)
    labels = predict_volume(
        model, model_view(image), img_size, batch_size=batch_size, resize=resize, tta=tta,
        device=device, amp=amp,
        probabilities=None if probabilities is None else model_view(probabilities),
        entropy=None if entropy is None else model_view(entropy), sliding=sliding,
        spacing=inplane)
    labels = np.ascontiguousarray(plan.backward(np.moveaxis(labels, -1, -3 + slice_axis)))
    written = []
    for folder, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if folder == "predictions":
            written.append(write_labels(labels, reference, path))
        elif folder == "probabilities":
            written.append(write_probabilities(probabilities, reference.affine, path))
        else:
            written.append(write_map(entropy, reference, path, (0.0, math.log(num_classes))))
    return labels, written
