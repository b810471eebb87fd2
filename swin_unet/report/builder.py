"""The visual report of a test.py run: figures drawn case by case, then report.html over them."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..io.paths import check_case_id, inside_output
from .figures import box_plots, case_montage, paper_figure, pick_figure_slices
from .html import write_html_report
from .viewer import render_strips
from .warnings import run_warnings

__all__ = ["ReportBuilder", "report_for", "expect_figure_cases", "REPORT_FILE", "FIGURES_DIR"]

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"


class ReportBuilder:
    """Draws each case's figures as the run reaches it (volumes are not kept), then the page.

    Parameters
    ----------
    output : Path
        The run's folder: ``report.html`` and ``figures/`` go there (test.py removes an
        earlier run's figures with its other results, under ``--overwrite``).
    class_names : sequence of str
        Foreground class names, class 1 first.
    settings : dict
        What the run was, shown at the top of the page.
    figure_cases : sequence of str
        Cases that also get a publication figure (``figures/paper_<case>.png``).
    figure_slices : sequence of int, optional
        The slices of those figures; default the ones the overlay figure shows.
    paper_dpi : int
        Resolution of the publication figures.
    """

    def __init__(self, output: Path, class_names: Sequence[str], settings: dict,
                 figure_cases: Sequence[str] = (), figure_slices: Optional[Sequence[int]] = None,
                 paper_dpi: int = 300) -> None:
        self.output = Path(output)
        self.folder = self.output / FIGURES_DIR
        self.class_names = list(class_names)
        self.settings = dict(settings)
        self.figure_cases = list(figure_cases)
        self.figure_slices = list(figure_slices) if figure_slices else None
        self.paper_dpi = paper_dpi
        self.figures: dict[str, str] = {}
        self.paper_figures: dict[str, str] = {}
        self.volumes: dict[str, tuple[dict[str, float], str]] = {}
        self.viewers: dict[str, dict] = {}
        self.single_slices = True
        self._started = False

    def _start(self) -> None:
        """Create ``figures/`` (an earlier run's figures are gone with its other results)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._started = True

    def add_case(self, case: str, prediction: np.ndarray, image: Optional[np.ndarray] = None,
                 label: Optional[np.ndarray] = None, affine: Optional[np.ndarray] = None,
                 spacing: Optional[Sequence[float]] = None,
                 scores: Optional[list[dict]] = None) -> None:
        """Draw one case's overlay figure (and its publication figure if it was asked for).

        Parameters
        ----------
        case : str
            The case name (``metrics.csv``'s), also the figure's file name.
        prediction : (X, Y, Z) int
            Predicted labels; a 2-D image is a volume of one slice.
        image, label : optional
            The scan (what the network saw) and the ground truth, when there are.
        affine, spacing : optional
            The volume's geometry: display orientation, aspect and (without ground truth) the
            predicted volumes in ml.
        scores : list of dict, optional
            :func:`swin_unet.evaluation.metrics.case_metrics` rows, for the figure's title.
        """
        if not self._started:
            self._start()
        self.single_slices = self.single_slices and prediction.shape[-1] == 1
        slices = pick_figure_slices(prediction, label, self.class_names)
        title = case
        if scores:
            dice = [r["dice"] for r in scores
                    if r["dice"] is not None and not math.isnan(r["dice"])]
            if dice:
                title += f": mean Dice {100.0 * float(np.mean(dice)):.2f} %"
        name = f"{check_case_id(case, f'{self.folder}: figure of case')}.png"
        case_montage(inside_output(self.folder / name, self.output), title, prediction,
                     self.class_names, image=image, label=label, affine=affine,
                     spacing=spacing, slices=slices)
        self.figures[case] = f"{FIGURES_DIR}/{name}"
        strips = render_strips(self.folder, case, prediction, image, label, affine, spacing)
        if strips is not None:
            self.viewers[case] = strips
        if label is None:
            self.volumes[case] = self._sizes(prediction, spacing, affine)
        if case in self.figure_cases:
            chosen = self.figure_slices or [z for z, _ in slices]
            paper = f"paper_{case}.png"
            paper_figure(inside_output(self.folder / paper, self.output), image, label,
                         prediction, chosen, self.class_names, affine=affine, spacing=spacing,
                         dpi=self.paper_dpi, case=case)
            self.paper_figures[case] = f"{FIGURES_DIR}/{paper}"

    def _sizes(self, prediction: np.ndarray, spacing: Optional[Sequence[float]],
               affine: Optional[np.ndarray] = None) -> tuple[dict[str, float], str]:
        """Each class's predicted size and its unit: ml for a volume, mm² for a single slice
        with a spacing, px or voxels without one (an identity affine with unit spacing, as
        2-D images and spacing-free releases have, means none)."""
        if spacing is not None and (affine is None or np.allclose(np.asarray(affine)[:3, :3],
                                                                  np.eye(3))):
            spacing = None if np.allclose(spacing[:3], 1.0) else spacing
        counts = np.bincount(np.asarray(prediction).ravel().astype(np.int64),
                             minlength=len(self.class_names) + 1)
        single = prediction.shape[-1] == 1
        if spacing is None:
            unit, scale = ("px" if single else "voxels"), 1.0
        elif single:
            unit, scale = "mm²", float(np.prod(spacing[:2]))
        else:
            unit, scale = "ml", float(np.prod(spacing[:3])) / 1000.0
        return {name: float(counts[i]) * scale
                for i, name in enumerate(self.class_names, start=1)}, unit

    def write(self, summary: Optional[dict] = None, notes: Sequence[str] = ()) -> Path:
        """Draw the box plots (with a summary) and write ``report.html``; returns its path."""
        notes = list(notes)
        missing = [c for c in self.figure_cases if c not in self.figures]
        if missing:
            message = (f"--figure-cases: {', '.join(missing)} not among the cases of this run "
                       f"({', '.join(list(self.figures)[:5])}...)")
            logger.warning(message)
            if message not in run_warnings():
                notes.append(message)
        if not self._started:
            self._start()
        box_plot = None
        if summary is not None:
            self.settings.update({"metric conventions": summary["metric_mode"],
                                  "HD95 unit": summary["hd95_unit"],
                                  "cases": summary["n_cases"]})
        kind = "image" if self.single_slices and self.figures else "volume"
        if summary is not None and summary.get("n_cases"):
            box_plots(self.folder / "boxplots.png", summary)
            box_plot = f"{FIGURES_DIR}/boxplots.png"
        return write_html_report(self.output / REPORT_FILE, self.class_names, self.settings,
                                 self.figures, summary=summary, box_plot=box_plot,
                                 volumes=self.volumes, notes=notes,
                                 paper_figures=self.paper_figures, warnings=run_warnings(),
                                 viewers=self.viewers, kind=kind)


def expect_figure_cases(report: Optional[ReportBuilder], cases: Optional[Sequence[str]]) -> None:
    """Refuse, before any work, ``--figure-cases`` that are not among ``cases`` (the run's;
    None: not known in advance, noted when the report is written). No report: nothing to do.

    Raises
    ------
    InputError
        Names the unknown cases and lists the known ones.
    """
    if report is None or cases is None:
        return
    missing = [c for c in report.figure_cases if c not in cases]
    if missing:
        shown = ", ".join(list(cases)[:20]) + (", ..." if len(cases) > 20 else "")
        raise InputError(f"--figure-cases: {', '.join(missing)} not among the cases of this "
                         f"run ({shown or 'none'})", key="--figure-cases")


def report_for(request, output: Path, class_names: Sequence[str], options=None,
               **settings) -> Optional[ReportBuilder]:
    """The report of a test.py run, or None when it asked for none (``--no-report``).

    Parameters
    ----------
    request : EvaluationRequest
        The run's options: ``report``, ``figure_cases``, ``figure_slices`` and what is shown.
    output : Path
        The run's folder.
    class_names : sequence of str
        Foreground class names, class 1 first.
    options : InferenceOptions, optional
        How the network ran (test-time augmentation is shown).
    **settings
        More lines for the page's settings table.
    """
    if not request.report:
        return None
    scored = request.input is None and request.predictions is None
    checkpoints = ", ".join(str(p) for p in request.checkpoints())
    shown = {"checkpoint" if "," not in checkpoints else "ensemble": checkpoints or None,
             "data set": request.dataset,
             "split": request.split if scored else None, "input": request.input,
             "predictions": request.predictions, "labels": request.labels}
    if options is not None:
        shown["test-time augmentation"] = "on" if options.tta else "off"
        shown["resize"] = options.resize
    shown.update(settings)
    return ReportBuilder(output, class_names, {k: v for k, v in shown.items() if v is not None},
                         request.figure_cases, request.figure_slices)
