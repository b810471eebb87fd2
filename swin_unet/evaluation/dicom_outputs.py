"""DICOM outputs of test.py --input for a DICOM series: the SEG and the RT Structure Set."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..io.dicom_seg import SEG_SUFFIX, write_seg
from ..io.dicom_series import find_series
from ..io.rtstruct import RTSTRUCT_SUFFIX, write_rtstruct

__all__ = ["DicomOutputs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DicomOutputs:
    """Which DICOM objects to write beside a DICOM series' NIfTI prediction.

    Attributes
    ----------
    seg : bool or None
        ``--dicom-seg/--no-dicom-seg``; None: on (it is the default for DICOM input).
    rtstruct : bool
        ``--rtstruct``: also an RT Structure Set.
    checkpoint : str
        The checkpoint's file name (an ensemble's joined by +), written into the descriptions.
    """

    seg: Optional[bool] = None
    rtstruct: bool = False
    checkpoint: str = "model"

    def paths(self, output: Path, case: str, series: Optional[str]) -> dict[str, Path]:
        """``{"seg": OUTPUT/predictions/<case>_seg.dcm, "rtstruct": ...}`` for a DICOM case."""
        if series is None:
            return {}
        folder = Path(output) / "predictions"
        return {kind: folder / f"{case}{suffix}" for kind, suffix, wanted in (
            ("seg", SEG_SUFFIX, self.seg is not False),
            ("rtstruct", RTSTRUCT_SUFFIX, self.rtstruct)) if wanted}

    def write(self, labels: np.ndarray, folder: Path, series: str, paths: dict[str, Path],
              class_names: Sequence[str], probabilities: Optional[Path] = None,
              notes: Optional[list] = None) -> list[Path]:
        """Write the objects of ``paths`` for ``labels`` (the NIfTI's voxels) over ``series``.

        ``probabilities`` (the run's ``.npz``) makes the SEG FRACTIONAL. A structure set whose
        contours fail the rasterising check is not written; ``notes`` says so.
        """
        if not paths:
            return []
        source = find_series(folder, series)
        written = []
        if "seg" in paths:
            fractions = None
            if probabilities is not None:
                with np.load(probabilities) as archive:
                    fractions = archive["probabilities"]
            try:
                path = write_seg(labels, source.headers, class_names, paths["seg"],
                                 self.checkpoint, fractions)
            except ValueError as exc:  # highdicom: the series lacks what a SEG needs
                path = None
                logger.warning("%s: no DICOM SEG written: %s", source.label(), exc)
                if notes is not None:
                    notes.append(f"{paths['seg'].name} not written: {source.label()}: {exc}")
            written += [path] if path is not None else []
        if "rtstruct" in paths:
            path, dice = write_rtstruct(labels, source, class_names, paths["rtstruct"],
                                        self.checkpoint)
            if path is not None:
                written.append(path)
                logger.info("%s: contours rasterise back with Dice %s", path.name,
                            ", ".join(f"{n} {v:.3f}" for n, v in dice.items()) or "(no class "
                            "large enough to check)")
            elif dice and notes is not None:
                notes.append(f"{paths['rtstruct'].name} not written: its contours do not "
                             f"rasterise back to the labels (Dice "
                             f"{min(dice.values()):.3f} < 0.95)")
        return written
