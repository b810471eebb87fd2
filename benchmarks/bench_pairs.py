"""Paired A/B steps of one model on the CPU.

Prints JSON lines:
  - ``steps``: paired steps of one default 224 model (training with SGD, or an evaluation
    forward), A and B in alternating order; the median of the per-pair ratios B / A is the
    speed-up of A. Pairs of one model are steadier than separate runs on a machine whose speed
    drifts. ``--pair tiles`` (evaluation): A tiled, B whole-batch (``tiling.untiled()``).
    ``--pair attention``: A explicit, B SDPA (``model.attention``).

    python benchmarks/bench_pairs.py --task eval --batch 8 --pair attention
    python benchmarks/bench_pairs.py --task eval --batch 16 --pair tiles
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as train.py (see bench_model.py)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swin_unet import SwinUnet  # noqa: E402
from swin_unet.model import tiling  # noqa: E402


def paired_steps(task: str, batch: int, pair: str, pairs: int) -> dict:
    torch.manual_seed(0)
    model = SwinUnet(img_size=224, in_chans=1, num_classes=9, drop_path_rate=0.1)
    model.train(task == "train")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 1, 224, 224)
    target = torch.randint(0, 9, (batch, 224, 224))

    def step(a: bool) -> float:
        if pair == "attention":
            model.attention = "explicit" if a else "sdpa"
        start = time.perf_counter()
        with (tiling.untiled() if pair == "tiles" and not a else contextlib.nullcontext()):
            if task == "train":
                loss = F.cross_entropy(model(x), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            else:
                with torch.no_grad():
                    model(x)
        return time.perf_counter() - start

    for a in (True, False):
        step(a)
    times = {True: [], False: []}
    for i in range(pairs):
        for a in ((True, False) if i % 2 else (False, True)):
            times[a].append(step(a))
    ratios = [b / a for a, b in zip(times[True], times[False])]
    names = {"tiles": ("tiled", "whole"), "attention": ("explicit", "sdpa")}[pair]
    return {"task": task, "batch": batch, f"{names[0]}_s": round(statistics.median(times[True]), 3),
            f"{names[1]}_s": round(statistics.median(times[False]), 3),
            f"speedup_{names[0]}_median_of_pairs": round(statistics.median(ratios), 3),
            "pair_ratios": [round(r, 3) for r in ratios]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("train", "eval"), default="train")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--pair", choices=("tiles", "attention"), default="attention")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=12, help="paired steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps({"bench": "pairs", "torch": torch.__version__, "threads": args.threads,
                      "load_average_1min": round(os.getloadavg()[0], 2)}), flush=True)
    steps = paired_steps(args.task, args.batch, args.pair, args.pairs)
    print(json.dumps({"steps": steps, "pair": args.pair}), flush=True)


if __name__ == "__main__":
    main()
