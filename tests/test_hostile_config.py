"""Config values, class names and options a user or a shared file gets wrong: one line, exit 2,
nothing written."""

import json
import os

import numpy as np
import pytest
import torch

import train as train_cli
from datasets import generate_phantom, open_dataset
from swin_unet import build_model
from swin_unet.config import Config, DataConfig, config_to_dict
from swin_unet.errors import InputError
from swin_unet.io.validity import set_max_pixels
from test_test_cli import CLI, SYNAPSE, tiny_config

TINY = ["model.img_size=32", "model.embed_dim=12", "model.depths=[1,1,1,1]",
        "model.num_heads=[1,1,1,1]", "model.window_size=2", "train.epochs=1",
        "train.batch_size=8", "data.num_workers=0", "train.cpu_threads=1"]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return generate_phantom(tmp_path_factory.mktemp("data") / "phantom", "abdomen", n_cases=3,
                            shape=(32, 32, 4))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    config = tiny_config()
    torch.save({"model": build_model(config.model).state_dict(),
                "config": config_to_dict(config), "class_names": SYNAPSE, "epoch": 1},
               folder / "tiny.pth")
    return folder / "tiny.pth"


@pytest.fixture(autouse=True)
def _default_pixel_limit():
    """The pixel limit is a process setting: each test leaves the default behind."""
    yield
    set_max_pixels(None)


def _one_line(code, err, *words):
    err = err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize("override, words", [
    ("train.base_lr=.nan", ["train.base_lr", "nan"]),
    ("train.base_lr=.inf", ["train.base_lr", "inf"]),
    ("train.seed=-1", ["train.seed", "2**32"]),
    ("train.seed=4294967296", ["train.seed"]),
    ("train.weight_decay=-0.1", ["train.weight_decay"]),
    ("train.poly_power=.nan", ["train.poly_power"]),
    ("train.momentum=1.5", ["train.momentum"]),
    ("data.num_workers=-1", ["data.num_workers"]),
    ("data.folds=1", ["data.folds"]),
    ("data.max_pixels=0", ["data.max_pixels"]),
    ("data.ct_window=[275,-125]", ["data.ct_window"]),
    ("data.ct_window=[.nan,275]", ["data.ct_window"]),
    ("model.mlp_ratio=.nan", ["model.mlp_ratio"]),
    ("model.drop_path_rate=.nan", ["model.drop_path_rate"]),
    ("inference.batch_size=-3", ["inference.batch_size"]),
    ("geometry.inplane_spacing=[.nan,1.0]", ["geometry.inplane_spacing"]),
])
def test_a_bad_value_is_refused_before_anything_is_written(phantom, tmp_path, capsys, override,
                                                           words):
    out = tmp_path / "run"
    args = ["--quiet", "--device", "cpu", "--dataset", "phantom", "--root", str(phantom),
            "--output", str(out)]
    for item in TINY + [override]:
        args += ["--set", item]
    code = train_cli.main(args)
    _one_line(code, capsys.readouterr().err, *words)
    assert not out.exists() or not any(out.iterdir())


def _checkpoint_with(tmp_path, checkpoint, **changes):
    state = torch.load(checkpoint, weights_only=True)
    for key, value in changes.items():
        if key.startswith("config."):
            section, name = key.split(".")[1:]
            state["config"][section][name] = value
        else:
            state[key] = value
    path = tmp_path / "changed.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("changes, words", [
    ({"class_names": 7}, ["class_names", "7"]),
    ({"class_names": ["aorta\nliver"] + SYNAPSE[1:]}, ["class_names", "control"]),
    ({"class_names": [""] + SYNAPSE[1:]}, ["class_names"]),
    ({"config.data.class_names": 7}, ["data.class_names", "list"]),
    ({"config.train.base_lr": float("nan")}, ["stored config", "train.base_lr"]),
    ({"config.data.num_workers": -4}, ["stored config", "data.num_workers"]),
])
def test_a_checkpoint_config_is_checked_as_strictly_as_a_users(phantom, checkpoint, tmp_path,
                                                               capsys, changes, words):
    path = _checkpoint_with(tmp_path, checkpoint, **changes)
    code = CLI.main(["--volume", "--dataset", "phantom", "--root", str(phantom), "--checkpoint",
                     str(path), "--output", str(tmp_path / "out"), "--no-progress"])
    _one_line(code, capsys.readouterr().err, str(path), *words)


@pytest.mark.parametrize("make", ["fifo", "dev_zero"])
def test_a_checkpoint_that_is_not_a_regular_file_says_so(phantom, tmp_path, capsys, make):
    path = tmp_path / "c.pth"
    if make == "fifo":
        os.mkfifo(path)
    else:
        path = "/dev/zero"
    code = CLI.main(["--volume", "--dataset", "phantom", "--root", str(phantom), "--checkpoint",
                     str(path), "--output", str(tmp_path / "out"), "--no-progress"])
    _one_line(code, capsys.readouterr().err, f"{path}: not a regular file")


def test_an_unknown_figure_case_is_refused_before_the_work_listing_the_known(
        phantom, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    code = CLI.main(["--volume", "--dataset", "phantom", "--root", str(phantom), "--checkpoint",
                     str(checkpoint), "--output", str(out), "--no-progress",
                     "--figure-cases", "case0009"])
    _one_line(code, capsys.readouterr().err, "--figure-cases", "case0009", "case0003")
    assert not (out / "metrics.csv").exists()


def test_a_control_character_in_a_class_name_is_refused_where_names_enter(tmp_path):
    with pytest.raises(InputError, match=r"data.class_names.*'a\\nb'.*control"):
        from swin_unet.config.checks import check_config
        config = Config()
        config.data.class_names = ["a\nb"]
        check_config(config, ("data",))
    root = tmp_path / "folder"
    (root / "imagesTr").mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background",
                                                              "1": "liver\u202e"}}))
    with pytest.raises(InputError) as caught:
        open_dataset("folder", DataConfig(root=str(root)))
    assert "dataset.json" in str(caught.value) and "control" in str(caught.value)


def test_max_pixels_flag_reaches_the_image_reader(checkpoint, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8)).save(
        image)
    code = CLI.main(["--checkpoint", str(checkpoint), "--input", str(image), "--output",
                     str(tmp_path / "out"), "--no-progress", "--max-pixels", "1000"])
    _one_line(code, capsys.readouterr().err, str(image), "50x40 = 2000 pixels", "1000")


def test_the_command_wrapper_turns_a_file_system_fault_into_one_line(capsys):
    import errno

    from swin_unet.commands.common import run_command

    def full():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/metrics.csv")

    def torch_like():  # torch.save: a RuntimeError raised while handling the OSError
        try:
            raise OSError(errno.EROFS, "Read-only file system")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos")

    assert run_command(full, log_format=None) == 2
    assert capsys.readouterr().err == ("error: /data/out/metrics.csv: cannot write (no space "
                                       "left on device)\n")
    from swin_unet.errors import write_fault
    fault = write_fault(pytest.raises(RuntimeError, torch_like).value, "/run/last.pth")
    assert str(fault) == "/run/last.pth: cannot write (read-only file system)"
    for error, cause in ((errno.EACCES, "permission denied"), (errno.EDQUOT,
                                                               "disk quota exceeded")):
        fault = write_fault(OSError(error, os.strerror(error), b"/data/out/summary.json"))
        assert str(fault) == f"/data/out/summary.json: cannot write ({cause})"

    def bug():
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError):  # not a fault of the machine's state: a bug, shown as one
        run_command(bug, log_format=None)


def test_the_predictor_refuses_a_degenerate_affine_in_one_line(checkpoint):
    from swin_unet import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    volume = np.zeros((32, 32, 2), np.float32)
    for affine, words in ((np.diag([1.0, 1.0, np.inf, 1.0]), "spacing"),
                          (np.diag([1.0, 1.0, 0.0, 1.0]), "spacing"),
                          (np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
                           "singular")):
        with pytest.raises(InputError, match=words):
            predictor.predict(volume, affine=affine)


@pytest.mark.parametrize("changes, words", [
    ({"class_names": 7}, ["class_names", "7"]),
    ({"config": "nonsense"}, ["'config' is not a mapping"]),
    ({"config.train.seed": "x"}, ["stored config", "train.seed"]),
])
def test_a_resumed_checkpoint_is_checked_as_strictly(phantom, checkpoint, tmp_path, capsys,
                                                     changes, words):
    state = torch.load(checkpoint, weights_only=True)
    state.update({"epoch": 1, "optimizer": {}, "scheduler": {}, "scaler": {},
                  "best_metric": None, "global_step": 1, "step_in_epoch": 0, "rng": {}})
    full = tmp_path / "full.pth"
    torch.save(state, full)
    path = _checkpoint_with(tmp_path, full, **changes)
    args = ["--quiet", "--device", "cpu", "--dataset", "phantom", "--root", str(phantom),
            "--output", str(tmp_path / "run"), "--resume", str(path)]
    code = train_cli.main(args)
    _one_line(code, capsys.readouterr().err, str(path), *words)
