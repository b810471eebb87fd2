"""Training throughput of the default 224 model: slices/s and peak memory per precision variant.

Prints JSON lines: the environment, one line per variant (slices/s from the median over
rounds, process CPU time beside it), the speed-up of each variant over the first, and the
peak memory of one training step per variant (each in its own process for a clean peak).

    python benchmarks/bench_train.py                       # CPU: fp32 and --amp (bf16 on
                                                           # CPUs with native bf16)
    python benchmarks/bench_train.py --device cuda         # fp32 explicit attention (the
                                                           # baseline), fp32 SDPA, bf16, fp16
    python benchmarks/bench_train.py --device cuda --variants fp32-explicit,amp,amp-compile

A step is the training loop's own (swin_unet.training.Trainer): forward under autocast, the
published 0.4 CE + 0.6 Dice loss, backward through the GradScaler, SGD, the poly schedule;
the batch is copied to the device each step as the DataLoader's would be. Rounds alternate
the variants so that drifts of a shared machine hit all of them alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Before torch loads (as train.py): passive OpenMP waits on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swin_unet import build_model  # noqa: E402
from swin_unet.config import Config  # noqa: E402
from swin_unet.precision import cpu_bf16_support  # noqa: E402
from swin_unet.training import Trainer  # noqa: E402
from swin_unet.training.distributed import DistributedContext  # noqa: E402

# name: (model.attention, train.amp, train.compile, train.amp_dtype). "amp" is what --amp
# runs on the device (bf16 on CUDA and on CPUs with native bf16, float32 on other CPUs);
# "bf16" and "fp16" force that autocast dtype (bf16 on a CPU without it is emulated, slow).
VARIANTS = {
    "fp32-explicit": ("explicit", False, False, "auto"),
    "fp32": ("auto", False, False, "auto"),
    "fp32-sdpa": ("sdpa", False, False, "auto"),
    "amp": ("auto", True, False, "auto"),
    "bf16": ("auto", True, False, "bf16"),
    "fp16": ("auto", True, False, "fp16"),
    "amp-compile": ("auto", True, True, "auto"),
}
DEFAULTS = {"cpu": "fp32,amp", "cuda": "fp32-explicit,fp32,bf16,fp16"}


class RandomSlices(torch.utils.data.Dataset):
    """Stands in for the training slices: the Trainer needs a dataset to size its epoch."""

    def __init__(self, count: int, size: int, num_classes: int) -> None:
        self.count, self.size, self.num_classes = count, size, num_classes

    def set_epoch(self, epoch: int) -> None:
        """Nothing varies per epoch here."""

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.randn(1, self.size, self.size),
                "label": torch.randint(0, self.num_classes, (1, self.size, self.size))}


def make_trainer(variant: str, device: torch.device, batch: int, output: Path) -> Trainer:
    """A Trainer on the published Synapse recipe, its model configured as ``variant``."""
    attention, amp, compile_, amp_dtype = VARIANTS[variant]
    config = Config()
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, attention=attention),
        train=dataclasses.replace(config.train, amp=amp, compile=compile_, batch_size=batch,
                                  amp_dtype=amp_dtype),
        data=dataclasses.replace(config.data, num_workers=0))
    torch.manual_seed(0)
    model = build_model(config.model).to(device)
    size = config.model.img_size
    trainer = Trainer(config, model, RandomSlices(batch * 1000, size, config.model.num_classes),
                      None, [f"class{i}" for i in range(1, config.model.num_classes)], output,
                      DistributedContext(device=device))
    trainer.wrap()
    trainer.network.train()
    return trainer


def make_batch(batch: int, size: int, num_classes: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {"image": torch.randn(batch, 1, size, size, generator=generator),
            "label": torch.randint(0, num_classes, (batch, 1, size, size), generator=generator)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status_bytes(field: str):
    """``VmRSS`` / ``VmHWM`` of this process from /proc (None where there is no /proc).

    Not ``ru_maxrss``: Linux carries it over from the parent across fork and exec, so a child
    started by a large parent reports the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident size (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory_child(variant: str, device: torch.device, batch: int) -> None:
    """Print the peak memory of a training step of ``variant`` (own process: a clean peak).

    After a warm-up step (optimiser state allocated), the peak during one more step: CUDA's
    max_memory_allocated, or the CPU process's peak resident size (VmHWM, reset first), and
    its growth over what stays allocated between steps (activations and gradients).
    """
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(variant, device, batch, Path(tmp))
        data = make_batch(batch, 224, 9)
        trainer._step(data)
        sync(device)
        if device.type == "cuda":
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            trainer._step(data)
            sync(device)
            peak = torch.cuda.max_memory_allocated(device)
        else:
            base = _proc_status_bytes("VmRSS")
            peak = None
            if base is not None and _reset_peak_rss():
                trainer._step(data)
                peak = _proc_status_bytes("VmHWM")
    growth = None if peak is None else peak - base
    print(json.dumps({"peak_bytes": peak, "step_growth_bytes": growth}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--variants", help=f"comma-separated, of {', '.join(VARIANTS)} "
                                           f"(default: {DEFAULTS})")
    parser.add_argument("--batch", type=int, help="slices per step (default 8 CPU, 24 CUDA)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=2, help="steps per round and variant")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--peak-memory-child", metavar="VARIANT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda: no CUDA GPU is available")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (24 if device.type == "cuda" else 8)
    if args.peak_memory_child:
        peak_memory_child(args.peak_memory_child, device, batch)
        return
    variants = (args.variants or DEFAULTS[device.type]).split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"error: unknown variant '{unknown[0]}' (known: {', '.join(VARIANTS)})")

    env = {"torch": torch.__version__, "device": args.device, "batch": batch,
           "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
           "load_average_1min": round(os.getloadavg()[0], 2),
           "cpu": platform.processor() or platform.machine(), "rounds": args.rounds,
           "iters": args.iters, "model": "224, embed 96, depths 2-2-2-2, heads 3-6-12-24, window 7",
           "recipe": "SGD 0.05 poly, 0.4 CE + 0.6 Dice"}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    else:
        env["cpu_native_bf16"] = cpu_bf16_support()
    print(json.dumps({"bench": "train", "env": env}), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        trainers = {v: make_trainer(v, device, batch, Path(tmp) / v) for v in variants}
        data = make_batch(batch, 224, 9)
        for trainer in trainers.values():  # warm-up: allocator, kernels, compilation
            trainer._step(data)
            trainer._step(data)
        sync(device)
        wall = {v: [] for v in variants}
        cpu = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                sync(device)
                start, start_cpu = time.perf_counter(), time.process_time()
                for _ in range(args.iters):
                    trainers[v]._step(data)
                sync(device)
                wall[v].append((time.perf_counter() - start) / args.iters)
                cpu[v].append((time.process_time() - start_cpu) / args.iters)
        dtypes = {v: str(t.amp_dtype).replace("torch.", "") if t.amp_dtype else "float32"
                  for v, t in trainers.items()}
        del trainers
    medians = {v: statistics.median(wall[v]) for v in variants}
    for v in variants:
        print(json.dumps({"variant": v, "autocast": dtypes[v],
                          "attention": VARIANTS[v][0], "compile": VARIANTS[v][2],
                          "slices_per_s": round(batch / medians[v], 3),
                          "median_step_s": round(medians[v], 4),
                          "median_process_cpu_s": round(statistics.median(cpu[v]), 4),
                          "samples_s": [round(s, 4) for s in wall[v]]}), flush=True)
    for v in variants[1:]:
        print(json.dumps({"ratio": f"{v}/{variants[0]}",
                          "speedup": round(medians[variants[0]] / medians[v], 3)}), flush=True)
    if not args.skip_memory:
        for v in variants:
            out = subprocess.run([sys.executable, __file__, "--device", args.device,
                                  "--threads", str(args.threads), "--batch", str(batch),
                                  "--peak-memory-child", v],
                                 capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            mib = {k: None if result[k] is None else round(result[k] / 2 ** 20, 1)
                   for k in ("peak_bytes", "step_growth_bytes")}
            print(json.dumps({"variant": v, "batch": batch, "peak_MiB": mib["peak_bytes"],
                              "step_growth_MiB": mib["step_growth_bytes"],
                              "measure": "peak resident size during a step (VmHWM)"
                              if device.type == "cpu"
                              else "torch.cuda.max_memory_allocated during a step"}),
                  flush=True)


if __name__ == "__main__":
    main()
