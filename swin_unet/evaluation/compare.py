"""test.py --cross-validation --compare: which configuration is better, and how sure that is.

Each configuration's cross-validation scores the same cases (each case in some fold of each),
so its per-case Dice can be paired with another's: the table gives, per class and for the
mean over classes, the mean of each, the mean and median paired difference, how many cases
each wins, and the two-sided Wilcoxon signed-rank p-value of the differences (SciPy).
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import InputError
from .output_folder import RunResult

__all__ = ["COMPARE_FILES", "paired_rows", "compare_groups", "format_compare"]

COMPARE_FILES = ("compare.md", "compare.csv", "compare_cases.csv")
MEAN = "mean over classes"


def _case_dice(cases: dict) -> dict[str, dict[str, float]]:
    """Case -> class name (and the mean over its counted classes) -> Dice; NaN: not counted.

    ``cases`` is a summary's (case -> class name -> dice, hd95, status)."""
    out = {}
    for case, scores in cases.items():
        values = {name: float(score["dice"]) for name, score in scores.items()}
        counted = [v for v in values.values() if not math.isnan(v)]
        values[MEAN] = float(np.mean(counted)) if counted else math.nan
        out[case] = values
    return out


def _wilcoxon(differences: np.ndarray) -> Optional[float]:
    """Two-sided p-value; None when no difference is non-zero (nothing to test)."""
    from scipy.stats import wilcoxon

    if not np.any(differences != 0):
        return None
    with warnings.catch_warnings():  # scipy warns of ties and of small samples
        warnings.simplefilter("ignore")
        return float(wilcoxon(differences).pvalue)


def paired_rows(a: dict, b: dict, class_names: list[str]) -> tuple[list[dict], list[dict]]:
    """Per class (and the mean): the statistics of Dice b - a over the cases both counted; and
    the per-case differences. ``a`` and ``b`` are the summaries' ``cases`` of two
    configurations."""
    dice_a, dice_b = _case_dice(a), _case_dice(b)
    stats, cases = [], []
    for name in [MEAN] + list(class_names):
        pairs = [(case, dice_a[case][name], dice_b[case][name]) for case in sorted(dice_a)
                 if case in dice_b and not math.isnan(dice_a[case][name])
                 and not math.isnan(dice_b[case][name])]
        cases += [{"case": c, "class_name": name, "dice_a": x, "dice_b": y, "difference": y - x}
                  for c, x, y in pairs]
        x = np.array([p[1] for p in pairs])
        y = np.array([p[2] for p in pairs])
        d = y - x
        stats.append({"class_name": name, "n_cases": len(pairs),
                      "mean_a": float(x.mean()) if len(pairs) else math.nan,
                      "mean_b": float(y.mean()) if len(pairs) else math.nan,
                      "mean_difference": float(d.mean()) if len(pairs) else math.nan,
                      "median_difference": float(np.median(d)) if len(pairs) else math.nan,
                      "b_better": int((d > 0).sum()), "a_better": int((d < 0).sum()),
                      "wilcoxon_p": _wilcoxon(d) if len(pairs) else None})
    return stats, cases


def _pct(value) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def format_compare(results: dict[str, RunResult], tests: list[tuple[str, str, list[dict]]]) -> str:
    """compare.md: the cross-validation means, then each pair's paired differences."""
    names = list(next(iter(results.values())).summary["classes"])
    lines = ["Cross-validation mean Dice (%) per configuration", "",
             "| configuration | cases | mean | " + " | ".join(names) + " |",
             "|---" * (len(names) + 3) + "|"]
    for config, result in results.items():
        summary = result.summary
        lines.append(f"| {config} | {summary['n_cases']} | {_pct(summary['mean_dice'])} | "
                     + " | ".join(_pct(summary["classes"][n]["dice"]) for n in names) + " |")
    for a, b, stats in tests:
        lines += ["", f"Paired per-case Dice differences, {b} minus {a} (percentage points); "
                      f"p: two-sided Wilcoxon signed-rank test", "",
                  f"| class | cases | {a} | {b} | mean difference | median difference | "
                  f"{b} better | {a} better | p |", "|---" * 9 + "|"]
        for row in stats:
            p = row["wilcoxon_p"]
            lines.append(f"| {row['class_name']} | {row['n_cases']} | {_pct(row['mean_a'])} | "
                         f"{_pct(row['mean_b'])} | {_pct(row['mean_difference'])} | "
                         f"{_pct(row['median_difference'])} | {row['b_better']} | "
                         f"{row['a_better']} | {'-' if p is None else f'{p:.3g}'} |")
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["config_a"])
        writer.writeheader()
        writer.writerows(rows)


def compare_groups(results: dict[str, RunResult], output: Path) -> RunResult:
    """Compare every pair of configurations (in the order given); write compare.md, compare.csv
    (per class) and compare_cases.csv (per case).

    Raises
    ------
    InputError
        Two configurations whose cross-validations share no case.
    """
    class_names = list(next(iter(results.values())).summary["classes"])
    names = list(results)
    tests, stat_rows, case_rows = [], [], []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            cases_a, cases_b = results[a].summary["cases"], results[b].summary["cases"]
            if not set(cases_a) & set(cases_b):
                raise InputError(f"--compare: the cross-validations {a} and {b} share no case")
            stats, cases = paired_rows(cases_a, cases_b, class_names)
            tests.append((a, b, stats))
            stat_rows += [{"config_a": a, "config_b": b, **row} for row in stats]
            case_rows += [{"config_a": a, "config_b": b, **row} for row in cases]
    text = format_compare(results, tests)
    output.mkdir(parents=True, exist_ok=True)
    (output / "compare.md").write_text(text, encoding="utf-8")
    _write_csv(output / "compare.csv", stat_rows)
    _write_csv(output / "compare_cases.csv", case_rows)
    first = results[names[0]]
    return RunResult(summary=first.summary, per_case=first.per_case,
                     written=[output / "compare.csv", output / "compare.md"],
                     notes=[n for r in results.values() for n in r.notes]
                     + [f"each configuration's tables and report: "
                        f"{', '.join(str(output / n) for n in names)}"],
                     output=output, tables=[text.rstrip()])
