"""What an evaluation writes: metrics.csv, summary.json and the report, and the overwrite check."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from .errors import InputError
from .metrics import summarize
from .report import write_metrics_csv, write_summary_json
from .report_builder import REPORT_FILE, ReportBuilder

__all__ = ["RunResult", "check_output", "finish_run"]

_OUTPUT_FILES = ("metrics.csv", "summary.json")


@dataclass
class RunResult:
    """What a test.py run produced."""

    summary: Optional[dict] = None
    per_case: dict = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kind: str = "dataset"  # "dataset", "predictions" or "input" (EvaluationRequest.kind)
    output: Optional[Path] = None
    report: Optional[Path] = None  # report.html, unless the run was asked for none


def check_output(output: Path, overwrite: bool, files: Iterable[Path] = ()) -> None:
    """Refuse to replace an earlier run's results unless ``overwrite``.

    Raises
    ------
    InputError
        ``output`` is a file, or holds metrics.csv, summary.json, report.html or ``files``.
    """
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: --output exists and is not a folder")
    if overwrite:
        return
    existing = [output / name for name in _OUTPUT_FILES if (output / name).exists()]
    existing += [f for f in list(files) + [output / REPORT_FILE] if f.exists()]
    if existing:
        raise InputError(f"{existing[0]}: exists from an earlier run; pass --overwrite or "
                         f"choose another --output")


def finish_run(output: Path, per_case: dict, class_names: list[str], mode: str,
            result: RunResult, report: Optional[ReportBuilder] = None,
            distance_unit: str = "mm", **extra) -> RunResult:
    """Summarise ``per_case``; write metrics.csv, summary.json and the report into ``output``."""
    summary = summarize(per_case, class_names, mode, distance_unit)
    write_metrics_csv(output / "metrics.csv", per_case, class_names)
    # The values predictions hold: the data set's class order (Synapse: the 8-organ order,
    # not BTCV's raw label numbers).
    labels = {"0": "background", **{str(i): name for i, name in enumerate(class_names, 1)}}
    write_summary_json(output / "summary.json", summary, notes=result.notes,
                       label_values=labels, **extra)
    result.summary, result.per_case = summary, per_case
    result.written += [output / "metrics.csv", output / "summary.json"]
    result.report = report.write(summary, result.notes) if report is not None else None
    return result
