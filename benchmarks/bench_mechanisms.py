"""Each CPU speed mechanism of the model against the straightforward network, end to end.

Two jobs users run, each variant on the same weights and the same inputs, alternating finely
so that a drifting load on a shared machine hits every variant alike:

- ``train``: the phantom demo's training step (configs/phantom.yaml: 96x96 slices, batch 8,
  AdamW, 0.4 CE + 0.6 Dice, swin_unet.training.Trainer's own step); per variant the median
  step time over rounds of ``--steps`` steps.
- ``volume``: ``test.py --volume``'s inference (swin_unet.evaluation.predict_volume, mode mm,
  batch 16) of a 512x512x``--slices`` volume with the default 224 model; the volume is cut in
  chunks of one batch and every variant runs each chunk in turn, so each variant's total is one
  whole volume, median over ``--rounds`` rounds. Then each variant's peak resident memory over a 512x512x``--rss-slices``
  volume, each in its own process (VmHWM after a reset; growth: over the size before the call).

Variants (those that exist in this checkout):
  network   swin_unet.SwinUnet as it is;
  reference the original code (swin_unet/model/reference.py: roll, partition, explicit
            attention with its -100 mask, reverse, roll back);
  textbook  the reference with F.scaled_dot_product_attention and a -inf mask;
  compiled  torch.compile of textbook (its compile time is reported separately).
Other variants switch one mechanism off in the network (see ``mechanism_variants``);
``NAME@T`` runs variant NAME with T torch threads.

The whole comparison runs once per ``--load`` value with that many busy processes in the
background, and at ``--threads`` settings (0: torch's default).

    python benchmarks/bench_mechanisms.py                      # idle, then 2 busy processes
    python benchmarks/bench_mechanisms.py --jobs volume --slices 32 --load 0
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as train.py and test.py

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from swin_unet import SwinUnet  # noqa: E402
from swin_unet.config import Config, load_config  # noqa: E402
from swin_unet.evaluation.inference import predict_volume  # noqa: E402
from swin_unet.model import reference as ref  # noqa: E402
from swin_unet.training import Trainer  # noqa: E402
from swin_unet.training.distributed import DistributedContext  # noqa: E402

from benchmarks.bench_train import RandomSlices, _proc_status_bytes, _reset_peak_rss  # noqa: E402


def machine() -> dict:
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "torch": torch.__version__, "cores": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                           if line.startswith("model name"))
        flags = next(line for line in text.splitlines() if line.startswith("flags")).split()
        info["avx512_amx_flags"] = sorted(f for f in flags if f.startswith(("avx512", "amx")))
        info["avx2"] = "avx2" in flags
    except (OSError, StopIteration):
        pass
    return info


# ----------------------------------------------------------------- the straightforward network
def _sdpa_attention(self, x, mask):
    """RefAttention.forward with F.scaled_dot_product_attention."""
    bw, n, c = x.shape
    heads = self.heads
    q, k, v = self.qkv(x).reshape(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
    bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
    bias = bias.view(n, n, heads).permute(2, 0, 1).unsqueeze(0)  # (1, heads, n, n)
    if mask is not None:
        nw = mask.shape[0]
        # Windows of one image side by side: (B, nW * heads, n, n) against a (1, ...) bias.
        bias = (bias + mask.unsqueeze(1)).reshape(1, nw * heads, n, n)
        q, k, v = (t.reshape(bw // nw, nw * heads, n, -1) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
    return self.proj(out.reshape(bw, heads, n, -1).transpose(1, 2).reshape(bw, n, c))


def textbook(model: torch.nn.Module) -> torch.nn.Module:
    """The reference with SDPA attention and a -inf shift mask (exp(-100) is a slow denormal)."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, ref.RefAttention):
            module.forward = _sdpa_attention.__get__(module)
        if isinstance(module, ref.RefBlock) and module.attn_mask is not None:
            module.attn_mask.masked_fill_(module.attn_mask < 0, float("-inf"))
    return model


class Switched(torch.nn.Module):
    """``model`` run inside ``context()``: a mechanism switched off for its forward."""

    def __init__(self, model: torch.nn.Module, context) -> None:
        super().__init__()
        self.model, self.context = model, context
        self.in_chans = getattr(model, "in_chans", None)

    def forward(self, x):
        with self.context():
            return self.model(x)


def mechanism_variants(network: torch.nn.Module) -> dict:
    """Variants of ``network`` with one CPU mechanism off each, those this checkout has."""
    variants = {}
    try:
        from swin_unet.model import tiling
    except ImportError:
        return variants
    variants["untiled"] = Switched(network, tiling.untiled)
    return variants


def build_variants(config, names: list[str]) -> tuple[dict, dict]:
    """The variants' models (same weights) and the seconds each took to build (compile: first
    call, measured by the caller)."""
    torch.manual_seed(0)
    kwargs = dict(img_size=config.img_size, in_chans=config.in_chans,
                  num_classes=config.num_classes, embed_dim=config.embed_dim,
                  depths=config.depths, num_heads=config.num_heads,
                  window_size=config.window_size, mlp_ratio=config.mlp_ratio,
                  qkv_bias=config.qkv_bias, drop_path_rate=config.drop_path_rate,
                  patch_size=config.patch_size)
    network = SwinUnet(**kwargs, attention=config.attention)
    reference = ref.ReferenceSwinUnet(**kwargs)
    reference.load_state_dict(network.state_dict(), strict=False)
    models = {"network": network, "reference": reference, "textbook": textbook(reference)}
    models.update(mechanism_variants(network))
    models["compiled"] = torch.compile(textbook(reference))
    unknown = [n for n in names if n.split("@")[0] not in models]
    if unknown:
        sys.exit(f"error: unknown or absent variant {unknown[0]} (here: {', '.join(models)})")
    return {n: models[n.split("@")[0]] for n in names}, {}


def threads_of(name: str, default: int) -> int:
    """``network@1``: the variant ``network`` with 1 torch thread."""
    return int(name.split("@")[1]) if "@" in name else default


# ----------------------------------------------------------------- jobs
def train_job(names: list[str], steps: int, rounds: int, threads: int) -> dict:
    config = load_config(REPO / "configs" / "phantom.yaml")
    models, _ = build_variants(config.model, names)
    batch = config.train.batch_size
    size = config.model.img_size
    generator = torch.Generator().manual_seed(0)
    data = {"image": torch.randn(batch, 1, size, size, generator=generator),
            "label": torch.randint(0, config.model.num_classes, (batch, 1, size, size),
                                   generator=generator)}
    trainers, first_step = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            model = copy.deepcopy(model) if name != "compiled" else model
            trainer = Trainer(config, model, RandomSlices(batch * 100, size, 9), None,
                              [f"c{i}" for i in range(1, 9)], Path(tmp) / name,
                              DistributedContext(device=torch.device("cpu")))
            trainer.network.train()
            start = time.perf_counter()
            trainer._step(data)  # warm-up (compile: the compile itself)
            first_step[name] = round(time.perf_counter() - start, 2)
            trainers[name] = trainer
        times = {name: [] for name in names}
        for r in range(rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                torch.set_num_threads(threads_of(name, threads))
                start = time.perf_counter()
                for _ in range(steps):
                    trainers[name]._step(data)
                times[name].append((time.perf_counter() - start) / steps)
    return {"step_s": {n: round(statistics.median(t), 4) for n, t in times.items()},
            "first_step_s": first_step, "round_step_s": times}


def volume_job(names: list[str], slices: int, batch: int, threads: int, rounds: int) -> dict:
    config = Config()
    models, _ = build_variants(config.model, names)
    generator = torch.Generator().manual_seed(0)
    volume = torch.randn(512, 512, slices, generator=generator).numpy()
    first = {}
    for name, model in models.items():  # warm-up on a small chunk (compile: the compile)
        start = time.perf_counter()
        predict_volume(model, volume[..., :2], config.model.img_size, batch_size=batch)
        first[name] = round(time.perf_counter() - start, 2)
    # Each round is one whole volume per variant, chunk by chunk in alternating order.
    totals = {name: [] for name in names}
    for r in range(rounds):
        total = {name: 0.0 for name in names}
        for i, start_slice in enumerate(range(0, slices, batch)):
            chunk = volume[..., start_slice:start_slice + batch]
            for name in (names if (i + r) % 2 == 0 else names[::-1]):
                torch.set_num_threads(threads_of(name, threads))
                start = time.perf_counter()
                predict_volume(models[name], chunk, config.model.img_size, batch_size=batch)
                total[name] += time.perf_counter() - start
        for name in names:
            totals[name].append(total[name])
    return {"volume_s": {n: round(statistics.median(t), 2) for n, t in totals.items()},
            "round_volume_s": {n: [round(v, 2) for v in t] for n, t in totals.items()},
            "warmup_s": first, "shape": [512, 512, slices], "batch": batch}


def rss_child(name: str, slices: int, batch: int) -> None:
    """Print the peak resident size of ``predict_volume`` with variant ``name`` (own process)."""
    config = Config()
    models, _ = build_variants(config.model, [name])
    volume = torch.randn(512, 512, slices, generator=torch.Generator().manual_seed(0)).numpy()
    before = _proc_status_bytes("VmRSS")
    _reset_peak_rss()
    predict_volume(models[name], volume, config.model.img_size, batch_size=batch)
    peak = _proc_status_bytes("VmHWM")
    print(json.dumps({"variant": name, "peak_rss_mib": round(peak / 2**20),
                      "growth_mib": round((peak - before) / 2**20)}))


def peak_rss(names: list[str], slices: int, batch: int, threads: int) -> dict:
    result = {}
    for name in names:
        if name == "compiled" or "@" in name:
            continue
        out = subprocess.run([sys.executable, __file__, "--rss-child", name, "--slices",
                              str(slices), "--batch", str(batch), "--threads", str(threads)],
                             capture_output=True, text=True, check=True).stdout
        line = json.loads(out.strip().splitlines()[-1])
        result[name] = {"peak_mib": line["peak_rss_mib"], "growth_mib": line["growth_mib"]}
    return result


def ratios(times: dict, base: str) -> dict:
    return {name: round(times[base] / t, 3) for name, t in times.items() if name != base}


def busy(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="train,volume")
    parser.add_argument("--variants",
                        default="network,untiled,reference,textbook")
    parser.add_argument("--compile", action="store_true", help="add the compiled textbook")
    parser.add_argument("--load", default="0,2", help="busy background processes per phase")
    parser.add_argument("--threads", default="0", help="torch threads to compare (0: default)")
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--load-slices", type=int, default=32, help="slices under load")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--rss-slices", type=int, default=32, help="0: no peak-memory runs")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        torch.set_num_threads(int(args.threads) or torch.get_num_threads())
        rss_child(args.rss_child, args.slices, args.batch)
        return
    names = args.variants.split(",") + (["compiled"] if args.compile else [])
    default_threads = torch.get_num_threads()
    print(json.dumps({"bench": "mechanisms", "machine": machine()}), flush=True)
    for load in (int(v) for v in args.load.split(",")):
        workers = busy(load)
        try:
            for threads in (int(v) or default_threads for v in args.threads.split(",")):
                torch.set_num_threads(threads)
                for job in args.jobs.split(","):
                    start_load = os.getloadavg()[0]
                    if job == "train":
                        result = train_job(names, args.steps, args.rounds, threads)
                        result["speedup_vs_textbook"] = ratios(result["step_s"], "textbook")
                        result["network_vs"] = {n: round(t / result["step_s"]["network"], 3)
                                                for n, t in result["step_s"].items()}
                    else:
                        slices = args.slices if load == 0 else args.load_slices
                        result = volume_job(names, slices, args.batch, threads, args.rounds)
                        result["speedup_vs_textbook"] = ratios(result["volume_s"], "textbook")
                        result["network_vs"] = {n: round(t / result["volume_s"]["network"], 3)
                                                for n, t in result["volume_s"].items()}
                    print(json.dumps({"job": job, "busy_processes": load, "threads": threads,
                                      "load_average_1min": [round(start_load, 2),
                                                            round(os.getloadavg()[0], 2)],
                                      **result}), flush=True)
            if load == 0 and args.rss_slices and "volume" in args.jobs:
                print(json.dumps({"job": "volume-peak-rss", "shape": [512, 512, args.rss_slices],
                                  "batch": args.batch, **{"peak_rss": peak_rss(
                                      names, args.rss_slices, args.batch, default_threads)}}),
                      flush=True)
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()


if __name__ == "__main__":
    main()
