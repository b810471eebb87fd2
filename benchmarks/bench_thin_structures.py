"""Thin structures: resize mode against patch mode (native-resolution patches, sliding windows).

Generates 2-px wide curvy vessels on noisy 384 x 384 images (``images/`` + ``masks/``), trains
the same 64-px model for the same number of epochs in each mode (``data.sampling: resize``,
every image resized to 64; ``patch``, random 64-px patches at the images' own resolution and
sliding-window inference), scores the test images with test.py and prints JSON lines: the
vessel Dice of each mode, and of the ground truth itself sent through 384 -> 64 -> 384 (nearest
both ways, the best any resize-mode model could reach). An epoch is one sample per training
image in both modes, so both see the same number of 64-px inputs.

    python benchmarks/bench_thin_structures.py --work /tmp/thin --epochs 30 --train-images 96
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import test as test_cli  # noqa: E402
from benchmarks.common import cpu_name  # noqa: E402
from datasets.transforms import resize_slices  # noqa: E402
from swin_unet.training.launch import train_from_layers  # noqa: E402

SIZE = 384
MODEL = ["model.img_size=64", "model.embed_dim=16", "model.depths=[2,2,2,2]",
         "model.num_heads=[1,2,4,8]", "model.window_size=4", "model.drop_path_rate=0.0",
         "data.num_workers=0", "train.log_every=50", "inference.batch_size=32",
         "data.class_names=[vessel]", "data.val_cases=[]", "train.val_every=1000"]


def vessel_mask(rng: np.random.Generator, size: int = SIZE, vessels: int = 5) -> np.ndarray:
    """Curvy 2-px wide lines: random walks whose direction turns smoothly, edge to edge."""
    mask = np.zeros((size, size), np.uint8)
    for _ in range(vessels):
        y, x = rng.uniform(0, size, 2)
        angle, turn = rng.uniform(0, 2 * np.pi), 0.0
        for _ in range(4 * size):
            turn = 0.97 * turn + rng.normal(0, 0.01)
            angle += turn
            y, x = y + 0.5 * np.sin(angle), x + 0.5 * np.cos(angle)
            if not (0 <= y < size - 1 and 0 <= x < size - 1):
                break
            mask[int(y):int(y) + 2, int(x):int(x) + 2] = 1
    return mask


def write_data(root: Path, n_train: int, n_test: int, seed: int = 0) -> list[str]:
    """``root/images/*.png`` and ``root/masks/*.png``; returns the test names."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    names = [f"img{i:03d}" for i in range(n_train + n_test)]
    for name in names:
        mask = vessel_mask(rng)
        background = 0.45 + 0.1 * np.sin(np.linspace(0, rng.uniform(1, 4), SIZE))[None]
        image = background + 0.22 * mask + rng.normal(0, 0.08, mask.shape)
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(
            root / "images" / f"{name}.png")
        Image.fromarray(mask * 255).save(root / "masks" / f"{name}.png")
    return names[n_train:]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))


def roundtrip_dice(root: Path, names: list[str], size: int = 64) -> float:
    """Mean Dice of the masks resized to ``size`` and back (nearest both ways)."""
    scores = []
    for name in names:
        mask = (np.asarray(Image.open(root / "masks" / f"{name}.png")) > 0).astype(np.float32)
        small = resize_slices(mask[None], (size, size), is_label=True)
        back = resize_slices(small, mask.shape, is_label=True)[0]
        scores.append(dice(back > 0.5, mask > 0))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_thin"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-images", type=int, default=96)
    parser.add_argument("--test-images", type=int, default=16)
    parser.add_argument("--modes", nargs="+", default=["resize", "patch"])
    args = parser.parse_args()
    root = args.work / "data"
    test_names = write_data(root, args.train_images, args.test_images)
    splits = [f"data.train_cases=[{','.join(f'img{i:03d}' for i in range(args.train_images))}]",
              f"data.test_cases=[{','.join(test_names)}]"]
    common = {"machine": cpu_name(),
              "load_1min": round(os.getloadavg()[0], 2), "epochs": args.epochs,
              "train_images": args.train_images, "test_images": args.test_images}
    print(json.dumps({"variant": "ground_truth_384_64_384",
                      "vessel_dice": round(roundtrip_dice(root, test_names), 4), **common}),
          flush=True)
    for mode in args.modes:
        run = args.work / f"run_{mode}"
        start = time.perf_counter()
        train_from_layers("folder", run, root=str(root), device="cpu", verbose=False,
                          overwrite=True, overrides=MODEL + splits + [
                              f"train.epochs={args.epochs}", f"data.sampling={mode}"])
        trained = time.perf_counter() - start
        out = args.work / f"test_{mode}"
        with contextlib.redirect_stdout(io.StringIO()):  # test.py's tables
            code = test_cli.main(["--dataset", "folder", "--root", str(root), "--checkpoint",
                                  str(run / "checkpoints" / "last.pth"), "--output",
                                  str(out), "--device", "cpu", "--no-progress", "--overwrite"])
        if code:
            raise SystemExit(code)
        summary = json.loads((out / "summary.json").read_text())
        print(json.dumps({"variant": mode, "vessel_dice": round(summary["mean_dice"], 4),
                          "train_s": round(trained, 1),
                          "test_s": round(time.perf_counter() - start - trained, 1), **common}),
              flush=True)


if __name__ == "__main__":
    main()
