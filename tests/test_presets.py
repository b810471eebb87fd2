"""Model presets: how they layer in the config, and a training step of each at a small width."""

import pytest
import torch

import train as train_cli
from datasets import generate_phantom
from swin_unet import SwinUnet, build_model
from swin_unet.config import config_from_dict, config_to_dict, load_config, save_config
from swin_unet.errors import InputError
from swin_unet.model.presets import PRESETS

SWIN_B = dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32])


def test_a_preset_sets_the_model_and_keys_beside_it_override(tmp_path):
    config = load_config("configs/phantom.yaml", ["model.preset=swin_b_384"])
    assert {k: getattr(config.model, k) for k in SWIN_B} == SWIN_B
    assert (config.model.img_size, config.model.window_size) == (384, 12)
    assert config.model.drop_path_rate == 0.05  # not a size: the data set's value stays
    config = load_config("configs/phantom.yaml", ["model.preset=swin_t", "model.img_size=96",
                                                  "model.window_size=3"])
    assert config.model.depths == [2, 2, 6, 2] and config.model.img_size == 96
    # The same from a --config file, and after a round trip through a saved config.
    (tmp_path / "b.yaml").write_text("model:\n  preset: swin_b\n  decoder_depths: [1, 1, 2]\n")
    config = load_config(tmp_path / "b.yaml", base=load_config("configs/phantom.yaml"))
    assert config.model.window_size == 7 and config.model.decoder_depths == [1, 1, 2]
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config
    assert config_from_dict(config_to_dict(config)) == config


def test_an_unknown_preset_names_the_key_and_the_known_ones():
    with pytest.raises(InputError, match=r"'model.preset': unknown model preset 'swin_l' "
                                         r"\(known: tiny_lite, swin_t, swin_s, swin_b, swin_b_384\)"):
        load_config(None, ["model.preset=swin_l"])


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_trains_a_step_at_a_small_width(name):
    """The preset's depths and heads; width, size and window shrunk (embed 12 or 16, 64/2)."""
    config = load_config(None, [f"model.preset={name}", "model.img_size=64", "model.window_size=2",
                                f"model.embed_dim={4 * PRESETS[name].num_heads[0]}",
                                "model.drop_path_rate=0.0", "model.num_classes=3"])
    torch.manual_seed(0)
    model = build_model(config.model)
    assert model.depths == PRESETS[name].depths and model.num_heads == PRESETS[name].num_heads
    assert [len(stage.blocks) for stage in model.layers_up[1:]] == list(model.depths[-2::-1])
    x, target = torch.rand(2, 1, 64, 64), torch.randint(0, 3, (2, 64, 64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in model.parameters())
    assert losses[1] < losses[0]


def test_a_shallower_decoder_has_its_own_blocks_and_any_input_size():
    torch.manual_seed(0)
    model = SwinUnet(img_size=64, window_size=2, embed_dim=12, depths=(2, 2, 6, 2),
                     num_heads=(3, 6, 12, 24), decoder_depths=(1, 1, 2)).eval()
    assert [len(stage.blocks) for stage in model.layers_up[1:]] == [2, 1, 1]
    other = SwinUnet(img_size=(64, 128), window_size=2, embed_dim=12, depths=(2, 2, 6, 2),
                     num_heads=(3, 6, 12, 24), decoder_depths=(1, 1, 2)).eval()
    other.load_state_dict(model.state_dict())
    x = torch.randn(1, 1, 64, 128)
    model.set_input_size((64, 128))
    with torch.no_grad():
        assert torch.equal(model(x), other(x))
    with pytest.raises(ValueError, match="decoder_depths must hold 3 positive"):
        SwinUnet(img_size=64, window_size=2, embed_dim=12, decoder_depths=(2, 2))


def test_a_preset_trains_on_the_phantom_from_the_command_line(tmp_path, capsys):
    root = generate_phantom(tmp_path / "phantom", "abdomen", n_cases=3, shape=(32, 32, 4))
    sets = ["model.preset=swin_s", "model.img_size=32", "model.window_size=2",
            "model.embed_dim=12", "train.epochs=1", "train.batch_size=8", "train.val_every=1",
            "data.num_workers=0", "train.cpu_threads=1"]
    args = ["--quiet", "--device", "cpu", "--dataset", "phantom", "--root", str(root),
            "--output", str(tmp_path / "run")]
    for item in sets:
        args += ["--set", item]
    assert train_cli.main(args) == 0, capsys.readouterr().err
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.pth", weights_only=True)
    assert checkpoint["config"]["model"]["preset"] == "swin_s"
    assert checkpoint["config"]["model"]["depths"] == [2, 2, 18, 2]
    assert sum(k.startswith("layers.2.blocks.") and k.endswith("qkv.weight")
               for k in checkpoint["model"]) == 18
