"""swin_unet.Predictor: arrays and files in memory give the labels test.py --input writes."""

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from swin_unet import Predictor, build_model
from swin_unet.config import Config, config_to_dict
from swin_unet.errors import InputError
from swin_unet.io.volumes import read_volume
from test_test_cli import SYNAPSE, TINY, run_cli

REPO = Path(__file__).resolve().parents[1]
# Stored L-P-S (x and y flipped against RAS): the model, trained in RAS, sees it turned.
FLIPPED = np.diag([-0.8, -0.7, 2.5, 1.0])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny 9-class CT model trained (as its geometry record says) on RAS volumes."""
    config = Config(dataset="phantom")
    for key, value in TINY.items():
        setattr(config.model, key, value)
    config.geometry.axcodes, config.geometry.slice_axis = "RAS", 2
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("predictor") / "tiny.pth"
    torch.save({"model": build_model(config.model).state_dict(), "config": config_to_dict(config),
                "class_names": SYNAPSE, "epoch": 1}, path)
    return path


def test_a_volume_gives_the_labels_of_test_py_input(checkpoint, tmp_path, capsys):
    hu = np.random.default_rng(0).normal(40, 200, (40, 36, 5)).astype(np.int16)
    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(hu, FLIPPED), scan)
    code, _, err = run_cli(["--volume", "--checkpoint", checkpoint, "--input", scan, "--output",
                            tmp_path / "out", "--no-progress", "--no-report"], capsys)
    assert code == 0, err
    written = np.asanyarray(nib.load(tmp_path / "out/predictions/scan.nii.gz").dataobj)

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    assert predictor.class_names == SYNAPSE and isinstance(predictor.model, torch.nn.Module)
    np.testing.assert_array_equal(predictor.predict_file(scan), written)
    volume = read_volume(scan)
    labels, probabilities = predictor.predict(volume.array, affine=volume.affine,
                                              return_probabilities=True)
    np.testing.assert_array_equal(labels, written)
    assert labels.shape == hu.shape and probabilities.shape == (9,) + hu.shape
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probabilities.argmax(0), labels)
    # Without the affine the volume is taken as it lies: the model sees other pixels.
    assert (predictor.predict(volume.array) != written).any()
    # (C, X, Y, Z) for a 1-channel model is the same volume.
    np.testing.assert_array_equal(predictor.predict(volume.array[None], affine=volume.affine),
                                  written)


def test_an_image_gives_the_labels_of_test_py_input(checkpoint, tmp_path, capsys):
    rgb = np.random.default_rng(1).integers(0, 256, (45, 50, 3), dtype=np.uint8)
    image = tmp_path / "photo.png"
    Image.fromarray(rgb).save(image)
    code, _, err = run_cli(["--volume", "--checkpoint", checkpoint, "--input", image,
                            "--output", tmp_path / "out", "--no-progress", "--no-report"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "out/predictions/photo.png") as png:
        written = np.asarray(png)
    assert written.shape == (45, 50)

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    np.testing.assert_array_equal(predictor.predict_file(image), written)
    np.testing.assert_array_equal(predictor.predict(rgb), written)  # (H, W, C) uint8 in memory
    labels, probabilities = predictor.predict(rgb, return_probabilities=True)
    assert probabilities.shape == (9, 45, 50)
    np.testing.assert_array_equal(probabilities.argmax(0), labels)
    gray = rgb[..., 0]
    assert predictor.predict(gray).shape == (45, 50)
    np.testing.assert_array_equal(predictor.predict(gray), predictor.predict(gray / 255.0))


def test_bad_arrays_are_errors_naming_the_shape(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    with pytest.raises(InputError, match="got shape"):
        predictor.predict(np.zeros((2, 3, 4, 5, 6)))
    with pytest.raises(InputError, match="channel"):
        predictor.predict(np.zeros((2, 40, 36, 5)), affine=np.eye(4))
    with pytest.raises(InputError, match="NaN"):
        predictor.predict(np.full((8, 8, 2), np.nan), kind="volume")
    with pytest.raises(InputError, match="4x4"):
        predictor.predict(np.zeros((8, 8, 2)), affine=np.eye(3))


def test_importing_the_predictor_name_loads_torch_only_when_used():
    code = ("import sys, swin_unet\n"
            "print('torch' in sys.modules)\n"
            "swin_unet.Predictor\n"
            "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
