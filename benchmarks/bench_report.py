"""Benchmark: the report's overlay figure of a case against scoring that case, JSON lines.

Usage: python benchmarks/bench_report.py [--shape 512 512 100] [--rounds 3]

The volume is bench_metrics' eight-organ phantom (a Synapse-sized CT by default) with a noisy
grey image. Variants, each run once per round in alternating order:
  metrics       swin_unet.evaluation.metrics.case_metrics in mm mode (what every test.py run does per case)
  case_figure   ReportBuilder.add_case: slice choice and figures/<case>.png (what the report adds)
  paper_figure  the 300 dpi publication figure of the same slices (--figure-cases only)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_metrics import SPACING, phantom  # noqa: E402
from benchmarks.common import run_alternating  # noqa: E402
from swin_unet.report.figures import paper_figure, pick_figure_slices  # noqa: E402
from swin_unet.evaluation.metrics import case_metrics  # noqa: E402
from swin_unet.report.builder import ReportBuilder  # noqa: E402

NAMES = ["aorta", "gallbladder", "kidney_left", "kidney_right", "liver", "pancreas", "spleen",
         "stomach"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 100))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    label, prediction = phantom(tuple(args.shape))
    rng = np.random.default_rng(0)
    image = (label * 0.08 + rng.normal(0.3, 0.05, label.shape)).astype(np.float32)
    affine = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
    with tempfile.TemporaryDirectory() as folder:
        builder = ReportBuilder(Path(folder), NAMES, {})
        slices = [z for z, _ in pick_figure_slices(prediction, label, NAMES)]
        variants = {
            "metrics": lambda: case_metrics(prediction, label, len(NAMES) + 1, SPACING, "mm"),
            "case_figure": lambda: builder.add_case("case", prediction, image, label, affine,
                                                    SPACING),
            "paper_figure": lambda: paper_figure(Path(folder) / "paper.png", image, label,
                                                 prediction, slices, NAMES, affine, SPACING),
        }
        times, _ = run_alternating(variants, args.rounds)
        sizes = {"case_figure": (Path(folder) / "figures" / "case.png").stat().st_size,
                 "paper_figure": (Path(folder) / "paper.png").stat().st_size}
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name in variants:
        print(json.dumps({
            "bench": "report", "variant": name, "shape": list(args.shape),
            "rounds": args.rounds, "median_s": round(medians[name], 3),
            "ratio_to_metrics": round(medians[name] / medians["metrics"], 2),
            "png_bytes": sizes.get(name), "slices": len(slices)}))


if __name__ == "__main__":
    main()
