"""The network stands alone: swin_unet/model imports nothing of the application but errors and
sizes, takes plain arguments, and changes its input size only when asked."""

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest
import torch

from swin_unet.config import AttentionMode, ModelConfig, choices
from swin_unet.errors import InputError
from swin_unet.model import ATTENTION_MODES, SwinUnet, build_model

MODEL_DIR = Path(__file__).resolve().parents[1] / "swin_unet" / "model"
ALLOWED = {"swin_unet.errors", "swin_unet.sizes"}
TINY = dict(img_size=32, embed_dim=12, depths=(2, 2), num_heads=(2, 4), window_size=2,
            num_classes=3)


def application_imports(path: Path) -> list[str]:
    """Modules of the ``swin_unet`` package that ``path`` imports (relative imports resolved)."""
    package = ["swin_unet", "model"]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            # "from .. import errors" names a module too.
            found += [module] if node.module else [f"{module}.{a.name}" for a in node.names]
    return [name for name in found if name == "swin_unet" or name.startswith("swin_unet.")]


def test_the_model_imports_only_errors_and_sizes_of_the_application():
    paths = sorted(MODEL_DIR.glob("*.py"))
    assert len(paths) > 3
    outside = {f"{path.name}: {name}" for path in paths for name in application_imports(path)
               if not name.startswith("swin_unet.model") and name not in ALLOWED}
    assert not outside


def test_the_import_check_sees_relative_and_absolute_imports(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("from ..config import Config\nfrom . import layers\nimport swin_unet.io\n"
                      "from .. import errors\nimport torch\n")
    assert application_imports(module) == ["swin_unet.config", "swin_unet.model.layers",
                                            "swin_unet.io", "swin_unet.errors"]


def test_the_config_offers_the_attention_modes_the_model_takes():
    assert set(choices(AttentionMode)) == set(ATTENTION_MODES)
    with pytest.raises(InputError, match="attention must be one of") as caught:
        SwinUnet(**TINY, attention="flash")
    assert caught.value.key == "attention"


def test_build_model_takes_every_model_field_of_the_config():
    fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"preset"}
    assert fields == set(inspect.signature(SwinUnet).parameters)
    config = ModelConfig(img_size=[32, 48], embed_dim=12, depths=[2, 2], num_heads=[2, 4],
                         window_size=2, num_classes=3, decoder_depths=[3], drop_path_rate=0.0,
                         attention="explicit", grad_checkpoint=True, mlp_ratio=2.0)
    model = build_model(config, num_classes=4)
    assert model.img_size == (32, 48) and model.num_classes == 4
    assert model.decoder_depths == (3,) and model.attention == "explicit"
    assert model.grad_checkpoint and model.layers[0].blocks[0].mlp.fc1.out_features == 24


def test_forward_refuses_another_size_until_set_input_size_is_called():
    torch.manual_seed(0)
    model = SwinUnet(**TINY).eval()
    x = torch.randn(1, 1, 48, 32)
    with pytest.raises(ValueError, match=r"set_input_size\(\(48, 32\)\)"):
        model(x)
    assert model.img_size == (32, 32)
    model.set_input_size((48, 32))
    assert model.img_size == (48, 32)
    assert model(x).shape == (1, 3, 48, 32)
