"""Model presets at full size: parameters, GFLOP per image, ImageNet loading, 512 training memory.

Prints JSON lines:
- per preset: parameters and GFLOP of one image at the preset's size (in_chans 3, 9 classes,
  FLOPs counted by ``swin_unet.explain.trace_model``: ``torch.utils.flop_counter``, 2 per
  multiply-add, forward pass);
- per (ImageNet layout, model): what ``load_pretrained`` did with a full-size checkpoint of
  random tensors in the layout of Microsoft's file (``swin_unet/model/reference.py``), and how
  many encoder tensors of the model it left unfilled (the goal: none);
- the peak RSS of one batch-8 SGD training step of the 512/16 tiny-lite model with gradient
  checkpointing on the CPU (a child process; VmHWM reset just before the step).

    python benchmarks/bench_presets.py                   # all three (minutes on 2 cores)
    python benchmarks/bench_presets.py --skip-load --skip-memory
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_model import _proc_status_bytes  # noqa: E402
from swin_unet.model.reference import imagenet_checkpoint  # noqa: E402
from swin_unet import SwinUnet, load_pretrained  # noqa: E402
from swin_unet.explain import trace_model  # noqa: E402
from swin_unet.model.presets import PRESETS  # noqa: E402

T_HEADS, B_HEADS = (3, 6, 12, 24), (4, 8, 16, 32)
# (file, depths, heads, embed, window, input size, head classes), as FACTS.md lists them.
LAYOUTS = [
    ("swin_tiny_patch4_window7_224", (2, 2, 6, 2), T_HEADS, 96, 7, 224, 1000),
    ("swin_base_patch4_window12_384_22k", (2, 2, 18, 2), B_HEADS, 128, 12, 384, 21841),
]
# (layout, model description, model arguments): the sizes a full-size load is checked at.
LOADS = [
    ("swin_tiny_patch4_window7_224", "tiny_lite at 256/8", dict(img_size=256, window_size=8)),
    ("swin_tiny_patch4_window7_224", "swin_t at 512/16",
     dict(img_size=512, window_size=16, depths=(2, 2, 6, 2))),
    ("swin_base_patch4_window12_384_22k", "swin_b_384",
     dict(img_size=384, window_size=12, embed_dim=128, depths=(2, 2, 18, 2), num_heads=B_HEADS)),
]
MEMORY_MODEL = dict(img_size=512, window_size=16, in_chans=1, num_classes=9, grad_checkpoint=True)


def preset_costs() -> None:
    """Each preset, then swin_s and swin_b with a 2-block decoder at every level."""
    variants = [(name, preset, preset.decoder_depths) for name, preset in PRESETS.items()]
    variants += [(name, PRESETS[name], (2, 2, 2)) for name in ("swin_s", "swin_b")]
    for name, preset, decoder_depths in variants:
        torch.manual_seed(0)
        model = SwinUnet(in_chans=3, num_classes=9, img_size=preset.img_size,
                         window_size=preset.window_size, embed_dim=preset.embed_dim,
                         depths=preset.depths, num_heads=preset.num_heads,
                         decoder_depths=decoder_depths)
        start = time.perf_counter()
        flops = trace_model(model).total_flops
        print(json.dumps({"preset": name, "img_size": preset.img_size,
                          "window": preset.window_size, "decoder_depths": decoder_depths,
                          "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                          "GFLOP_per_image": round(flops / 1e9, 2),
                          "count_s": round(time.perf_counter() - start, 1)}), flush=True)


def loads(folder: Path) -> None:
    for file, depths, heads, embed, window, size, classes in LAYOUTS:
        path = folder / f"{file}.pth"
        torch.save(imagenet_checkpoint(depths=depths, num_heads=heads, embed_dim=embed,
                                       window=window, img_size=size, num_classes=classes), path)
        for layout, label, kwargs in LOADS:
            if layout != file:
                continue
            model = SwinUnet(in_chans=1, num_classes=9, **kwargs)
            report = load_pretrained(model, path)
            encoder = [k for k in model.state_dict()
                       if k.startswith(("patch_embed.", "layers.", "norm."))]
            print(json.dumps({
                "checkpoint": file, "model": label, "loaded": len(report.loaded),
                "converted": len(report.converted), "interpolated": len(report.interpolated),
                "skipped": len(report.skipped), "missing": len(report.missing),
                "encoder_tensors_unfilled": len(set(encoder) & set(report.missing)),
                "decoder_blocks_unfilled": sum(".blocks." in k for k in report.missing)}),
                flush=True)
        path.unlink()


def memory_child() -> None:
    """One batch-8 training step of MEMORY_MODEL; print peak RSS and its growth (bytes)."""
    torch.manual_seed(0)
    model = SwinUnet(**MEMORY_MODEL).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    h, w = model.img_size
    x = torch.randn(8, 1, h, w)
    target = torch.randint(0, 9, (8, h, w))
    base = _proc_status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    print(json.dumps({"peak_bytes": _proc_status_bytes("VmHWM"), "base_bytes": base,
                      "step_s": round(time.perf_counter() - start, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-costs", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child()
        return
    print(json.dumps({"bench": "presets", "torch": torch.__version__, "threads": args.threads,
                      "load_average_1min": round(os.getloadavg()[0], 2)}), flush=True)
    if not args.skip_costs:
        preset_costs()
    if not args.skip_load:
        with tempfile.TemporaryDirectory() as folder:
            loads(Path(folder))
    if not args.skip_memory:
        out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads),
                              "--memory-child"], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps({"task": "train", "batch": 8, "model": MEMORY_MODEL,
                          "peak_rss_GiB": round(result["peak_bytes"] / 2**30, 2),
                          "peak_growth_GiB": round((result["peak_bytes"] - result["base_bytes"])
                                                   / 2**30, 2),
                          "step_s": result["step_s"], "measure": "VmHWM of the process"}),
              flush=True)


if __name__ == "__main__":
    main()
