"""bf16 autocast against float32 on a trained model: label agreement, Dice per class, time.

Usage: python benchmarks/bench_precision.py --checkpoint runs/phantom/checkpoints/best.pth \
           --dataset phantom [--root data/phantom] [--split test] [--device cpu]

Every volume of the split is segmented twice by the same model, in float32 and under bf16
autocast (forced, also on a CPU without native bf16, where it is emulated and slow), the way
test.py does (``predict_volume``, mm mode). Prints JSON lines: per volume the fraction of voxels
with the same label and each run's Dice per class against the ground truth; then the overall
agreement, the largest Dice difference per class and both runs' seconds. The bars: Dice per
class within 0.002 of float32, at least 99.9% of voxels with the same label.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swin_unet.data_layer import project_datasets  # noqa: E402
from swin_unet.evaluation.inference import predict_volume  # noqa: E402
from swin_unet.precision import cpu_bf16_support  # noqa: E402
from swin_unet.evaluation.trained import load_model  # noqa: E402


def dice(prediction: np.ndarray, label: np.ndarray, index: int) -> float:
    p, g = prediction == index, label == index
    total = int(p.sum()) + int(g.sum())
    return float("nan") if total == 0 else 2.0 * int((p & g).sum()) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root")
    parser.add_argument("--split", default="test")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    overrides = [f"data.root={args.root}"] if args.root else []
    loaded = load_model(args.checkpoint, args.dataset, overrides, device)
    source = project_datasets().open_dataset(args.dataset, loaded.config.data)
    size, batch = loaded.config.model.img_size, loaded.config.inference.batch_size
    print(json.dumps({"bench": "precision", "checkpoint": str(args.checkpoint),
                      "device": args.device, "threads": torch.get_num_threads(),
                      "cpu_native_bf16": cpu_bf16_support(),
                      "load_average_1min": round(os.getloadavg()[0], 2)}), flush=True)
    classes = len(loaded.class_names)
    same_total = voxels = 0
    seconds = {"fp32": 0.0, "bf16": 0.0}
    worst = np.zeros(classes)
    for item in source.volumes(args.split):
        predictions = {}
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            start = time.perf_counter()
            predictions[name] = predict_volume(loaded.model, item.array, size,
                                               batch_size=batch, device=device,
                                               amp_dtype=dtype)
            seconds[name] += time.perf_counter() - start
        label = np.asarray(item.label)
        same = int((predictions["fp32"] == predictions["bf16"]).sum())
        same_total, voxels = same_total + same, voxels + label.size
        dices = {name: [dice(p, label, c) for c in range(1, classes + 1)]
                 for name, p in predictions.items()}
        difference = np.abs(np.array(dices["fp32"]) - np.array(dices["bf16"]))
        worst = np.fmax(worst, difference)
        print(json.dumps({"case": item.case, "same_label_fraction": round(same / label.size, 6),
                          "dice_fp32": [round(d, 4) for d in dices["fp32"]],
                          "dice_bf16": [round(d, 4) for d in dices["bf16"]],
                          "max_dice_difference": round(float(np.nanmax(difference)), 5)}),
              flush=True)
    print(json.dumps({"same_label_fraction": round(same_total / max(voxels, 1), 6),
                      "max_dice_difference_per_class": dict(zip(
                          loaded.class_names, [round(float(d), 5) for d in worst])),
                      "meets_bars": bool(same_total / max(voxels, 1) >= 0.999
                                         and np.nanmax(worst) <= 0.002),
                      "seconds": {k: round(v, 1) for k, v in seconds.items()}}), flush=True)


if __name__ == "__main__":
    main()
