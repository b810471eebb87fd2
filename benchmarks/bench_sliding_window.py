"""Sliding-window inference (patch mode) against resize inference, paired, on the same model.

The default 224 model (random weights: speed and memory do not depend on them) segments the
same inputs both ways through ``predict_volume``, as test.py does:

- ``image``: a 1024x1024 image (one slice); ``volume``: a 512x512x``--slices`` volume. The
  variants alternate every round (``--rounds``); per variant the median round gives windows/s
  (forward inputs of 224x224: one per slice when resizing) and images or slices/s.
- peak resident memory (VmHWM after a reset, in a child process per variant and input) of
  each, and of a ``--large``x``--large`` image (default 4096, which must stay within 4 GiB).

Windows: ``inference.overlap`` 0.5, Gaussian blend, ``inference.batch_size`` windows per pass.

    python benchmarks/bench_sliding_window.py --slices 8 --rounds 2
    python benchmarks/bench_sliding_window.py --slices 100 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as train.py and test.py

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from swin_unet.config import Config  # noqa: E402
from swin_unet.evaluation.inference import predict_volume  # noqa: E402
from swin_unet.evaluation.sliding import SlidingWindow  # noqa: E402
from swin_unet.model import build_model  # noqa: E402

from benchmarks.bench_mechanisms import machine  # noqa: E402
from benchmarks.bench_train import _proc_status_bytes, _reset_peak_rss  # noqa: E402

VARIANTS = ("resize", "sliding")


def make_model(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(Config().model).eval().to(device)
    forward = model.forward

    def counted(x: torch.Tensor) -> torch.Tensor:
        model.windows += x.shape[0]
        return forward(x)

    model.windows = 0
    model.forward = counted
    return model


def make_input(job: str, slices: int, large: int) -> np.ndarray:
    shape = {"image": (1024, 1024, 1), "volume": (512, 512, slices),
             "large": (large, large, 1)}[job]
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def segment(model: torch.nn.Module, volume: np.ndarray, variant: str, batch: int,
            device: torch.device) -> np.ndarray:
    inference = Config().inference
    sliding = (SlidingWindow((224, 224), inference.overlap, inference.blend)
               if variant == "sliding" else None)
    return predict_volume(model, volume, 224, batch_size=batch, device=device, sliding=sliding)


def memory_child(job: str, variant: str, args: argparse.Namespace) -> None:
    """Print the peak resident size of one variant on one input (own process: a clean peak)."""
    device = torch.device(args.device)
    model = make_model(device)
    volume = make_input(job, args.slices, args.large)
    before = _proc_status_bytes("VmRSS")
    _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    labels = segment(model, volume, variant, args.batch, device)
    seconds = time.perf_counter() - start
    peak = _proc_status_bytes("VmHWM")
    row = {"job": job, "variant": variant, "shape": list(volume.shape),
           "labels_shape": list(labels.shape), "windows": model.windows,
           "seconds": round(seconds, 2), "peak_rss_mib": round(peak / 2**20),
           "growth_mib": round((peak - before) / 2**20)}
    if device.type == "cuda":
        row["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    print(json.dumps(row))


def timed(job: str, args: argparse.Namespace, device: torch.device) -> dict:
    model = make_model(device)
    volume = make_input(job, args.slices, args.large)
    for variant in VARIANTS:  # warm-up: allocator, kernels, MONAI's Gaussian map
        segment(model, volume[..., :1], variant, args.batch, device)
    seconds = {v: [] for v in VARIANTS}
    windows = {}
    for round_index in range(args.rounds):
        for variant in VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]:
            model.windows = 0
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            segment(model, volume, variant, args.batch, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[variant].append(time.perf_counter() - start)
            windows[variant] = model.windows
    slices = volume.shape[-1]
    median = {v: statistics.median(s) for v, s in seconds.items()}
    return {"job": job, "shape": list(volume.shape), "rounds": args.rounds,
            "seconds": {v: round(t, 3) for v, t in median.items()},
            "windows": windows,
            "windows_per_s": {v: round(windows[v] / median[v], 2) for v in VARIANTS},
            "slices_per_s": {v: round(slices / median[v], 3) for v in VARIANTS},
            "sliding_time_over_resize": round(median["sliding"] / median["resize"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="image,volume,large")
    parser.add_argument("--slices", type=int, default=100, help="slices of the 512x512 volume")
    parser.add_argument("--large", type=int, default=4096, help="side of the large image")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=Config().inference.batch_size)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--child", nargs=2, metavar=("JOB", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        memory_child(*args.child, args)
        return
    jobs = args.jobs.split(",")
    print(json.dumps({"machine": machine(), "device": args.device, "batch": args.batch,
                      "load_average": os.getloadavg()}), flush=True)
    device = torch.device(args.device)
    for job in [j for j in jobs if j in ("image", "volume")]:
        print(json.dumps(timed(job, args, device)), flush=True)
    for job in jobs:
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--child", job, variant,
                                  "--slices", str(args.slices), "--large", str(args.large),
                                  "--batch", str(args.batch), "--device", args.device],
                                 capture_output=True, text=True, check=True).stdout
            print(out.strip().splitlines()[-1], flush=True)
    print(json.dumps({"load_average_after": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
