"""Benchmark: Dice + HD95 of a multi-organ volume, ours against medpy (and MONAI), JSON lines.

Usage: python benchmarks/bench_metrics.py [--shape 512 512 100] [--rounds 3] [--monai]

The phantom has eight organs (ellipsoids, a tube for the aorta) and a prediction made of the
organs shifted, grown or shrunk, with scattered false-positive specks, so that surfaces are
large and distances are not trivial. Each round times every variant once, in alternating
order; the report gives medians and the ratio to medpy, and checks that the values agree.
Variants:
  medpy        medpy.metric.binary.dc + hd95 per class on the whole volume (the original code)
  ours_paper   swin_unet.evaluation.metrics.case_metrics(mode="paper") (the same values, voxel units)
  ours_mm      case_metrics(mode="mm") with an anisotropic spacing, against medpy's voxelspacing
  edt_in_box   the same bounding boxes, but distance transforms in the box instead of a KD-tree
  monai        monai HausdorffDistanceMetric(percentile=95) (--monai; a different definition)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import run_alternating  # noqa: E402
from swin_unet.evaluation.metrics import case_metrics, surface_mask  # noqa: E402

NUM_CLASSES = 9
SPACING = (0.76, 0.76, 3.0)


def phantom(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(label, prediction) uint8 volumes with eight organs in the proportions of a CT."""
    rng = np.random.default_rng(seed)
    sx, sy, sz = shape
    x, y, z = np.ogrid[:sx, :sy, :sz]
    x, y, z = x / sx, y / sy, z / sz
    # (class, centre, radii) in fractions of the volume; class 1 is the aorta tube.
    organs = [(5, (0.40, 0.35, 0.50), (0.22, 0.18, 0.35)),   # liver
              (7, (0.65, 0.70, 0.45), (0.08, 0.07, 0.20)),   # spleen
              (8, (0.55, 0.60, 0.55), (0.12, 0.09, 0.18)),   # stomach
              (4, (0.35, 0.70, 0.40), (0.05, 0.05, 0.15)),   # right kidney
              (3, (0.68, 0.45, 0.40), (0.05, 0.05, 0.15)),   # left kidney
              (6, (0.50, 0.48, 0.45), (0.10, 0.03, 0.08)),   # pancreas
              (2, (0.42, 0.50, 0.60), (0.03, 0.03, 0.08))]   # gallbladder
    label = np.zeros(shape, np.uint8)
    prediction = np.zeros(shape, np.uint8)
    for index, centre, radii in organs:
        inside = sum(((a - c) / r) ** 2 for a, c, r in zip((x, y, z), centre, radii))
        label[inside < 1.0] = index
        shift = rng.uniform(-0.01, 0.01, size=3)
        scale = rng.uniform(0.92, 1.08)
        moved = sum(((a - c - s) / (r * scale)) ** 2
                    for a, c, s, r in zip((x, y, z), centre, shift, radii))
        prediction[moved < 1.0] = index
    tube = ((x - 0.52) / 0.02) ** 2 + ((y - 0.40) / 0.02) ** 2 < 1.0
    label[np.broadcast_to(tube, shape)] = 1
    prediction[np.broadcast_to(np.roll(tube, 2, axis=0), shape)] = 1
    # Scattered specks of wrong labels: the surfaces a real network's errors leave.
    specks = rng.random(shape) < 2e-5
    prediction[ndimage.binary_dilation(specks, iterations=1)] = rng.integers(1, NUM_CLASSES)
    return label, prediction


def run_medpy(label, prediction, spacing):
    from medpy.metric import binary
    values = []
    for c in range(1, NUM_CLASSES):
        p, g = prediction == c, label == c
        if p.any() and g.any():
            values.append((binary.dc(p, g), binary.hd95(p, g, voxelspacing=spacing)))
        else:
            values.append((None, None))
    return values


def run_ours(label, prediction, spacing, mode):
    rows = case_metrics(prediction, label, NUM_CLASSES, spacing=spacing or (1, 1, 1), mode=mode)
    return [(r["dice"], r["hd95"]) for r in rows]


def run_edt_in_box(label, prediction, spacing):
    """The alternative to the KD-tree: distance transforms restricted to the union box."""
    spacing = np.ones(3) if spacing is None else np.asarray(spacing)
    values = []
    for c in range(1, NUM_CLASSES):
        p, g = prediction == c, label == c
        box = ndimage.find_objects((p | g).astype(np.uint8))[0]
        sp, sg = surface_mask(p[box]), surface_mask(g[box])
        d1 = ndimage.distance_transform_edt(~sg, sampling=spacing)[sp]
        d2 = ndimage.distance_transform_edt(~sp, sampling=spacing)[sg]
        values.append((None, float(np.percentile(np.concatenate([d1, d2]), 95))))
    return values


def run_monai(label, prediction, spacing):
    import torch
    from monai.metrics import HausdorffDistanceMetric
    from monai.networks.utils import one_hot
    metric = HausdorffDistanceMetric(include_background=False, percentile=95)
    p = one_hot(torch.from_numpy(prediction[None, None].astype(np.int64)), NUM_CLASSES)
    g = one_hot(torch.from_numpy(label[None, None].astype(np.int64)), NUM_CLASSES)
    out = metric(p, g, spacing=list(spacing) if spacing else None)
    return [(None, float(v)) for v in out[0]]


def max_difference(a, b, which):
    diffs = [abs(x[which] - y[which]) / max(abs(y[which]), 1e-12)
             for x, y in zip(a, b) if x[which] is not None and y[which] is not None]
    return max(diffs) if diffs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 100))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--monai", action="store_true", help="also time MONAI (one round)")
    args = parser.parse_args()
    label, prediction = phantom(tuple(args.shape))
    variants = {
        "medpy_voxel": lambda: run_medpy(label, prediction, None),
        "ours_paper": lambda: run_ours(label, prediction, None, "paper"),
        "medpy_mm": lambda: run_medpy(label, prediction, SPACING),
        "ours_mm": lambda: run_ours(label, prediction, SPACING, "mm"),
        "edt_in_box_voxel": lambda: run_edt_in_box(label, prediction, None),
    }
    times, values = run_alternating(variants, args.rounds)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name in variants:
        reference = "medpy_mm" if name.endswith("mm") else "medpy_voxel"
        print(json.dumps({
            "bench": "metrics", "variant": name, "shape": list(args.shape),
            "classes": NUM_CLASSES - 1, "rounds": args.rounds,
            "median_s": round(medians[name], 4),
            "speedup_vs_medpy": round(medians[reference] / medians[name], 2),
            "max_rel_diff_dice": max_difference(values[name], values[reference], 0),
            "max_rel_diff_hd95": max_difference(values[name], values[reference], 1),
        }))
    if args.monai:
        start = time.perf_counter()
        monai_values = run_monai(label, prediction, SPACING)
        seconds = time.perf_counter() - start
        print(json.dumps({
            "bench": "metrics", "variant": "monai_hd95_mm", "shape": list(args.shape),
            "rounds": 1, "median_s": round(seconds, 4),
            "speedup_vs_medpy": round(medians["medpy_mm"] / seconds, 2),
            "max_rel_diff_hd95": max_difference(monai_values, values["medpy_mm"], 1),
            "note": "MONAI takes the larger of the two directed 95th percentiles, medpy the "
                    "95th percentile of both directions pooled",
        }))


if __name__ == "__main__":
    main()
