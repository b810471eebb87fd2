"""Peak memory of test.py --input on a 512 x 512 x 300 scan: labels only, + probabilities, + TTA.

Prints JSON lines. Each variant runs segment_inputs (read, normalise, reorient, predict,
write) in a fresh process so that its peak resident memory (ru_maxrss) is its own. A tiny
model keeps the run short: the model is not what is measured. The scan is stored with its
first two axes swapped from the model's orientation, so the reoriented views are exercised.

    python benchmarks/bench_probabilities.py              # a few minutes on a 2-core CPU
    python benchmarks/bench_probabilities.py --shape 128 128 40   # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = {"labels": [], "probabilities": ["--save-probabilities"],
            "probabilities_tta": ["--save-probabilities", "--tta"]}
CLASSES = 9


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(workdir: Path, variant: str) -> None:
    """One run in this process; prints its JSON line."""
    import torch

    from swin_unet.evaluation import InferenceOptions, load_model, segment_inputs

    torch.set_num_threads(1)
    loaded = load_model(workdir / "tiny.pth")
    before = _peak_mb()
    start = time.perf_counter()
    flags = VARIANTS[variant]
    options = InferenceOptions(tta="--tta" in flags, progress=False)
    result = segment_inputs(loaded, workdir / "scan.nii", workdir / variant, options,
                            probabilities="--save-probabilities" in flags)
    seconds = time.perf_counter() - start
    sizes = {p.parent.name: round(p.stat().st_size / 2 ** 20, 1) for p in result.written}
    print(json.dumps({"variant": variant, "peak_rss_mb": round(_peak_mb(), 1),
                      "rss_before_scan_mb": round(before, 1), "seconds": round(seconds, 1),
                      "file_mb": sizes}), flush=True)


def prepare(workdir: Path, shape: tuple[int, int, int]) -> None:
    """A tiny model trained nowhere (its labels do not matter here) and one scan."""
    import nibabel as nib
    import torch

    from swin_unet import build_model
    from swin_unet.config import Config, config_to_dict

    config = Config(dataset="synapse")
    config.model.img_size, config.model.embed_dim, config.model.window_size = 64, 12, 2
    config.model.depths, config.model.num_heads = [1, 1, 1, 1], [1, 1, 1, 1]
    config.data.intensity = "ct"
    config.geometry.axcodes = "LPS"
    torch.manual_seed(0)
    torch.save({"model": build_model(config.model).state_dict(),
                "config": config_to_dict(config),
                "class_names": [f"c{i}" for i in range(1, CLASSES)]}, workdir / "tiny.pth")
    hu = np.random.default_rng(0).integers(-1000, 1000, size=shape, dtype=np.int16)
    affine = np.array([[0, -0.7, 0, 0], [-0.7, 0, 0, 0], [0, 0, 2.5, 0], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(hu, affine), workdir / "scan.nii")  # stored as PLS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300])
    parser.add_argument("--child", nargs=2, metavar=("WORKDIR", "VARIANT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1])
        return
    shape = tuple(args.shape)
    voxels = int(np.prod(shape))
    print(json.dumps({"shape": shape, "classes": CLASSES,
                      "image_float32_mb": round(voxels * 4 / 2 ** 20, 1),
                      "probabilities_float16_mb": round(CLASSES * voxels * 2 / 2 ** 20, 1),
                      "probabilities_float32_mb": round(CLASSES * voxels * 4 / 2 ** 20, 1)}),
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepare(Path(tmp), shape)
        for variant in VARIANTS:
            subprocess.run([sys.executable, __file__, "--child", tmp, variant], check=True)


if __name__ == "__main__":
    main()
