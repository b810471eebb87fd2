"""Benchmark: what each command imports and costs as a whole process; test.py --predictions vs medpy.

Usage: python benchmarks/bench_startup.py [--shape 512 512 50] [--cases 2] [--rounds 3]

Part 1, one JSON line per command path: the wall time of the whole process, the total of
``python -X importtime`` (the sum of every module's own import time), and whether torch, MONAI,
the model and the training code were imported.

  help          python test.py --help
  bad_args      python test.py --predictions P            (an argument error: exit 2)
  train_help    python train.py --help
  predictions   python test.py --volume --predictions P --labels L --output O --overwrite
  input         python test.py --volume --checkpoint C --input SCAN --output O --overwrite
                (a tiny model on one small scan: the imports of segmenting scans)

Part 2: ``test.py --volume --predictions P --labels L`` on ``--cases`` label/prediction pairs of
``--shape`` (the 8-organ phantom of bench_metrics.py, written as NIfTI), against a process
that scores the same files the way the original code does (nibabel, medpy ``dc`` + ``hd95``
per organ). Whole processes, start-up included; rounds alternate the two.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_metrics import NUM_CLASSES, SPACING, phantom  # noqa: E402

MEDPY_SCRIPT = """
import sys
from pathlib import Path
import nibabel as nib
import numpy as np
from medpy.metric import binary
predictions, labels = Path(sys.argv[1]), Path(sys.argv[2])
for path in sorted(predictions.glob("*.nii.gz")):
    p_all = np.asarray(nib.load(str(path)).dataobj)
    g_all = np.asarray(nib.load(str(labels / path.name)).dataobj)
    for c in range(1, {classes}):
        p, g = p_all == c, g_all == c
        if p.any() and g.any():
            print(path.name, c, binary.dc(p, g), binary.hd95(p, g))
"""

WATCHED = {"torch": "torch", "monai": "monai", "model": "swin_unet.model",
           "training": "swin_unet.training", "scipy": "scipy"}


def write_pairs(folder: Path, shape, cases: int) -> tuple[Path, Path]:
    predictions, labels = folder / "predictions", folder / "labels"
    predictions.mkdir(parents=True)
    labels.mkdir()
    affine = np.diag([SPACING[0], SPACING[1], SPACING[2], 1.0])
    for i in range(cases):
        label, prediction = phantom(tuple(shape), seed=i)
        nib.save(nib.Nifti1Image(label, affine), str(labels / f"case{i:04d}.nii.gz"))
        nib.save(nib.Nifti1Image(prediction, affine), str(predictions / f"case{i:04d}.nii.gz"))
    return predictions, labels


def write_checkpoint_and_scan(folder: Path) -> tuple[Path, Path]:
    """A tiny model's checkpoint (this project's format) and a small CT scan."""
    import torch
    from swin_unet.config import Config, config_to_dict
    from swin_unet.model import build_model
    config = Config(dataset="synapse")
    for key, value in {"img_size": 32, "embed_dim": 12, "depths": [1, 1, 1, 1],
                       "num_heads": [1, 1, 1, 1], "window_size": 2}.items():
        setattr(config.model, key, value)
    torch.manual_seed(0)
    model = build_model(config.model)
    checkpoint = folder / "tiny.pth"
    torch.save({"model": model.state_dict(), "config": config_to_dict(config),
                "class_names": [f"organ{i}" for i in range(1, 9)], "epoch": 1}, checkpoint)
    scan = folder / "scan.nii.gz"
    image = np.random.default_rng(0).normal(0, 100, (48, 48, 4)).astype(np.int16)
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(scan))
    return checkpoint, scan


def import_profile(args: list[str]) -> dict:
    """Whole-process wall time, the -X importtime total and which packages were imported."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=REPO,
                            capture_output=True, text=True)
    wall = time.perf_counter() - start
    total_us, modules = 0, set()
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|(\s*)(\S+)", line)
        if match:
            total_us += int(match.group(1))
            modules.add(match.group(3))
    imported = {name: any(m == module or m.startswith(module + ".") for m in modules)
                for name, module in WATCHED.items()}
    return {"exit_code": result.returncode, "wall_s": round(wall, 3),
            "importtime_total_s": round(total_us / 1e6, 3), "modules": len(modules),
            "imported": imported}


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 50))
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-medpy", action="store_true")
    args = parser.parse_args()
    import os
    print(json.dumps({"bench": "startup", "python": sys.version.split()[0],
                      "load_average_1min": round(os.getloadavg()[0], 2)}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        predictions, labels = write_pairs(tmp / "pairs", args.shape, args.cases)
        checkpoint, scan = write_checkpoint_and_scan(tmp)
        paths = {
            "help": ["test.py", "--help"],
            "bad_args": ["test.py", "--predictions", str(predictions)],
            "train_help": ["train.py", "--help"],
            "predictions": ["test.py", "--volume", "--predictions", str(predictions), "--labels",
                            str(labels), "--output", str(tmp / "scores"), "--overwrite",
                            "--no-progress"],
            "input": ["test.py", "--volume", "--checkpoint", str(checkpoint), "--input",
                      str(scan), "--output", str(tmp / "segmented"), "--overwrite",
                      "--no-progress", "--device", "cpu"],
        }
        for name, command in paths.items():
            print(json.dumps({"path": name, **import_profile(command)}), flush=True)

        if args.skip_medpy:
            return
        script = tmp / "medpy_scores.py"
        script.write_text(MEDPY_SCRIPT.format(classes=NUM_CLASSES))
        variants = {
            "test_py_predictions": [sys.executable, *paths["predictions"]],
            "medpy_process": [sys.executable, str(script), str(predictions), str(labels)],
        }
        times = {name: [] for name in variants}
        for round_index in range(args.rounds):
            order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
            for name in order:
                times[name].append(timed(variants[name]))
    ours, medpy = times["test_py_predictions"], times["medpy_process"]
    ratios = [m / o for m, o in zip(medpy, ours)]
    for name, samples in times.items():
        print(json.dumps({"variant": name, "shape": list(args.shape), "cases": args.cases,
                          "median_s": round(statistics.median(samples), 2),
                          "times_s": [round(t, 2) for t in samples]}), flush=True)
    print(json.dumps({"ratio": "medpy_process/test_py_predictions",
                      "speedup": round(statistics.median(medpy) / statistics.median(ours), 2),
                      "round_speedups": [round(r, 2) for r in ratios]}), flush=True)


if __name__ == "__main__":
    main()
