"""Native resolution: the patch-mode config keys, and sliding-window inference on every path."""

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from PIL import Image

import train as train_cli
from datasets import generate_phantom
from swin_unet import Predictor, build_model
from swin_unet.config import Config, apply_overrides, config_from_dict, config_to_dict
from swin_unet.config.checks import check_config, check_patch_size
from swin_unet.errors import InputError
from swin_unet.evaluation.ensemble import load_ensemble
from swin_unet.evaluation.inference import predict_volume
from swin_unet.evaluation.run import InferenceOptions
from swin_unet.evaluation.sliding import SlidingWindow
from swin_unet.io.volumes import Volume
from swin_unet.sizes import patch_pair, resampled_size
from swin_unet.training.distributed import DistributedContext
from swin_unet.training.validation import Validator
from test_test_cli import run_cli

TINY_MODEL = ["model.img_size=64", "model.embed_dim=12", "model.depths=[2,2,2,2]",
              "model.num_heads=[1,1,1,1]", "model.window_size=2"]


def tiny_config(*overrides):
    return apply_overrides(Config(), TINY_MODEL + list(overrides))


def test_defaults_are_todays_resize_mode():
    data, inference = Config().data, Config().inference
    assert data.sampling == "resize" and data.spacing is None and data.patch_size is None
    assert math.isclose(data.foreground_share, 1 / 3)
    assert (inference.overlap, inference.blend) == (0.5, "gaussian")


def test_a_config_without_the_keys_loads_with_the_defaults():
    stored = config_to_dict(Config())
    for key in ("sampling", "spacing", "patch_size", "foreground_share"):
        del stored["data"][key]
    for key in ("overlap", "blend"):
        del stored["inference"][key]
    config = config_from_dict(stored)
    assert config == Config()


@pytest.mark.parametrize("override, value", [
    ("data.sampling=patch", "patch"), ("data.spacing=auto", "auto"),
    ("data.spacing=[0.8,1.25]", [0.8, 1.25]), ("data.spacing=null", None),
    ("data.patch_size=128", 128), ("data.patch_size=[64,128]", [64, 128]),
    ("data.foreground_share=0", 0.0), ("inference.overlap=0.25", 0.25),
    ("inference.blend=constant", "constant")])
def test_the_keys_take_their_values(override, value):
    config = tiny_config(override)
    check_config(config)
    section, key = override.split("=")[0].split(".")
    assert getattr(getattr(config, section), key) == value


@pytest.mark.parametrize("override, key", [
    ("inference.overlap=1.0", "inference.overlap"),
    ("inference.overlap=-0.1", "inference.overlap"),
    ("inference.overlap=.nan", "inference.overlap"),
    ("data.spacing=0", "data.spacing"), ("data.spacing=[0,1]", "data.spacing"),
    ("data.spacing=[-1,1]", "data.spacing"), ("data.spacing=[.nan,1]", "data.spacing"),
    ("data.spacing=[.inf,1]", "data.spacing"), ("data.spacing=[1,1,1]", "data.spacing"),
    ("data.spacing=median", "data.spacing"),
    ("data.patch_size=96", "data.patch_size"), ("data.patch_size=0", "data.patch_size"),
    ("data.patch_size=[64,100]", "data.patch_size"),
    ("data.foreground_share=1.5", "data.foreground_share"),
    ("data.sampling=crop", "data.sampling"), ("inference.blend=foo", "inference.blend")])
def test_bad_values_are_one_line_errors_naming_the_key(override, key):
    with pytest.raises(InputError) as info:
        check_config(tiny_config(override))
    message = str(info.value)
    assert key in message and "\n" not in message, message


def test_spacing_set_in_code_is_checked_too():
    for bad in (0.0, -1.0, float("nan")):
        config = tiny_config()
        config.data.spacing = [1.0, bad]
        with pytest.raises(InputError, match="data.spacing"):
            check_config(config)


def test_patch_sizes_the_model_takes():
    # The model's own size, and sizes whose windows are the model's (set_input_size takes them).
    assert check_patch_size(tiny_config()) == (64, 64)
    assert check_patch_size(tiny_config("data.patch_size=[128,64]")) == (128, 64)
    # A 224 model with window 7: 448 has windows of 7 at every stage, 256 does not divide.
    config = apply_overrides(Config(), ["data.patch_size=448"])
    assert check_patch_size(config) == (448, 448)
    with pytest.raises(InputError, match="data.patch_size"):
        check_patch_size(apply_overrides(Config(), ["data.patch_size=256"]))


def test_patch_pair_defaults_to_the_model_size():
    assert patch_pair(None, 224) == (224, 224)
    assert patch_pair(None, [64, 96]) == (64, 96)
    assert patch_pair([32, 64], 224) == (32, 64)


def test_resampled_size():
    assert resampled_size((512, 512), (0.7, 0.7), (1.4, 1.4)) == (256, 256)
    assert resampled_size((100, 130), (1.0, 2.0), (0.5, 1.0)) == (200, 260)
    assert resampled_size((101, 3), (1.0, 1.0), (2.0, 10.0)) == (51, 1)  # at least 1
    assert resampled_size((100, 130), None, (1.0, 1.0)) == (100, 130)  # a 2-D image
    assert resampled_size((100, 130), (0.8, 0.8), None) == (100, 130)  # spacing null


@pytest.mark.parametrize("override, key", [
    ("data.spacing=[0,1]", "data.spacing"), ("inference.overlap=1.0", "inference.overlap"),
    ("data.patch_size=96", "data.patch_size")])
def test_train_py_exits_2_with_one_line(capsys, tmp_path, override, key):
    root = generate_phantom(tmp_path / "phantom", "abdomen", n_cases=2, shape=(32, 32, 4))
    args = ["--quiet", "--device", "cpu", "--dataset", "phantom", "--root", str(root),
            "--output", str(tmp_path / "run")]
    for item in TINY_MODEL + ["train.epochs=1", "data.num_workers=0", "data.sampling=patch",
                              override]:
        args += ["--set", item]
    code = train_cli.main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and key in err, err


# ---- sliding-window inference ---------------------------------------------------------------

SMALL = dict(img_size=64, embed_dim=12, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
             window_size=2, num_classes=3)
CLASSES = ["vessel", "organ"]


def small_config(sampling="patch", **data):
    config = Config(dataset="phantom")
    for key, value in SMALL.items():
        setattr(config.model, key, value)
    config.data.sampling, config.data.intensity = sampling, "none"
    for key, value in data.items():
        setattr(config.data, key, value)
    return config


def small_model(seed=0):
    torch.manual_seed(seed)
    return build_model(small_config().model).eval()


def write_checkpoint(path, config, seed=0):
    torch.manual_seed(seed)
    torch.save({"model": build_model(config.model).state_dict(),
                "config": config_to_dict(config), "class_names": CLASSES, "epoch": 1}, path)
    return path


def oracle(model, slices, roi, overlap=0.5, mode="gaussian"):
    """MONAI's sliding window over the model's softmax, called directly."""
    with torch.no_grad():
        return sliding_window_inference(torch.as_tensor(slices), roi, 4,
                                        lambda w: torch.softmax(model(w), 1), overlap=overlap,
                                        mode=mode)


def test_one_window_equals_a_plain_forward_pass():
    model = small_model()
    volume = np.random.default_rng(0).normal(size=(64, 64, 3)).astype(np.float32)
    probabilities = np.empty((3, 64, 64, 3), dtype=np.float32)
    labels = predict_volume(model, volume, 64, batch_size=2, probabilities=probabilities,
                            sliding=SlidingWindow((64, 64)))
    with torch.no_grad():
        plain = torch.softmax(model(torch.from_numpy(np.moveaxis(volume, -1, 0)[:, None])), 1)
    plain = np.moveaxis(plain.numpy(), 0, -1)
    np.testing.assert_allclose(probabilities, plain, atol=1e-6)
    np.testing.assert_array_equal(labels, plain.argmax(0))


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_larger_slices_are_monai_windows_at_their_own_size(blend):
    model = small_model()
    volume = np.random.default_rng(1).normal(size=(100, 130, 2)).astype(np.float32)
    probabilities = np.empty((3, 100, 130, 2), dtype=np.float32)
    labels = predict_volume(model, volume, 64, batch_size=3, probabilities=probabilities,
                            sliding=SlidingWindow((64, 64), 0.25, blend))
    expected = oracle(model, np.moveaxis(volume, -1, 0)[:, None], (64, 64), 0.25, blend)
    expected = np.moveaxis(expected.numpy(), 0, -1)
    assert labels.shape == (100, 130, 2)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, probabilities.argmax(0))


def test_slices_are_resampled_to_the_training_spacing_and_back():
    model = small_model()
    volume = np.random.default_rng(2).normal(size=(100, 130, 1)).astype(np.float32)
    window = SlidingWindow((64, 64), spacing=(1.0, 1.0))
    seen = []
    original = model.forward
    model.forward = lambda x: (seen.append(x.shape[0]), original(x))[1]
    labels = predict_volume(model, volume, 64, sliding=window, spacing=(0.5, 0.5))
    # 100x130 at 0.5 mm is 50x65 at 1 mm: one window of rows, two of columns.
    assert labels.shape == (100, 130, 1) and sum(seen) == 2
    seen.clear()
    predict_volume(model, volume, 64, sliding=window, spacing=(1.0, 1.0))
    assert sum(seen) == 3 * 4  # 100x130 at 1 mm: windows at a step of 32 pixels


def test_patch_sizes_other_than_the_model_size_run_and_the_model_keeps_its_size():
    model = small_model()
    volume = np.random.default_rng(3).normal(size=(128, 64, 1)).astype(np.float32)
    probabilities = np.empty((3, 128, 64, 1), dtype=np.float32)
    predict_volume(model, volume, 64, sliding=SlidingWindow((128, 64)),
                   probabilities=probabilities)
    assert model.img_size == (64, 64)
    model.set_input_size((128, 64))
    with torch.no_grad():
        plain = torch.softmax(model(torch.from_numpy(volume[None, None, ..., 0])), 1)[0]
    np.testing.assert_allclose(probabilities[..., 0], plain.numpy(), atol=1e-6)


def test_resize_mode_is_todays_inference():
    assert SlidingWindow.from_config(small_config("resize")) is None
    window = SlidingWindow.from_config(small_config(spacing=[0.7, 0.9], patch_size=[128, 64]))
    assert window == SlidingWindow((128, 64), 0.5, "gaussian", (0.7, 0.9))
    assert SlidingWindow.from_config(small_config(spacing="auto")).spacing is None


@pytest.fixture(scope="module")
def patch_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("patch")
    return write_checkpoint(folder / "patch.pth", small_config(spacing=[1.0, 1.0]))


def test_a_patch_mode_image_prediction_has_the_image_size(patch_checkpoint, tmp_path, capsys):
    pixels = np.random.default_rng(4).integers(0, 256, (97, 150), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    code, _, err = run_cli(["--volume", "--checkpoint", patch_checkpoint, "--input",
                            tmp_path / "wide.png", "--output", tmp_path / "out", "--no-progress",
                            "--no-report"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "out/predictions/wide.png") as png:
        written = np.asarray(png)
    assert written.shape == (97, 150)
    predictor = Predictor.from_checkpoint(patch_checkpoint, device="cpu")
    labels, probabilities = predictor.predict(pixels, return_probabilities=True)
    np.testing.assert_array_equal(labels, written)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    # 2-D images keep their pixels: MONAI's windows over the image as it is.
    expected = oracle(predictor.model, pixels[None, None].astype(np.float32) / 255, (64, 64))
    np.testing.assert_allclose(probabilities, expected[0].numpy(), atol=1e-5)


def test_a_patch_mode_volume_prediction_has_the_scan_geometry(patch_checkpoint, tmp_path,
                                                              capsys):
    values = np.random.default_rng(5).normal(size=(100, 130, 3)).astype(np.float32)
    affine = np.diag([-0.5, 0.8, 2.0, 1.0])
    affine[:3, 3] = (10.0, -20.0, 5.0)
    nib.save(nib.Nifti1Image(values, affine), tmp_path / "scan.nii.gz")
    code, _, err = run_cli(["--volume", "--checkpoint", patch_checkpoint, "--input",
                            tmp_path / "scan.nii.gz", "--output", tmp_path / "out",
                            "--no-progress", "--no-report", "--save-probabilities"], capsys)
    assert code == 0, err
    written = nib.load(tmp_path / "out/predictions/scan.nii.gz")
    assert written.shape == (100, 130, 3)
    np.testing.assert_allclose(written.affine, affine)
    probabilities = np.load(tmp_path / "out/probabilities/scan.npz")["probabilities"]
    assert probabilities.shape == (3, 100, 130, 3)
    np.testing.assert_allclose(probabilities.astype(np.float32).sum(0), 1.0, atol=3e-3)
    # The scan is resampled to 1 mm in-plane from its own spacing (0.5, 0.8): the Predictor
    # and the command line agree, and differ from taking the scan as stored.
    predictor = Predictor.from_checkpoint(patch_checkpoint, device="cpu")
    labels = predictor.predict(values, affine=affine, keep_orientation=True)
    np.testing.assert_array_equal(labels, np.asanyarray(written.dataobj))
    as_stored = predict_volume(predictor.model, values, 64,
                               sliding=SlidingWindow((64, 64), spacing=(1.0, 1.0)),
                               spacing=(0.5, 0.8))
    np.testing.assert_array_equal(as_stored, labels)


def test_tta_and_ensembles_run_in_windows(patch_checkpoint, tmp_path):
    other = write_checkpoint(tmp_path / "other.pth", small_config(spacing=[1.0, 1.0]), seed=1)
    image = np.random.default_rng(6).integers(0, 256, (70, 90), dtype=np.uint8)
    one = Predictor.from_checkpoint(patch_checkpoint, device="cpu", tta=True)
    labels, probabilities = one.predict(image, return_probabilities=True)
    assert labels.shape == (70, 90)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    plain = Predictor.from_checkpoint(patch_checkpoint, device="cpu")
    assert not np.allclose(plain.predict(image, return_probabilities=True)[1], probabilities)
    ensemble = load_ensemble([patch_checkpoint, other])
    options = InferenceOptions(progress=False)
    members = [load_ensemble([p]).model for p in (patch_checkpoint, other)]
    volume = (image.astype(np.float32) / 255)[..., None]
    both = np.empty((3, 70, 90, 1), dtype=np.float32)
    options.segment(ensemble, volume, None, probabilities=both)
    each = [oracle(m, volume[None, None, ..., 0], (64, 64))[0].numpy() for m in members]
    np.testing.assert_allclose(both[..., 0], (each[0] + each[1]) / 2, atol=1e-5)


def test_an_ensemble_of_a_patch_and_a_resize_checkpoint_is_refused(patch_checkpoint, tmp_path):
    resize = write_checkpoint(tmp_path / "resize.pth", small_config("resize"))
    with pytest.raises(InputError, match="sampling"):
        load_ensemble([patch_checkpoint, resize])


def test_validation_runs_in_windows(monkeypatch):
    calls = []
    import swin_unet.evaluation.inference as inference

    original = inference.sliding_probabilities
    monkeypatch.setattr(inference, "sliding_probabilities",
                        lambda *a, **k: (calls.append(k or a[-1]), original(*a, **k))[1])
    label = np.zeros((70, 40, 2), dtype=np.uint8)
    label[10:30, 5:20] = 1
    volume = Volume("c1", np.random.default_rng(7).normal(size=(70, 40, 2)).astype(np.float32),
                    (0.5, 0.5, 2.0), np.eye(4), Path("c1.nii.gz"), label=label)
    validator = Validator([volume], CLASSES, 64, Config().inference, False, 0,
                          DistributedContext(), SlidingWindow((64, 64), spacing=(1.0, 1.0)))
    result = validator.run(small_model(), torch.device("cpu"))
    assert calls == [(0.5, 0.5)] and result is not None


@pytest.mark.parametrize("override, key", [
    ("inference.overlap=1.0", "inference.overlap"), ("inference.blend=foo", "inference.blend"),
    ("data.spacing=[-1,1]", "data.spacing"), ("data.patch_size=96", "data.patch_size")])
def test_test_py_refuses_bad_keys_with_one_line(patch_checkpoint, tmp_path, capsys, override,
                                                key):
    Image.fromarray(np.zeros((40, 40), dtype=np.uint8)).save(tmp_path / "a.png")
    code, _, err = run_cli(["--volume", "--checkpoint", patch_checkpoint, "--input",
                            tmp_path / "a.png", "--output", tmp_path / "out", "--no-progress",
                            "--no-report", "--set", override], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and key in err, err


def test_the_onnx_engine_runs_in_windows_too(patch_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from swin_unet.evaluation.onnx_export import export_onnx

    network = Predictor.from_checkpoint(patch_checkpoint, device="cpu")
    graph = export_onnx(network.model, tmp_path / "patch.onnx")
    engine = Predictor.from_onnx(graph, checkpoint=patch_checkpoint, batch_size=3)
    image = np.random.default_rng(8).integers(0, 256, (70, 90), dtype=np.uint8)
    expected = network.predict(image, return_probabilities=True)[1]
    got = engine.predict(image, return_probabilities=True)[1]
    assert got.shape == (3, 70, 90)
    np.testing.assert_allclose(got, expected, atol=1e-4)
