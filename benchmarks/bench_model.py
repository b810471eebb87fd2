"""Model speed: the fast path against the straightforward design, same weights, same run.

Prints JSON lines: one per (task, variant) with images/s (median over rounds), then the ratio
fast / reference per task, then parameters and GFLOP per image, the device's float32 2048x2048
matmul rate and each (task, variant)'s model FLOP rate as a fraction of it, and peak memory.

    python benchmarks/bench_model.py                  # CPU, 2 threads, fp32 (+ bf16 on CPUs
                                                      # with AMX / AVX-512 BF16), 5 rounds
    python benchmarks/bench_model.py --device cuda --variants fast-sdpa,fast-explicit,reference
                                                      # fp32 and bf16 autocast, SDPA

Rounds alternate the variants so that drifts of a shared machine hit both alike. Speed-ups
are ratios of wall-clock medians; the process CPU time is printed beside them because on a
loaded 2-core machine threads that wait for each other inflate wall time (compare both).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Before torch loads: on a shared machine, OpenMP threads that spin at barriers for a descheduled
# sibling turn contention into 10x slowdowns of small parallel ops (train.py does the same).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swin_unet.model.reference import ReferenceSwinUnet  # noqa: E402
from swin_unet import SwinUnet  # noqa: E402
from swin_unet.model.tiling import untiled  # noqa: E402
from swin_unet.precision import cpu_bf16_support  # noqa: E402

MODEL = dict(img_size=224, in_chans=1, num_classes=9, embed_dim=96, depths=(2, 2, 2, 2),
             num_heads=(3, 6, 12, 24), window_size=7, drop_path_rate=0.1)


class Untiled(torch.nn.Module):
    """A model run with :func:`untiled`: whole-batch on the CPU too (the path CUDA takes)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with untiled():
            return self.model(x)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.model if isinstance(model, Untiled) else model


def build(variant: str, device: torch.device) -> torch.nn.Module:
    """'fast' (this project, attention chosen by device), 'fast-explicit', 'fast-sdpa',
    'fast-untiled' (no CPU tiles: whole blocks and final expansion in inference),
    'fast-checkpointed' (gradient checkpointing per stage), or 'reference' (roll + partition +
    explicit attention + full-resolution rearrange)."""
    torch.manual_seed(0)
    if variant == "reference":
        model = ReferenceSwinUnet(**{k: v for k, v in MODEL.items()})
    elif variant == "fast-checkpointed":
        model = SwinUnet(**MODEL, grad_checkpoint=True)
    elif variant == "fast-untiled":
        model = Untiled(SwinUnet(**MODEL))
    else:
        attention = {"fast": "auto", "fast-explicit": "explicit", "fast-sdpa": "sdpa"}[variant]
        model = SwinUnet(**MODEL, attention=attention)
    return model.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_task(task: str, model: torch.nn.Module, device: torch.device, batch: int,
              dtype: torch.dtype | None):
    """A closure running one iteration of ``task`` ('eval' or 'train') on ``model``."""
    x = torch.randn(batch, 1, 224, 224, device=device)
    target = torch.randint(0, 9, (batch, 224, 224), device=device)
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                else torch.autocast(device.type, enabled=False))
    if task == "eval":
        model.eval()

        def run():
            with torch.no_grad(), autocast:
                model(x)
        return run
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def run():
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return run


def time_tasks(variants, tasks, device, rounds, iters, dtype):
    """Median seconds per iteration for each (task, variant), rounds alternating variants."""
    models = {v: build(v, device) for v in variants}
    # Same weights in every variant (names are shared; the reference keeps extra buffers).
    state = unwrap(models[variants[0]]).state_dict()
    for model in models.values():
        unwrap(model).load_state_dict(state, strict=False)
    results = {}
    for task, batch in tasks:
        runs = {v: make_task(task, m, device, batch, dtype) for v, m in models.items()}
        for run in runs.values():  # warm-up
            run()
        samples = {v: [] for v in variants}
        cpu = {v: [] for v in variants}
        for _ in range(rounds):
            for v in variants:
                sync(device)
                start, start_cpu = time.perf_counter(), time.process_time()
                for _ in range(iters):
                    runs[v]()
                sync(device)
                samples[v].append((time.perf_counter() - start) / iters)
                cpu[v].append((time.process_time() - start_cpu) / iters)
        for v in variants:
            results[(task, batch, v)] = (statistics.median(samples[v]), samples[v],
                                         statistics.median(cpu[v]))
    return results


def flops_per_image(device: torch.device) -> tuple[float, float]:
    from torch.utils.flop_counter import FlopCounterMode
    model = build("fast-explicit", device).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), untiled(), counter:
        model(torch.randn(1, 1, 224, 224, device=device))
    params = sum(p.numel() for p in model.parameters())
    return params, counter.get_total_flops()


def matmul_gflops(device: torch.device, n: int = 2048, rounds: int = 5) -> float:
    """The best of ``rounds`` float32 (n x n) @ (n x n) products, in GFLOP/s."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def peak_memory_child(variant: str, device_name: str, batch: int) -> None:
    """Run one training step and print the peak memory it added (own process: clean peak)."""
    device = torch.device(device_name)
    model = build(variant, device)
    step = make_task("train", model, device, batch, None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        # getrusage's ru_maxrss would carry the parent's peak over fork + exec; the kernel's
        # own high-water mark of this process, reset just before the step, does not.
        base = _proc_status_bytes("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
        step()
        peak = _proc_status_bytes("VmHWM") - base
    print(json.dumps({"peak_bytes": peak}))


def _proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=2, help="iterations per round and variant")
    parser.add_argument("--variants", default="fast,reference")
    parser.add_argument("--tasks", default="eval:1,eval:8,train:8")
    parser.add_argument("--precisions", default="auto",
                        help="fp32,bf16 or fp32; auto: bf16 beside fp32 on CUDA and on CPUs "
                             "with native bf16")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--peak-memory-child", nargs=2, metavar=("VARIANT", "BATCH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.peak_memory_child:
        peak_memory_child(args.peak_memory_child[0], args.device, int(args.peak_memory_child[1]))
        return

    device = torch.device(args.device)
    variants = args.variants.split(",")
    tasks = [(t.split(":")[0], int(t.split(":")[1])) for t in args.tasks.split(",")]
    env = {"torch": torch.__version__, "device": args.device, "threads": args.threads,
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
           "load_average_1min": round(os.getloadavg()[0], 2),
           "cpu": platform.processor() or platform.machine(), "rounds": args.rounds,
           "iters": args.iters}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    else:
        env["cpu_native_bf16"] = cpu_bf16_support()
    print(json.dumps({"bench": "model", "env": env}), flush=True)

    precisions = [("fp32", None)]
    wanted = args.precisions.split(",")
    native = device.type == "cuda" or cpu_bf16_support() is not None
    if "bf16" in wanted or (args.precisions == "auto" and native):
        precisions.append(("bf16", torch.bfloat16))
    elif args.precisions == "auto":
        # Emulated bf16 (no AMX / AVX-512 BF16) runs matmuls far slower than fp32: a row
        # that says so instead of minutes of timing (--precisions fp32,bf16 forces it).
        print(json.dumps({"precision": "bf16", "skipped": "this CPU has no native bf16 "
                          "(AMX or AVX-512 BF16); --precisions fp32,bf16 forces the row"}),
              flush=True)
    for precision, dtype in precisions:
        results = time_tasks(variants, tasks, device, args.rounds, args.iters, dtype)
        for (task, batch, variant), (median, samples, cpu_median) in results.items():
            print(json.dumps({"task": task, "batch": batch, "variant": variant,
                              "precision": precision, "images_per_s": round(batch / median, 3),
                              "median_s": round(median, 4),
                              "median_process_cpu_s": round(cpu_median, 4),
                              "samples_s": [round(s, 4) for s in samples]}), flush=True)
        for task, batch in tasks:
            base = results[(task, batch, variants[-1])][0]
            for variant in variants[:-1]:
                print(json.dumps({"task": task, "batch": batch, "precision": precision,
                                  "ratio": f"{variant}/{variants[-1]}",
                                  "speedup": round(base / results[(task, batch, variant)][0], 3)}),
                      flush=True)

    params, flops = flops_per_image(device)
    print(json.dumps({"params_M": round(params / 1e6, 3), "GFLOP_per_image": round(flops / 1e9, 3),
                      "GMAC_per_image": round(flops / 2e9, 3)}), flush=True)
    # How close the model runs to this device's float32 matmul rate (the last precision's
    # rows; a training step counts as 3 forward passes).
    peak = matmul_gflops(device)
    print(json.dumps({"matmul_2048_fp32_GFLOPs": round(peak, 1)}), flush=True)
    for (task, batch, variant), (median, _, _) in results.items():
        achieved = flops * batch * (3 if task == "train" else 1) / median / 1e9
        print(json.dumps({"task": task, "batch": batch, "variant": variant,
                          "precision": precision, "GFLOPs": round(achieved, 1),
                          "fraction_of_fp32_matmul": round(achieved / peak, 3)}), flush=True)
    if not args.skip_memory:
        for variant in variants + ["fast-checkpointed"]:
            out = subprocess.run([sys.executable, __file__, "--device", args.device, "--threads",
                                  str(args.threads), "--peak-memory-child", variant, "8"],
                                 capture_output=True, text=True, check=True)
            peak = json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]
            print(json.dumps({"task": "train", "batch": 8, "variant": variant,
                              "peak_memory_MiB": round(peak / 2**20, 1),
                              "measure": "peak RSS growth (VmHWM)" if device.type == "cpu"
                              else "max_memory_allocated growth"}), flush=True)


if __name__ == "__main__":
    main()
