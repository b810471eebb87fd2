"""Each command imports only what its path needs (torch and MONAI take seconds to import)."""

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# Runs a command line's main() in a fresh interpreter, then reports which packages it loaded.
_PROBE = """
import json, runpy, sys
sys.argv = {argv!r}
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
loaded = {{name: name in sys.modules for name in
          ("torch", "monai", "swin_unet.model", "swin_unet.training")}}
print("PROBE " + json.dumps({{"code": code, "loaded": loaded}}), file=sys.stderr)
"""


def probe(*argv):
    result = subprocess.run([sys.executable, "-c", _PROBE.format(argv=list(map(str, argv)))],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("PROBE ")][-1]
    return json.loads(line[len("PROBE "):]), result


@pytest.mark.parametrize("argv", [
    ("test.py", "--help"),
    ("test.py", "--predictions", "somewhere"),   # an argument error: exit 2
    ("train.py", "--help"),
    ("train.py", "--dataset", "no_such_set"),    # an argparse error: exit 2
])
def test_help_and_argument_errors_answer_before_torch_is_imported(argv):
    report, result = probe(*argv)
    assert report["code"] in (0, 2), result.stderr[-2000:]
    assert not report["loaded"]["torch"] and not report["loaded"]["monai"]


def test_scoring_predictions_imports_neither_torch_monai_nor_the_model(tmp_path):
    predictions, labels = tmp_path / "predictions", tmp_path / "labels"
    predictions.mkdir()
    labels.mkdir()
    label = np.zeros((16, 16, 4), np.uint8)
    label[4:10, 4:10, 1:3] = 1
    for folder in (predictions, labels):
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(folder / "case1.nii.gz"))
    report, result = probe("test.py", "--volume", "--predictions", predictions, "--labels",
                           labels, "--output", tmp_path / "out", "--no-progress")
    assert report["code"] in (0, None), result.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["mean_dice"] == 1.0
    assert report["loaded"] == {"torch": False, "monai": False, "swin_unet.model": False,
                                "swin_unet.training": False}


def test_segmenting_scans_imports_the_model_and_no_training_code(tmp_path):
    from swin_unet.config import Config, config_to_dict
    from swin_unet.model import build_model
    config = Config(dataset="synapse")
    for key, value in {"img_size": 32, "embed_dim": 12, "depths": [1, 1, 1, 1],
                       "num_heads": [1, 1, 1, 1], "window_size": 2}.items():
        setattr(config.model, key, value)
    torch.manual_seed(0)
    torch.save({"model": build_model(config.model).state_dict(),
                "config": config_to_dict(config),
                "class_names": [f"organ{i}" for i in range(1, 9)], "epoch": 1},
               tmp_path / "tiny.pth")
    scan = np.random.default_rng(0).normal(0, 100, (40, 40, 3)).astype(np.int16)
    nib.save(nib.Nifti1Image(scan, np.eye(4)), str(tmp_path / "scan.nii.gz"))
    report, result = probe("test.py", "--volume", "--checkpoint", tmp_path / "tiny.pth",
                           "--input", tmp_path / "scan.nii.gz", "--output", tmp_path / "out",
                           "--device", "cpu", "--no-progress")
    assert report["code"] in (0, None), result.stderr[-2000:]
    assert (tmp_path / "out" / "predictions" / "scan.nii.gz").is_file()
    assert report["loaded"]["swin_unet.model"] and not report["loaded"]["swin_unet.training"]
