"""Validation on whole volumes with test.py's code: predict_volume, case_metrics, summarize."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..evaluation.inference import predict_volume
from ..evaluation.sliding import SlidingWindow
from ..evaluation.metrics import case_metrics, summarize
from ..io.volumes import Volume
from .distributed import DistributedContext, broadcast_object, gather_objects
from .monitor import overlay_panel, pick_overlay_slices

__all__ = ["Validator", "ValidationResult"]

logger = logging.getLogger(__name__)

# Whole validation volumes are kept in memory between validations up to this many bytes
# (ACDC's 20 validation volumes take ~30 MB); beyond it they are read again each time.
CACHE_BYTES = 2 * 1024 ** 3


@dataclass
class ValidationResult:
    """What one validation found: the summary (:func:`swin_unet.evaluation.metrics.summarize`) and overlays."""

    summary: dict
    overlays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def mean_dice(self) -> float:
        value = self.summary.get("mean_dice")
        return math.nan if value is None else float(value)

    def scalars(self) -> dict[str, float]:
        """TensorBoard scalars: ``val/dice_mean``, ``val/dice/<class>``, ``val/hd95_mean``."""
        values = {"val/dice_mean": self.summary["mean_dice"]}
        for name, numbers in self.summary["classes"].items():
            values[f"val/dice/{name}"] = numbers["dice"]
        if self.summary.get("mean_hd95") is not None:
            values["val/hd95_mean"] = self.summary["mean_hd95"]
        return values

    def line(self) -> str:
        """One log line: mean Dice, HD95 if computed, and Dice per class."""
        text = (f"val mean Dice {self.summary['mean_dice']:.4f} on "
                f"{self.summary['n_cases']} volumes")
        if self.summary.get("mean_hd95") is not None:
            unit = self.summary.get("hd95_unit", "")
            text += f", mean HD95 {self.summary['mean_hd95']:.2f} {unit}"
        per_class = ", ".join(f"{name} {numbers['dice']:.3f}"
                              for name, numbers in self.summary["classes"].items())
        return f"{text} ({per_class})"


class Validator:
    """Scores a model on the validation volumes; each rank takes every ``world_size``-th volume.

    Parameters
    ----------
    volumes : sequence of Volume
        The data source's ``volumes("val")``, each with its ``label``.
    class_names : list of str
        Foreground class names, class 1 first.
    img_size : int or (H, W)
        The model's input size.
    inference : InferenceConfig
        ``batch_size``, ``resize``, ``metric_conventions`` and ``tta``, as test.py uses them.
    hd95 : bool
        Also compute HD95 (costs more than the prediction on large volumes).
    overlay_slices : int
        Slices of the first validation volume to draw for TensorBoard (rank 0 only).
    sliding : SlidingWindow, optional
        Patch mode's sliding windows (``SlidingWindow.from_config``), as test.py runs them.
    """

    def __init__(self, volumes: Sequence, class_names: list[str], img_size, inference,
                 hd95: bool, overlay_slices: int, context: DistributedContext,
                 sliding: Optional[SlidingWindow] = None) -> None:
        self.volumes = volumes
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names) + 1
        self.img_size = img_size
        self.inference = inference
        self.sliding = sliding
        self.hd95 = bool(hd95)
        self.overlay_count = int(overlay_slices)
        self.context = context
        self.mine = list(range(context.rank, len(volumes), context.world_size))
        self._cache: dict[int, dict] = {}
        self._cached_bytes = 0
        self._overlay_picks: Optional[list[int]] = None

    def __len__(self) -> int:
        return len(self.volumes)

    def _volume(self, index: int) -> dict:
        if index in self._cache:
            return self._cache[index]
        item = self.volumes[index]
        size = int(np.asarray(item.array).nbytes) + int(np.asarray(item.label).nbytes)
        if self._cached_bytes + size <= CACHE_BYTES:
            self._cache[index] = item
            self._cached_bytes += size
        return item

    @torch.no_grad()
    def run(self, model: nn.Module, device: torch.device,
            amp_dtype: Optional[torch.dtype] = None) -> ValidationResult:
        """Predict and score this rank's volumes, gather every rank's rows, summarise.

        ``amp_dtype``: the run's autocast dtype (None: float32), as in its training steps.

        ``model`` must be the plain network (not the DDP wrapper): ranks predict different
        volumes, so no collective may run inside its forward.
        """
        mode = self.inference.metric_conventions
        rows: dict[str, list[dict]] = {}
        overlays: dict[str, np.ndarray] = {}
        unit = "mm"  # the data's distance unit: px for 2-D images
        for index in self.mine:
            item = self._volume(index)
            unit = item.distance_unit
            prediction = predict_volume(model, item.array, self.img_size,
                                        batch_size=self.inference.batch_size,
                                        resize=self.inference.resize,
                                        tta=self.inference.tta, device=device,
                                        amp_dtype=amp_dtype, sliding=self.sliding,
                                        spacing=None if unit == "px" else item.spacing[:2])
            rows[item.case] = case_metrics(prediction, item.label, self.num_classes,
                                           spacing=item.spacing, mode=mode, hd95=self.hd95)
            if index == 0 and self.context.is_main:
                overlays = self._overlays(item, prediction)
        per_case: dict[str, list[dict]] = {}
        for part in gather_objects(rows, self.context):
            per_case.update(part)
        # Volumes in their listed order, whichever rank scored them.
        order = [self.volumes.names[i] if hasattr(self.volumes, "names") else None
                 for i in range(len(self.volumes))]
        if all(name in per_case for name in order):
            per_case = {name: per_case[name] for name in order}
        summary = (summarize(per_case, self.class_names, mode, unit) if self.context.is_main
                   else None)
        summary = broadcast_object(summary, self.context)
        return ValidationResult(summary=summary, overlays=overlays)

    def _overlays(self, item: Volume, prediction: np.ndarray) -> dict[str, np.ndarray]:
        """Image / ground truth / prediction panels of fixed slices of the first volume."""
        label = np.asarray(item.label)
        if self._overlay_picks is None:
            self._overlay_picks = pick_overlay_slices(label, self.overlay_count)
        image = np.asarray(item.array)
        if image.ndim == 4:
            image = image[0]  # first channel stands for a multi-channel image
        return {f"val/overlay/{item.case}_slice{z:03d}":
                overlay_panel(image[..., z], label[..., z], prediction[..., z])
                for z in self._overlay_picks}
