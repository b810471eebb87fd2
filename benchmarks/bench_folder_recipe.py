"""Convergence of configs/folder.yaml against the paper's recipe on the phantom in folder layout.

Writes the abdominal phantom as a user's own data set (nnU-Net / Decathlon layout: dataset.json,
imagesTr/, labelsTr/, splits.json with the demo's split), trains the same small model with each
recipe for the same number of epochs, and prints JSON lines: the validation mean Dice after
each validation, per recipe. The model is the CPU demo's (96 px, embed 24): the 224 model
needs a GPU for a run of this length.

    python benchmarks/bench_folder_recipe.py --work /tmp/folder_recipe --epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.base import label_lookup  # noqa: E402
from datasets.phantom import ensure_phantom, phantom_splits  # noqa: E402
from datasets.synapse import (SYNAPSE_CLASSES, SYNAPSE_RAW_MAX, SYNAPSE_RAW_TO_CLASS,  # noqa: E402
                              find_synapse_raw)
from swin_unet.config import load_config  # noqa: E402
from swin_unet.training import train  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = {"folder.yaml": CONFIGS / "folder.yaml", "paper (synapse.yaml)": CONFIGS / "synapse.yaml"}
# The demo's model (configs/phantom.yaml) at the demo's batch, for both recipes alike.
SMALL_MODEL = ["model.img_size=96", "model.embed_dim=24", "model.num_heads=[2,4,8,16]",
               "model.window_size=3", "model.drop_path_rate=0.05", "data.num_workers=0",
               "train.log_every=5", "inference.batch_size=40"]


def write_folder_layout(work: Path) -> Path:
    """The abdominal phantom as ``work/folder``: class-index labels, the demo's split."""
    raw = find_synapse_raw(ensure_phantom(work / "phantom", "abdomen"))
    folder = work / "folder"
    if (folder / "dataset.json").is_file():
        return folder
    lookup = label_lookup(SYNAPSE_RAW_TO_CLASS, SYNAPSE_RAW_MAX)
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(exist_ok=True)
    cases = []
    for image_path in sorted((raw / "img").glob("img*.nii.gz")):
        number = image_path.name[3:7]
        case = f"case{number}"
        image = nib.load(str(image_path))
        label = nib.load(str(raw / "label" / f"label{number}.nii.gz"))
        nib.save(image, str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
        classes = lookup[np.asarray(label.dataobj).astype(np.intp)]
        nib.save(nib.Nifti1Image(classes, label.affine),
                 str(folder / "labelsTr" / f"{case}.nii.gz"))
        cases.append(case)
    labels = {"background": 0, **{name: i + 1 for i, name in enumerate(SYNAPSE_CLASSES)}}
    (folder / "dataset.json").write_text(json.dumps(
        {"labels": labels, "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}, indent=1))
    (folder / "splits.json").write_text(json.dumps(phantom_splits(cases), indent=1))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True,
                        help="scratch folder for the data and the runs")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each recipe")
    parser.add_argument("--val-every", type=int, default=2, help="validate every N epochs")
    args = parser.parse_args()
    folder = write_folder_layout(args.work)
    print(json.dumps({"machine": platform.processor() or platform.machine(),
                      "cores": os.cpu_count(), "load_1min": os.getloadavg()[0],
                      "epochs": args.epochs, "model": "demo (96 px, embed 24)"}), flush=True)
    for name, path in RECIPES.items():
        # data.val_cases=null: the split of splits.json (synapse.yaml has no validation).
        overrides = SMALL_MODEL + ["data.val_cases=null", f"train.epochs={args.epochs}",
                                   f"train.val_every={args.val_every}", f"data.root={folder}"]
        config = load_config(path, overrides)
        config.dataset = "folder"
        start = time.perf_counter()
        output = args.work / "runs" / name.split()[0].replace(".yaml", "")
        result = train(config, output, verbose=False)
        curve = {s.epoch: round(s.val_dice, 4) for s in result.history
                 if getattr(s, "val_dice", None) is not None}
        print(json.dumps({"recipe": name, "val_mean_dice_by_epoch": curve,
                          "seconds": round(time.perf_counter() - start, 1),
                          "load_1min": os.getloadavg()[0]}), flush=True)


if __name__ == "__main__":
    main()
