"""ONNX export: onnxruntime's logits equal the network's, and the ONNX engine gives its labels."""

import sys

import numpy as np
import pytest
import torch

from swin_unet import Predictor
from swin_unet.cli import main as swin_unet
from swin_unet.evaluation.onnx_export import OnnxNetwork, check_onnx, export_onnx
from swin_unet.errors import InputError
from swin_unet.model import SwinUnet
from test_predictor import checkpoint  # noqa: F401  (the fixture)

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny network and its graph: shifted windows (depth 2) and a 2:1 size, 2 channels."""
    torch.manual_seed(0)
    model = SwinUnet(img_size=(32, 16), in_chans=2, num_classes=3, embed_dim=12,
                     depths=[2, 2], num_heads=[1, 2], window_size=2)
    return model, export_onnx(model, tmp_path_factory.mktemp("onnx") / "m.onnx")


def test_logits_equal_at_two_batch_sizes(exported):
    model, path = exported
    network = OnnxNetwork(path, model)
    model.eval()
    for batch in (1, 5):
        x = torch.randn(batch, 2, 32, 16)
        with torch.inference_mode():
            expected = model(x)
        got = network(x)
        assert got.shape == expected.shape == (batch, 3, 32, 16)
        span = float(expected.max() - expected.min())
        assert float((got - expected).abs().max()) <= 1e-4 * span
    check = check_onnx(model, path, batch_sizes=(2, 3))
    assert check.batch_sizes == (2, 3) and check.relative_difference <= 1e-4
    assert check.logits_range > 0


def test_export_command_checks_and_the_engine_gives_the_same_labels(checkpoint, tmp_path,  # noqa: F811
                                                                    capsys):
    onnx_file = tmp_path / "tiny.onnx"
    assert swin_unet(["export", "--checkpoint", str(checkpoint), "--output", str(onnx_file)]) == 0
    out = capsys.readouterr().out
    assert "of the logits' range" in out and onnx_file.is_file()
    relative = float(out.split(" = ")[1].split()[0])
    assert relative <= 1e-4

    hu = np.random.default_rng(2).normal(40, 200, (40, 36, 7)).astype(np.float32)
    torch_labels = Predictor.from_checkpoint(checkpoint, device="cpu").predict(hu)
    engine = Predictor.from_onnx(onnx_file, checkpoint=checkpoint, batch_size=3)
    assert isinstance(engine.model, OnnxNetwork) and len(engine.class_names) == 8
    onnx_labels = engine.predict(hu)
    assert (onnx_labels == torch_labels).mean() >= 0.999


def test_a_graph_of_another_size_is_refused(checkpoint, exported):  # noqa: F811
    with pytest.raises(InputError, match=r"takes \(N, 2, 32, 16\).*\(N, 1, 32, 32\)"):
        Predictor.from_onnx(exported[1], checkpoint=checkpoint)


def test_without_onnxruntime_the_command_says_how_to_install(checkpoint, tmp_path,  # noqa: F811
                                                            capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as when not installed
    code = swin_unet(["export", "--checkpoint", str(checkpoint), "--output",
                      str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "pip install 'swin-unet[onnx]'" in err and not (tmp_path / "m.onnx").exists()
