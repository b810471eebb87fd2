"""Memory and speed of the on-disk slice cache against the in-memory cache it replaces.

Prints JSON lines:

- ``cache_peak_private_memory``: the peak RssAnon (private memory, sampled every 10 ms from
  /proc/self/status) of training processes (``train.py``, one pass over the training slices,
  tiny model, no validation) on a generated set of 4 volumes and of 60 (``--volumes``), for
  one process and
  for each of 2 torchrun ranks, with the memory-mapped cache (``memmap``) and with the
  in-memory cache every process built before (``memory``). Each run starts with an empty
  cache folder, so the builder's own peak is counted.
- ``cache_preparation``: building the large set's cache, the second run's reuse of it, and the
  in-memory build every run used to pay.
- ``cache_train_slices_per_s``: augmented training batches (DataLoader, batch 24, no workers,
  warm page cache) from the memory map and from the in-memory cache, rounds alternating.

    python benchmarks/bench_cache.py                 # about 10 minutes on a 2-core CPU
    python benchmarks/bench_cache.py --quick         # smaller volumes, fewer runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MIB = 1024 ** 2


def rss_anon() -> int:
    """This process's private resident memory in bytes (anonymous pages)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


def child(out_dir: str, mode: str, train_args: list[str]) -> int:
    """Run train.py in this process, sampling RssAnon; write the peak to OUT_DIR/peak_RANK."""
    peak = {"bytes": rss_anon()}
    stop = threading.Event()

    def sample():
        while not stop.wait(0.01):
            peak["bytes"] = max(peak["bytes"], rss_anon())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    if mode == "memory":
        _use_in_memory_cache()
    import train

    code = train.main(train_args)
    stop.set()
    thread.join()
    peak["bytes"] = max(peak["bytes"], rss_anon())
    rank = os.environ.get("RANK", "0")
    Path(out_dir, f"peak_{rank}.json").write_text(json.dumps(peak))
    return code


def _use_in_memory_cache() -> None:
    """Training as before the on-disk cache: every process reads and keeps every slice."""
    import numpy as np

    from datasets.slices import SliceDataset, build_slice_cache
    from swin_unet.sizes import as_pair
    from swin_unet.training import run

    def in_memory(source, config, context):
        size = as_pair(config.model.img_size)
        cache = build_slice_cache(source.entries("train"), source._cached_volume, size,
                                  np.dtype(config.data.cache_dtype),
                                  workers=config.data.num_workers)
        return SliceDataset(cache, augment=config.data.augment, seed=config.train.seed,
                            augmentation=source.augmentation)

    run.open_train_slices = in_memory


def training_peaks(root: Path, volumes: int, mode: str, processes: int, size: int,
                   work: Path, iters: int = 0) -> list[int]:
    """Peak RssAnon of each process of one training run on the first ``volumes`` cases."""
    out = Path(tempfile.mkdtemp(dir=work))
    cases = "[" + ",".join(str(i) for i in range(1, volumes + 1)) + "]"
    sets = [f"model.img_size={size}", "model.embed_dim=12", "model.depths=[1,1,1,1]",
            "model.num_heads=[1,1,1,1]", "model.window_size=2", "train.epochs=1",
            "train.batch_size=32", "train.base_batch_size=32", "train.val_every=1",
            "data.num_workers=0", "data.augment=false", f"data.train_cases={cases}",
            "data.val_cases=[]", "data.test_cases=[]", f"data.cache_dir={out / 'cache'}"]
    if iters:
        sets.append(f"train.iters_per_epoch={iters}")
    args = ["--dataset", "phantom", "--root", str(root), "--output", str(out / "run"),
            "--device", "cpu", "--quiet"]
    for item in sets:
        args += ["--set", item]
    me = [str(Path(__file__).resolve()), "--child", str(out), mode]
    if processes == 1:
        command = [sys.executable] + me + args
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={processes}"] + me + args
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    peaks = [json.loads((out / f"peak_{rank}.json").read_text())["bytes"]
             for rank in range(processes)]
    shutil.rmtree(out)
    return peaks


def memory(root: Path, counts: tuple[int, int], size: int, work: Path, modes: list[str],
           cache_bytes: int, iters: int = 0) -> None:
    for processes in (1, 2):
        for mode in modes:
            peaks = {n: training_peaks(root, n, mode, processes, size, work, iters)
                     for n in counts}
            small, large = peaks[counts[0]], peaks[counts[1]]
            growth = [b - a for a, b in zip(small, large)]
            print(json.dumps({
                "bench": "cache_peak_private_memory", "cache": mode, "processes": processes,
                "volumes": list(counts), "iters_per_epoch": iters or "one pass",
                "peak_rss_anon_mib": {str(n): [round(p / MIB, 1) for p in peaks[n]]
                                      for n in counts},
                "growth_mib_per_process": [round(g / MIB, 1) for g in growth],
                "cache_mib": round(cache_bytes / MIB, 1),
                "growth_over_cache_size": [round(g / cache_bytes, 3) for g in growth],
                "within_25_percent": all(g <= 0.25 * cache_bytes for g in growth)}),
                flush=True)


def preparation(source, size: int, work: Path) -> int:
    """Build, reuse, and the in-memory build; returns the cache's size in bytes."""
    import numpy as np

    from datasets.slices import build_slice_cache

    source.data_cfg.cache_dir = str(work / "prep_cache")
    start = time.perf_counter()
    built = source.slice_cache(size).open()
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    source.slice_cache(size).open()
    reuse_s = time.perf_counter() - start
    start = time.perf_counter()
    build_slice_cache(source.entries("train"), source._cached_volume, (size, size),
                      np.dtype("float16"), workers=source.data_cfg.num_workers)
    memory_s = time.perf_counter() - start
    print(json.dumps({"bench": "cache_preparation", "volumes": len(built.names),
                      "slices": len(built), "cache_mib": round(built.nbytes / MIB, 1),
                      "first_run_build_s": round(build_s, 2),
                      "second_run_reuse_s": round(reuse_s, 3),
                      "reuse_over_build": round(reuse_s / build_s, 4),
                      "in_memory_build_every_run_s": round(memory_s, 2)}), flush=True)
    return built.nbytes


def throughput(source, size: int, rounds: int, samples: int) -> None:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Subset

    from benchmarks.common import run_alternating
    from datasets.slices import SliceDataset, build_slice_cache

    torch.set_num_threads(1)
    store = source.slice_cache(size).open()
    cache = build_slice_cache(source.entries("train"), source._cached_volume, (size, size),
                              np.dtype("float16"), workers=source.data_cfg.num_workers)
    picks = np.random.default_rng(0).choice(len(store), size=samples, replace=False).tolist()
    datasets = {"memmap": SliceDataset(store, augment=True, seed=1),
                "memory": SliceDataset(cache, augment=True, seed=1)}

    def epoch(dataset):
        def run():
            for _ in DataLoader(Subset(dataset, picks), batch_size=24):
                pass
        return run

    times, _ = run_alternating({k: epoch(v) for k, v in datasets.items()}, rounds)
    rates = {k: samples / statistics.median(v) for k, v in times.items()}
    print(json.dumps({"bench": "cache_train_slices_per_s", "size": size, "batch": 24,
                      "samples": samples, "rounds": rounds,
                      "slices_per_s": {k: round(v, 1) for k, v in rates.items()},
                      "memmap_over_memory": round(rates["memmap"] / rates["memory"], 3)}),
          flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2], sys.argv[3], sys.argv[4:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--modes", default="memmap,memory",
                        help="caches whose training memory is measured (memmap, memory)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--volumes", type=int, default=60, help="volumes of the large set")
    parser.add_argument("--iters", type=int, default=0,
                        help="train.iters_per_epoch of the memory runs (0: one pass over the "
                             "slices, so the larger set also trains more steps)")
    args = parser.parse_args()
    from datasets import generate_phantom, open_dataset
    from swin_unet.config import DataConfig

    shape, size, rounds = ((64, 64, 24), 64, 3) if args.quick else ((128, 128, 48), 128, 5)
    counts = (4, args.volumes)
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        root = generate_phantom(work / "phantom", "abdomen", n_cases=counts[1], shape=shape)
        print(json.dumps({"bench": "cache_dataset", "volumes": counts[1], "shape": shape,
                          "generated_s": round(time.perf_counter() - start, 1)}), flush=True)
        config = DataConfig(root=str(root),
                            train_cases=[str(i) for i in range(1, counts[1] + 1)],
                            val_cases=[], test_cases=[], num_workers=2)
        source = open_dataset("phantom", config)
        cache_bytes = preparation(source, size, work)
        if not args.skip_throughput:
            throughput(source, size, rounds, samples=240 if args.quick else 480)
        if not args.skip_memory:
            memory(root, counts, size, work, args.modes.split(","), cache_bytes, args.iters)


if __name__ == "__main__":
    main()
