"""Training-data throughput and cache memory: this pipeline against the original per-slice code.

Prints JSON lines. The baseline does what the original Swin-Unet / TransUNet loader does per
slice on a 512 x 512 slice already in memory (so disk reads are not counted against it): with
p=0.5 rot90 + flip, else with p=0.5 scipy rotate (order 0), then scipy zoom to 224 (cubic
image, nearest label). Ours reads the cache (resized once at cache time, float16) and augments
at 224 with MONAI. Both run single-process with one thread (what one DataLoader worker gets),
batched by a DataLoader; rounds alternate and the medians are compared as a ratio.

The 2-D image part writes ISIC-sized photographs (1024 x 768 JPEG, PNG masks) and measures
images/s for building the cache at 224 (decoding is the cost) and training slices/s with the
photo augmentation, the recipe's and none.

    python benchmarks/bench_data.py            # about a minute on a 2-core CPU
    python benchmarks/bench_data.py --quick
    python benchmarks/bench_data.py --only images --images 48
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets import generate_phantom, normalize_intensity, open_dataset  # noqa: E402
from datasets.phantom import abdomen_case  # noqa: E402
from datasets.slices import SliceDataset, build_slice_cache  # noqa: E402
from PIL import Image  # noqa: E402
from swin_unet.config import DataConfig  # noqa: E402

SYNAPSE_SLICES = 30 * 150  # 30 cases of 512 x 512 x 150
SIZE = 224


class OriginalSlices(Dataset):
    """The original per-slice pipeline on in-memory 512 x 512 slices."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, seed: int = 0):
        self.images, self.labels = images, labels
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        image, label = self.images[index], self.labels[index]
        if self.rng.random() > 0.5:
            k = int(self.rng.integers(0, 4))
            axis = int(self.rng.integers(0, 2))
            image = np.flip(np.rot90(image, k), axis=axis).copy()
            label = np.flip(np.rot90(label, k), axis=axis).copy()
        elif self.rng.random() > 0.5:
            angle = self.rng.uniform(-20, 20)
            image = ndimage.rotate(image, angle, order=0, reshape=False)
            label = ndimage.rotate(label, angle, order=0, reshape=False)
        x, y = image.shape
        image = ndimage.zoom(image, (SIZE / x, SIZE / y), order=3)
        label = ndimage.zoom(label, (SIZE / x, SIZE / y), order=0)
        return {"image": torch.from_numpy(image.astype(np.float32))[None],
                "label": torch.from_numpy(label.astype(np.int64))[None]}


def slices_per_second(dataset, n_slices: int, batch_size: int, epoch: int) -> float:
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(epoch))
    start, seen = time.perf_counter(), 0
    for batch in loader:
        seen += len(batch["image"])
        if seen >= n_slices:
            break
    return seen / (time.perf_counter() - start)


def phantom_slices(n_cases: int, depth: int):
    """Phantom-like 512 x 512 slices, CT-windowed to [0, 1], with class-index labels."""
    from datasets.synapse import SYNAPSE_RAW_TO_CLASS
    lookup = np.zeros(16, np.uint8)
    for raw, target in SYNAPSE_RAW_TO_CLASS.items():
        lookup[raw] = target
    volumes = []
    for index in range(1, n_cases + 1):
        hu, raw, _ = abdomen_case(0, index, (512, 512, depth))
        volumes.append((normalize_intensity(hu, "ct"), lookup[raw]))
    return volumes


def write_photographs(root: Path, count: int, size=(768, 1024)) -> None:
    """ISIC-like pairs: images/NAME.jpg (RGB, smooth texture) and masks/NAME_segmentation.png."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    rows, cols = np.ogrid[0:size[0], 0:size[1]]
    for i in range(count):
        coarse = rng.integers(90, 230, (size[0] // 32, size[1] // 32, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size[1], size[0]), Image.BICUBIC)
        centre = rng.uniform(0.3, 0.7, 2) * size
        radius = rng.uniform(0.15, 0.3) * min(size)
        mask = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) < radius ** 2
        pixels = np.asarray(image).copy()
        pixels[mask] //= 2
        Image.fromarray(pixels).save(root / "images" / f"img{i:04d}.jpg", quality=90)
        Image.fromarray(mask.astype(np.uint8) * 255).save(
            root / "masks" / f"img{i:04d}_segmentation.png")


def image_benchmarks(args) -> None:
    """Images/s building the 224 cache from 1024 x 768 JPEGs; training slices/s per worker."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        write_photographs(root, args.images)
        cache_rates = {}
        for workers in (1, 2):
            cfg = DataConfig(root=str(root), num_workers=workers, val_cases=[], test_cases=[],
                             train_cases=[f"img{i:04d}" for i in range(args.images)])
            source = open_dataset("folder", cfg)
            start = time.perf_counter()
            dataset = source.train_slices(SIZE, seed=0)
            cache_rates[workers] = args.images / (time.perf_counter() - start)
            if workers == 1:
                # The same cache from full-size decodes (what train_slices avoids for JPEGs).
                start = time.perf_counter()
                build_slice_cache(source.entries("train"), source._cached_volume, (SIZE, SIZE),
                                  np.dtype("float16"), workers=1)
                cache_rates["full_decode"] = args.images / (time.perf_counter() - start)
    print(json.dumps({"bench": "image_cache_images_per_s", "size": SIZE,
                      "source": f"{args.images} JPEG 1024x768 + PNG masks",
                      "threads_1": round(cache_rates[1], 1), "threads_2": round(cache_rates[2], 1),
                      "full_decode_threads_1": round(cache_rates["full_decode"], 1),
                      "reduced_decode_speedup": round(cache_rates[1] / cache_rates["full_decode"],
                                                      2),
                      "isic_2594_s_threads_2": round(2594 / cache_rates[2], 1)}))
    variants = {kind: SliceDataset(dataset.cache, augment=kind != "none", seed=1,
                                   augmentation=kind if kind != "none" else "recipe")
                for kind in ("photo", "recipe", "none")}
    rates = {kind: [] for kind in variants}
    for r in range(args.rounds):
        for kind, slices in variants.items():
            rates[kind].append(slices_per_second(slices, args.slices, args.batch_size, r))
    medians = {k: statistics.median(v) for k, v in rates.items()}
    print(json.dumps({"bench": "image_train_slices_per_s_per_worker", "size": SIZE,
                      "channels": 3, "rounds": args.rounds,
                      **{f"augment_{k}": round(v, 1) for k, v in medians.items()},
                      "all_rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slices", type=int, default=48, help="slices per round and variant")
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--images", type=int, default=24, help="photographs for the 2-D part")
    parser.add_argument("--only", choices=("volumes", "images"), help="run one part only")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 24 slices")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.slices = 2, 24
    torch.set_num_threads(1)
    if args.only != "volumes":
        image_benchmarks(args)
    if args.only == "images":
        return
    depth = 24
    volumes = phantom_slices(2, depth)
    images = np.concatenate([np.moveaxis(v[0], -1, 0) for v in volumes])
    labels = np.concatenate([np.moveaxis(v[1], -1, 0) for v in volumes])
    entries = [type("Entry", (), {"name": f"case{i}"})() for i in range(len(volumes))]
    caches = {dtype: build_slice_cache(entries, lambda e: volumes[int(e.name[4:])],
                                       (SIZE, SIZE), np.dtype(dtype))
              for dtype in ("float16", "float32")}
    ours = SliceDataset(caches["float16"], augment=True, seed=1)
    baseline = OriginalSlices(images, labels, seed=1)
    rates = {"baseline": [], "ours": []}
    for r in range(args.rounds):
        for name, dataset in (("baseline", baseline), ("ours", ours)):
            rates[name].append(slices_per_second(dataset, args.slices, args.batch_size, r))
    medians = {k: statistics.median(v) for k, v in rates.items()}
    print(json.dumps({"bench": "train_slices_per_s_per_worker", "size": SIZE,
                      "source": "phantom 512x512 slices", "rounds": args.rounds,
                      "baseline_scipy_zoom_rotate": round(medians["baseline"], 1),
                      "ours_cache_monai_augment": round(medians["ours"], 1),
                      "ratio": round(medians["ours"] / medians["baseline"], 2),
                      "all_rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()}}))

    half = caches["float16"].images[0].astype(np.float32)
    full = caches["float32"].images[0]
    error = float(np.abs(half - full).max())
    print(json.dumps({"bench": "float16_cache_error", "max_abs_error": error,
                      "max_abs_error_hu": round(error * 400, 4),
                      "note": "images in [0, 1] for the 400 HU window [-125, 275]"}))

    # Cache memory and build time from phantom NIfTI files, scaled to Synapse's 30 x 150 slices.
    with tempfile.TemporaryDirectory() as tmp:
        generate_phantom(Path(tmp) / "ph", "abdomen", n_cases=2, seed=0, shape=(512, 512, depth))
        src = open_dataset("phantom", DataConfig(root=str(Path(tmp) / "ph"), num_workers=1,
                                                 train_cases=["1", "2"], val_cases=[],
                                                 test_cases=[]))
        start = time.perf_counter()
        dataset = src.train_slices(SIZE, seed=0)
        build = time.perf_counter() - start
    per_slice = dataset.cache.nbytes / len(dataset)
    print(json.dumps({
        "bench": "cache_memory", "size": SIZE, "measured_slices": len(dataset),
        "bytes_per_slice_float16": per_slice,
        "synapse_30x150_float16_mb": round(per_slice * SYNAPSE_SLICES / 2 ** 20, 1),
        "synapse_30x150_float32_mb": round((SIZE * SIZE * 5) * SYNAPSE_SLICES / 2 ** 20, 1),
        "raw_512_float32_mb": round(512 * 512 * 5 * SYNAPSE_SLICES / 2 ** 20, 1),
        "build_s_per_slice_from_nifti": round(build / len(dataset), 4),
        "synapse_30x150_build_s_one_thread": round(build / len(dataset) * SYNAPSE_SLICES, 1)}))


if __name__ == "__main__":
    main()
