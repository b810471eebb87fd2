"""Benchmark: test.py's per-volume work (read, infer, metrics, write) against the original procedure.

Usage: python benchmarks/bench_test.py [--shape 512 512 100] [--rounds 3] [--batch-size 16]

One phantom CT of ``--shape`` is written in the Synapse raw layout (HU image, raw BTCV labels
of eight organs, anisotropic spacing). Both variants run the default Swin-Unet (27 M
parameters, 224 x 224, random weights) on every slice, in the same process, rounds
alternating, and report medians and ratios as JSON lines:

  original     the published test loop: read the NIfTI pair, window the CT, per slice a cubic
               scipy zoom to 224, batch-1 inference, argmax, nearest zoom back; medpy Dice and
               HD95 per organ (TransUNet's empty-mask rules); the prediction written as NIfTI
  ours_mm      swin_unet.evaluation.evaluate_volumes on the data set read by datasets/ (what
               ``test.py --volume --save-nifti`` does per volume), default mm metric mode
  ours_paper   the same with --metric-mode paper (the original's resizing and metric rules)
  ours_mm_bf16 ours_mm with --amp: bf16 autocast, on CPUs with native bf16 (AMX, AVX-512 BF16);
               on other CPUs a line says it was skipped (--amp runs float32 there)

An untrained network predicts noise, which no trained model does and which would make the
metrics' cost unrepresentative (every voxel a surface voxel). So the network used by both
variants adds to the Swin-Unet's logits an intensity prior (each phantom organ has its own
HU level): predictions take the organs' shapes with errors along their borders, while the
compute is the full default model's plus one element-wise operation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_metrics import NUM_CLASSES, phantom  # noqa: E402
from benchmarks.common import run_alternating  # noqa: E402
from datasets import open_dataset  # noqa: E402
from swin_unet import SwinUnet  # noqa: E402
from swin_unet.config import Config, DataConfig, metric_mode_settings  # noqa: E402
from swin_unet.evaluation import InferenceOptions, LoadedModel, evaluate_volumes  # noqa: E402
from swin_unet.precision import cpu_bf16_support  # noqa: E402

CLASS_TO_RAW = {1: 8, 2: 4, 3: 3, 4: 2, 5: 6, 6: 11, 7: 1, 8: 7}  # inverse of the 8-organ map
WINDOW = (-125.0, 275.0)
SPACING = (0.76, 0.76, 3.0)


def class_hu(index: int) -> float:
    """HU of class ``index``: evenly spaced levels inside the CT window."""
    return WINDOW[0] + (WINDOW[1] - WINDOW[0]) * (index + 0.5) / NUM_CLASSES


class PriorSwinUnet(nn.Module):
    """The default Swin-Unet plus a per-class intensity prior (see the module docstring).

    The prior adds ``gain`` to the logit of the class whose HU level is nearest to the pixel:
    confident, piecewise-constant logits like a trained network's (a smooth prior such as a
    negative squared distance would let resized logits favour a third class between two).
    The untrained network's logits (standard deviation about 0.6) perturb the borders.
    """

    def __init__(self, gain: float = 4.0):
        super().__init__()
        self.swin = SwinUnet(num_classes=NUM_CLASSES)
        self.in_chans = 1
        levels = torch.tensor([(c + 0.5) / NUM_CLASSES for c in range(NUM_CLASSES)])
        self.register_buffer("levels", levels.view(1, -1, 1, 1))
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nearest = (x - self.levels).abs().argmin(dim=1, keepdim=True)
        prior = torch.zeros((x.shape[0], NUM_CLASSES) + x.shape[2:], device=x.device)
        return self.swin(x) + prior.scatter_(1, nearest, self.gain)


def write_case(root: Path, shape: tuple[int, int, int]) -> Path:
    """img0001/label0001 in the Synapse raw layout; returns the data set root."""
    label, _ = phantom(shape)
    hu = np.vectorize(class_hu)(np.arange(NUM_CLASSES))[label]
    hu += np.random.default_rng(0).normal(0, 6.0, size=shape)
    raw = np.zeros_like(label)
    for index, raw_value in CLASS_TO_RAW.items():
        raw[label == index] = raw_value
    affine = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
    folder = root / "RawData" / "Training"
    (folder / "img").mkdir(parents=True)
    (folder / "label").mkdir(parents=True)
    nib.save(nib.Nifti1Image(hu.astype(np.int16), affine), str(folder / "img/img0001.nii.gz"))
    nib.save(nib.Nifti1Image(raw, affine), str(folder / "label/label0001.nii.gz"))
    return root


def original_procedure(model: nn.Module, root: Path, out: Path) -> list:
    """The published per-volume test loop, as the original code runs it on one GPU."""
    device = next(model.parameters()).device
    from medpy.metric import binary
    folder = root / "RawData" / "Training"
    image_file = nib.load(str(folder / "img/img0001.nii.gz"))
    image = image_file.get_fdata(dtype=np.float32)
    raw = np.asanyarray(nib.load(str(folder / "label/label0001.nii.gz")).dataobj)
    label = np.zeros_like(raw)
    for index, raw_value in CLASS_TO_RAW.items():
        label[raw == raw_value] = index
    image = (np.clip(image, *WINDOW) - WINDOW[0]) / (WINDOW[1] - WINDOW[0])
    prediction = np.zeros_like(label)
    x, y = image.shape[:2]
    with torch.no_grad():
        for z in range(image.shape[2]):
            small = ndimage.zoom(image[:, :, z], (224 / x, 224 / y), order=3)
            logits = model(torch.from_numpy(small).float()[None, None].to(device))
            out_slice = torch.argmax(torch.softmax(logits, dim=1), dim=1)[0].cpu().numpy()
            prediction[:, :, z] = ndimage.zoom(out_slice, (x / 224, y / 224), order=0)
    scores = []
    for index in range(1, NUM_CLASSES):
        p, g = prediction == index, label == index
        if p.sum() > 0 and g.sum() > 0:
            scores.append((binary.dc(p, g), binary.hd95(p, g)))
        elif p.sum() > 0:
            scores.append((1.0, 0.0))
        else:
            scores.append((0.0, 0.0))
    nib.save(nib.Nifti1Image(prediction.astype(np.float32), image_file.affine),
             str(out / "original_case0001.nii.gz"))
    return scores


def ours(loaded: LoadedModel, root: Path, out: Path, mode: str, batch_size: int,
         amp: bool = False) -> list:
    """What test.py does per volume: data set read, inference, metrics, NIfTI written."""
    source = open_dataset("synapse", DataConfig(root=str(root), test_cases=["1"]))
    options = InferenceOptions(batch_size=batch_size, **metric_mode_settings(mode),
                               progress=False, amp=amp)
    result = evaluate_volumes(loaded, source.volumes("test"), out / f"{mode}{amp:d}", options,
                              save_nifti=True)
    return [(r["dice"], r["hd95"]) for r in result.per_case["case0001"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 100))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = PriorSwinUnet().eval().to(device)
    config = Config(dataset="synapse")
    loaded = LoadedModel(model, config, [f"class_{i}" for i in range(1, NUM_CLASSES)],
                         "project", Path("<random weights>"))
    with tempfile.TemporaryDirectory() as tmp:
        root = write_case(Path(tmp) / "data", tuple(args.shape))
        out = Path(tmp) / "out"
        out.mkdir()
        variants = {
            "original": lambda: original_procedure(model, root, out),
            "ours_mm": lambda: ours(loaded, root, out, "mm", args.batch_size),
            "ours_paper": lambda: ours(loaded, root, out, "paper", args.batch_size),
        }
        if device.type == "cuda" or cpu_bf16_support():
            # test.py --amp: bf16 autocast on this GPU or CPU (swin_unet.precision).
            variants["ours_mm_bf16"] = lambda: ours(loaded, root, out, "mm", args.batch_size,
                                                    amp=True)
        else:
            print(json.dumps({"bench": "test_volume", "variant": "ours_mm_bf16",
                              "skipped": "this CPU has no native bf16 (AMX or AVX-512 BF16): "
                                         "test.py --amp runs float32 here"}), flush=True)
        times, values = run_alternating(variants, args.rounds)
    base = statistics.median(times["original"])
    for name in variants:
        median = statistics.median(times[name])
        # Each round's variants ran back to back: their ratio is robust to a load that drifts
        # between rounds on a shared machine.
        ratios = [b / t for b, t in zip(times["original"], times[name])]
        dice = [d for d, _ in values[name] if d is not None and not np.isnan(d)]
        print(json.dumps({
            "bench": "test_volume", "variant": name, "shape": list(args.shape),
            "device": args.device,
            "rounds": args.rounds, "threads": torch.get_num_threads(),
            "median_s": round(median, 2), "times_s": [round(t, 2) for t in times[name]],
            "speedup_vs_original": round(base / median, 2),
            "round_speedups": [round(r, 2) for r in ratios],
            "median_round_speedup": round(statistics.median(ratios), 2),
            "mean_dice": round(float(np.mean(dice)), 4) if dice else None,
        }))


if __name__ == "__main__":
    main()
