"""The shipped configs and the --set keys the command-line contract promises."""

from pathlib import Path

import pytest

from swin_unet.config import Config, apply_overrides, config_to_dict, load_config
from swin_unet.errors import InputError
from swin_unet.model import check_sizes
from swin_unet.config.checks import check_train_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_synapse_config_is_the_published_recipe():
    config = load_config(CONFIGS / "synapse.yaml")
    train, model = config.train, config.model
    assert config.dataset == "synapse"
    assert (train.optimizer, train.base_lr, train.batch_size, train.base_batch_size) == (
        "sgd", 0.05, 24, 24)
    assert (train.momentum, train.weight_decay) == (0.9, 1e-4)
    assert (train.schedule, train.poly_power, train.warmup_epochs) == ("poly", 0.9, 0)
    assert (train.epochs, train.seed) == (150, 1234)
    assert (train.ce_weight, train.dice_weight) == (0.4, 0.6)
    assert (model.img_size, model.embed_dim, model.depths, model.num_heads,
            model.window_size, model.patch_size) == (224, 96, [2, 2, 2, 2], [3, 6, 12, 24], 7, 4)
    assert config.data.val_cases == []  # no validation split: best.pth is the last epoch
    assert config.data.ct_window == [-125.0, 275.0]


@pytest.mark.parametrize("name", ["synapse", "acdc", "phantom", "phantom2d"])
def test_shipped_configs_are_valid(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.dataset == name
    check_train_config(config.train)
    model = config.model
    check_sizes(model.img_size, model.patch_size, model.window_size, model.depths)
    assert len(model.num_heads) == len(model.depths)
    dims = [model.embed_dim * 2 ** i for i in range(len(model.depths))]
    assert all(d % h == 0 for d, h in zip(dims, model.num_heads))


def test_acdc_config_validates_on_the_standard_split():
    config = load_config(CONFIGS / "acdc.yaml")
    assert config.data.val_cases is None  # the data set's standard 10 validation patients
    assert config.train.val_every >= 1


CONTRACT_KEYS = {
    "model.img_size": "256", "model.in_chans": "3", "model.embed_dim": "48",
    "model.depths": "[2,2,6,2]", "model.num_heads": "[2,4,8,16]", "model.window_size": "8",
    "model.drop_path_rate": "0.2", "train.epochs": "5", "train.batch_size": "8",
    "train.base_lr": "0.01", "train.seed": "7", "train.val_every": "2",
    "data.root": "/somewhere", "data.num_workers": "0",
}


def test_every_contract_set_key_exists_and_takes_a_yaml_value():
    config = apply_overrides(Config(), [f"{k}={v}" for k, v in CONTRACT_KEYS.items()])
    values = config_to_dict(config)
    assert values["model"]["img_size"] == 256 and values["model"]["depths"] == [2, 2, 6, 2]
    assert values["model"]["drop_path_rate"] == 0.2 and values["train"]["base_lr"] == 0.01
    assert values["data"]["root"] == "/somewhere" and values["data"]["num_workers"] == 0
    assert values["train"]["seed"] == 7 and values["train"]["val_every"] == 2


def test_training_keys_added_for_the_loop_can_be_set():
    config = apply_overrides(Config(), ["train.amp_dtype=bf16", "train.log_every=5",
                                        "train.overlay_slices=0", "train.deterministic=true",
                                        "train.cpu_threads=1"])
    assert (config.train.amp_dtype, config.train.log_every, config.train.overlay_slices,
            config.train.deterministic, config.train.cpu_threads) == ("bf16", 5, 0, True, 1)


@pytest.mark.parametrize("override, key", [
    ("train.epocs=3", "train.epocs"),
    ("model.depths=deep", "model.depths"),
    ("train.base_lr=fast", "train.base_lr"),
])
def test_bad_overrides_name_the_key(override, key):
    with pytest.raises(InputError, match=key.replace(".", r"\.")):
        apply_overrides(load_config(CONFIGS / "phantom.yaml"), [override])


def test_overrides_layer_over_the_dataset_config(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("train:\n  epochs: 3\n  base_lr: 0.01\n")
    config = load_config(user, ["train.epochs=4"], base=load_config(CONFIGS / "acdc.yaml"))
    assert config.train.epochs == 4  # --set wins over --config
    assert config.train.base_lr == 0.01  # --config wins over the data set's file
    assert config.train.momentum == 0.9 and config.dataset == "acdc"  # the rest stays
