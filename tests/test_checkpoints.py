"""load_pretrained on checkpoints written in the ImageNet, original Swin-Unet and project layouts."""

import pickle

import pytest
import torch

from benchmarks.reference_model import ReferenceSwinUnet, imagenet_checkpoint, original_checkpoint
from swin_unet import SwinUnet, load_pretrained
from swin_unet.errors import InputError

TINY = dict(img_size=64, window_size=2, embed_dim=12, num_heads=(1, 2, 2, 4))


def test_imagenet_swin_t_layout_fills_encoder_and_mirrored_decoder(tmp_path):
    """The real file's layout: Swin-T (2, 2, 6, 2), window 7, 224, 1000-class head, RGB."""
    state = imagenet_checkpoint()
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save(state, path)
    model = SwinUnet(in_chans=1, num_classes=9)
    report = load_pretrained(model, path)
    source = state["model"]
    own = model.state_dict()

    assert report.source == "imagenet"
    assert report.converted == {"patch_embed.proj.weight": "RGB kernels summed for a 1-channel input"}
    assert torch.equal(own["patch_embed.proj.weight"],
                       source["patch_embed.proj.weight"].sum(1, keepdim=True))
    # Every encoder tensor as is; encoder stage i's blocks also in up-stage 3 - i.
    for key, value in source.items():
        if key in own and not key.endswith(("relative_position_index", "attn_mask")) \
                and key != "patch_embed.proj.weight":
            assert torch.equal(own[key], value), key
    for i in range(3):
        for j in range(2):
            for name in ("attn.qkv.weight", "attn.relative_position_bias_table", "mlp.fc2.weight",
                         "norm2.bias"):
                assert torch.equal(own[f"layers_up.{3 - i}.blocks.{j}.{name}"],
                                   source[f"layers.{i}.blocks.{j}.{name}"])
    # The report: head dropped, extra stage-2 blocks without counterpart, rebuilt buffers.
    assert report.skipped["head.weight"] == "classification head"
    assert report.skipped["layers.2.blocks.5.attn.qkv.weight"] == \
        "block beyond the model's depth (stage 2 has 2 blocks)"
    assert report.skipped["layers.0.blocks.1.attn_mask"] == "buffer rebuilt by the model"
    groups = {k.split(".")[0] if not k.startswith("layers_up.0") else "layers_up.0"
              for k in report.missing}
    assert groups == {"layers_up.0", "layers_up", "concat_back_dim", "norm_up", "up", "output"}
    assert all(".blocks." not in k for k in report.missing)  # every decoder block was filled
    assert len(report.loaded) + len(report.converted) + len(report.missing) == len(own)


def test_imagenet_tensors_of_another_shape_are_skipped_and_reported(tmp_path):
    torch.save(imagenet_checkpoint(), tmp_path / "in.pth")
    model = SwinUnet(img_size=256, window_size=8, in_chans=2)
    report = load_pretrained(model, tmp_path / "in.pth")
    assert report.skipped["patch_embed.proj.weight"].startswith("shape (96, 3, 4, 4)")
    assert "layers.0.blocks.0.attn.qkv.weight" in report.loaded
    # Window 8 instead of 7: the bias tables are resized, not skipped (tests/test_pretrained.py).
    assert report.interpolated["layers.0.blocks.0.attn.relative_position_bias_table"] == \
        "bicubic 13x13 -> 15x15, window 7 -> 8"


@pytest.mark.parametrize("prefix", ["swin_unet.", "module.swin_unet."])
def test_original_swin_unet_checkpoint_gives_the_same_logits(tmp_path, prefix):
    torch.manual_seed(3)
    original = ReferenceSwinUnet(in_chans=3, num_classes=9, **TINY).eval()
    torch.save(original_checkpoint(original, prefix), tmp_path / "epoch_149.pth")
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        expected = original(x.repeat(1, 3, 1, 1))  # the original code repeats gray to RGB

    for in_chans, inputs in ((3, x.repeat(1, 3, 1, 1)), (1, x)):
        model = SwinUnet(in_chans=in_chans, num_classes=9, **TINY).eval()
        report = load_pretrained(model, tmp_path / "epoch_149.pth")
        assert report.source == "swin_unet" and report.missing == []
        with torch.no_grad():
            assert (model(inputs) - expected).abs().max() < 1e-5


def test_project_checkpoint_round_trip(tmp_path):
    model = SwinUnet(in_chans=1, num_classes=4, **TINY)
    torch.save({"model": model.state_dict(), "config": {"model": {}}, "epoch": 3}, tmp_path / "last.pth")
    other = SwinUnet(in_chans=1, num_classes=4, **TINY)
    report = load_pretrained(other, tmp_path / "last.pth")
    assert report.source == "project" and not report.skipped and not report.missing
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value)


def test_checkpoint_of_another_model_shape_fails_naming_file_and_tensor(tmp_path):
    model = SwinUnet(in_chans=1, num_classes=4, **TINY)
    torch.save({"model": model.state_dict(), "config": {}}, tmp_path / "four.pth")
    with pytest.raises(InputError, match=r"four\.pth: does not fit the model .*output\.weight"):
        load_pretrained(SwinUnet(in_chans=1, num_classes=9, **TINY), tmp_path / "four.pth")
    deeper = SwinUnet(in_chans=1, num_classes=4, **{**TINY, "img_size": 64},
                      depths=(2, 2, 4, 2))
    torch.save(original_checkpoint(deeper), tmp_path / "deeper.pth")
    with pytest.raises(InputError, match="deeper.pth: does not fit the model"):
        load_pretrained(model, tmp_path / "deeper.pth")
    # Fine-tuning on other classes: strict=False keeps what fits and reports the rest.
    report = load_pretrained(SwinUnet(in_chans=1, num_classes=9, **TINY), tmp_path / "four.pth",
                             strict=False)
    assert report.missing == ["output.weight"]


@pytest.mark.parametrize("content,words", [
    (None, "checkpoint file not found"),
    (b"not a checkpoint at all",
     "not a readable PyTorch checkpoint (not a file written by torch.save)"),
    (b"", "not a readable PyTorch checkpoint (empty or truncated file)"),
])
def test_bad_files_fail_with_a_message_naming_the_file(tmp_path, content, words):
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        load_pretrained(SwinUnet(**TINY), path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_files_without_swin_weights_or_unsafe_pickles_are_refused(tmp_path):
    torch.save({"encoder.conv.weight": torch.zeros(3)}, tmp_path / "unet.pth")
    with pytest.raises(InputError, match="unet.pth: no Swin or Swin-Unet weights"):
        load_pretrained(SwinUnet(**TINY), tmp_path / "unet.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(InputError, match="list.pth: not a checkpoint"):
        load_pretrained(SwinUnet(**TINY), tmp_path / "list.pth")

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"model": Payload()}, protocol=2))
    with pytest.raises(InputError, match=r"evil.pth: not a readable PyTorch checkpoint "
                                         r"\(refused by safe loading: Unsupported global"):
        load_pretrained(SwinUnet(**TINY), tmp_path / "evil.pth")
