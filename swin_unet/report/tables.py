"""Evaluation reports: metrics.csv, summary.json and the printed table of Dice and HD95."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Union

from ..config.conventions import describe_conventions
from ..io.atomic import atomic_text
from .warnings import run_warnings

__all__ = ["write_metrics_csv", "write_summary_json", "format_table", "display_name",
           "conventions_line"]

CSV_COLUMNS = ("case", "class_index", "class_name", "dice", "hd95")

# The organ names the published tables print, keyed by this project's class names.
_PAPER_NAMES = {
    "aorta": "Aorta", "gallbladder": "Gallbladder", "kidney_left": "Kidney(L)",
    "kidney_right": "Kidney(R)", "liver": "Liver", "pancreas": "Pancreas",
    "spleen": "Spleen", "stomach": "Stomach",
}



def display_name(class_name: str) -> str:
    """The published tables' name of a class (the class name itself when it has none)."""
    return _PAPER_NAMES.get(class_name, class_name)


def _csv_number(value: Any) -> str:
    """A CSV cell: empty when not computed, ``nan`` when not counted, else full precision."""
    if value is None:
        return ""
    if math.isnan(value):
        return "nan"
    return repr(float(value))


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file so a crash leaves no half file."""
    atomic_text(path, text, newline="")


def write_metrics_csv(path: Union[str, Path], per_case: dict[str, list[dict]],
                      class_names: list[str]) -> None:
    """Write one row per case and foreground class: ``case,class_index,class_name,dice,hd95``.

    Parameters
    ----------
    path : str or Path
        The file to write (replaced if it exists).
    per_case : dict of str to list of dict
        Case name to :func:`swin_unet.evaluation.metrics.case_metrics` rows.
    class_names : list of str
        Foreground class names, class 1 first.
    """
    rows = []
    for case, case_rows in per_case.items():
        for row in case_rows:
            index = row["class_index"]
            name = class_names[index - 1] if 0 < index <= len(class_names) else str(index)
            rows.append([case, str(index), name, _csv_number(row["dice"]),
                         _csv_number(row["hd95"])])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    _atomic_write(Path(path), buffer.getvalue())


def _json_safe(value: Any) -> Any:
    """Replace NaN by None (JSON has no NaN) throughout nested dicts and lists."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def conventions_line(summary: dict) -> str:
    """The metric conventions of ``summary`` in one line, in its distance unit."""
    conventions = summary.get("metric_mode", "mm")
    return (f"metric conventions '{conventions}': "
            f"{describe_conventions(conventions, summary.get('hd95_unit', 'mm'))}")


def write_summary_json(path: Union[str, Path], summary: dict, **extra: Any) -> None:
    """Write ``summary`` (from :func:`swin_unet.evaluation.metrics.summarize`) plus ``extra`` keys as JSON.

    NaN ("not counted") becomes null. The metric conventions are added under ``conventions``,
    what the run warned so far under ``warnings``.
    """
    document = dict(summary)
    document.setdefault("warnings", run_warnings())
    document.setdefault("conventions", describe_conventions(summary.get("metric_mode", "mm"),
                                                            summary.get("hd95_unit", "mm")))
    document.update(extra)
    _atomic_write(Path(path), json.dumps(_json_safe(document), indent=2, allow_nan=False) + "\n")


def _percent(value: Any) -> str:
    return "-" if value is None or math.isnan(value) else f"{100.0 * value:.2f}"


def _distance(value: Any) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def format_table(summary: dict) -> str:
    """The summary as text: a row like the papers' (DSC, HD95, Dice per organ), then details.

    Parameters
    ----------
    summary : dict
        As returned by :func:`swin_unet.evaluation.metrics.summarize`.
    """
    unit = summary.get("hd95_unit", "mm")
    classes = summary["classes"]
    names = [display_name(n) for n in classes]
    header = ["DSC (%)", f"HD95 ({unit})"] + names
    values = [_percent(summary["mean_dice"]), _distance(summary["mean_hd95"])]
    values += [_percent(c["dice"]) for c in classes.values()]
    widths = [max(len(h), len(v)) for h, v in zip(header, values)]
    lines = [
        f"{summary['n_cases']} cases, {conventions_line(summary)}",
        "  ".join(h.rjust(w) for h, w in zip(header, widths)),
        "  ".join(v.rjust(w) for v, w in zip(values, widths)),
        "",
    ]
    name_width = max([len("class")] + [len(n) for n in names])
    lines.append(f"{'class'.ljust(name_width)}  {'DSC (%)':>8}  {'HD95 (' + unit + ')':>10}  "
                 f"{'counted':>7}  {'missed':>6}  {'false+':>6}  {'absent':>6}")
    for name, stats in zip(names, classes.values()):
        lines.append(f"{name.ljust(name_width)}  {_percent(stats['dice']):>8}  "
                     f"{_distance(stats['hd95']):>10}  {stats['n_counted']:>7}  "
                     f"{stats['n_missed']:>6}  {stats['n_false_positive']:>6}  "
                     f"{stats['n_absent']:>6}")
    if summary["metric_mode"] == "mm" and summary.get("n_absent"):
        lines.append(f"{summary['n_absent']} case-class pairs absent from both prediction and "
                     f"ground truth were not counted.")
    if summary.get("classes_not_counted"):
        lines.append("Classes absent from every case (not in the means): "
                     + ", ".join(summary["classes_not_counted"]))
    return "\n".join(lines)
