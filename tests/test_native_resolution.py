"""Native resolution: the patch-mode config keys, and sliding-window inference on every path."""

import math

import pytest

import train as train_cli
from datasets import generate_phantom
from swin_unet.config import Config, apply_overrides, config_from_dict, config_to_dict
from swin_unet.config.checks import check_config, check_patch_size
from swin_unet.errors import InputError
from swin_unet.sizes import patch_pair, resampled_size

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
