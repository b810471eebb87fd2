"""The final 4x expansion in training on the CPU: folded (tiles, hand-written backward) against
unfolded (expansion, LayerNorm, 1x1 projection through autograd, the path CUDA takes).

Prints JSON lines:
  - ``head``: the final expansion alone, forward and backward, on the 224 model's (B, 3136, 96)
    decoder output with 9 classes, milliseconds (median of alternating rounds);
  - ``train_step``: paired training steps (SGD) of one default 224 model, the head folded in
    one and unfolded in the other (``tiling.untiled()``, which only changes the head in
    training), in alternating order; the median of the per-pair ratios is the speed-up. Pairs
    of one model are steadier than separate runs on a machine whose speed drifts.

    python benchmarks/bench_head.py [--batch 4] [--pairs 12] [--rounds 9]
"""

from __future__ import annotations

import argparse
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
from swin_unet.model.layers import FinalPatchExpand  # noqa: E402


def time_head(batch: int, rounds: int) -> dict:
    torch.manual_seed(0)
    head = FinalPatchExpand(96)
    weight = torch.randn(9, 96, requires_grad=True)
    x = torch.randn(batch, 56 * 56, 96, requires_grad=True)
    grad = torch.randn(batch, 56 * 56 * 16, 9)

    def unfolded():
        sub = head.norm(head.expand(x).view(batch, -1, 96))
        F.linear(sub, weight).backward(grad)

    def folded():
        tiling.expansion_logits_tiled(head, x, weight).backward(grad)

    variants = {"folded": folded, "unfolded": unfolded}
    samples = {name: [] for name in variants}
    for fn in variants.values():
        fn()
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(s) * 1e3, 1) for name, s in samples.items()}


def paired_steps(batch: int, pairs: int) -> dict:
    torch.manual_seed(0)
    model = SwinUnet(img_size=224, in_chans=1, num_classes=9, drop_path_rate=0.1).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 1, 224, 224)
    target = torch.randint(0, 9, (batch, 224, 224))

    def step(folded: bool) -> float:
        start = time.perf_counter()
        with (torch.enable_grad() if folded else tiling.untiled()):
            loss = F.cross_entropy(model(x), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    for folded in (True, False):
        step(folded)
    times = {True: [], False: []}
    for i in range(pairs):
        for folded in ((True, False) if i % 2 else (False, True)):
            times[folded].append(step(folded))
    ratios = [u / f for f, u in zip(times[True], times[False])]
    return {"folded_s": round(statistics.median(times[True]), 3),
            "unfolded_s": round(statistics.median(times[False]), 3),
            "speedup_median_of_pairs": round(statistics.median(ratios), 3),
            "pair_ratios": [round(r, 3) for r in ratios]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9, help="rounds of the head alone")
    parser.add_argument("--pairs", type=int, default=12, help="paired training steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps({"bench": "head", "torch": torch.__version__, "threads": args.threads,
                      "batch": args.batch, "load_average_1min": round(os.getloadavg()[0], 2)}),
          flush=True)
    print(json.dumps({"head_forward_backward_ms": time_head(args.batch, args.rounds)}),
          flush=True)
    print(json.dumps({"train_step": paired_steps(args.batch, args.pairs)}), flush=True)


if __name__ == "__main__":
    main()
