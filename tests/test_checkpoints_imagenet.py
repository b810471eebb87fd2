"""load_pretrained on every public ImageNet Swin layout, at the file's window and at others."""

import math
import re

import numpy as np
import pytest
import torch

from swin_unet import SwinUnet, load_pretrained

T_HEADS, B_HEADS = (3, 6, 12, 24), (4, 8, 16, 32)
# Microsoft's files (FACTS.md): depths, heads, window, input size, head classes. The tests write
# them at a small width (embed 12 or 16): names, depths, heads, windows and table shapes are the
# real ones, only the channel counts shrink.
LAYOUTS = {
    "swin_tiny_patch4_window7_224": ((2, 2, 6, 2), T_HEADS, 7, 224, 1000),
    "swin_small_patch4_window7_224": ((2, 2, 18, 2), T_HEADS, 7, 224, 1000),
    "swin_base_patch4_window7_224": ((2, 2, 18, 2), B_HEADS, 7, 224, 1000),
    "swin_base_patch4_window7_224_22k": ((2, 2, 18, 2), B_HEADS, 7, 224, 21841),
    "swin_base_patch4_window12_384": ((2, 2, 18, 2), B_HEADS, 12, 384, 1000),
    "swin_base_patch4_window12_384_22k": ((2, 2, 18, 2), B_HEADS, 12, 384, 21841),
}
TABLE = "attn.relative_position_bias_table"


def swin_checkpoint(path, depths, heads, window, img_size, classes, embed, seed=0):
    """Write random tensors with the key names and shapes of Microsoft's ImageNet Swin files."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen) * 0.02

    state = {"patch_embed.proj.weight": rand(embed, 3, 4, 4), "patch_embed.proj.bias": rand(embed),
             "patch_embed.norm.weight": rand(embed), "patch_embed.norm.bias": rand(embed)}
    for i, (depth, h) in enumerate(zip(depths, heads)):
        c, res = embed << i, img_size // 4 >> i
        m = min(window, res)
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            shapes = {"norm1.weight": (c,), "norm1.bias": (c,), TABLE: ((2 * m - 1) ** 2, h),
                      "attn.qkv.weight": (3 * c, c), "attn.qkv.bias": (3 * c,),
                      "attn.proj.weight": (c, c), "attn.proj.bias": (c,), "norm2.weight": (c,),
                      "norm2.bias": (c,), "mlp.fc1.weight": (4 * c, c), "mlp.fc1.bias": (4 * c,),
                      "mlp.fc2.weight": (c, 4 * c), "mlp.fc2.bias": (c,)}
            state.update({p + k: rand(*shape) for k, shape in shapes.items()})
            state[p + "attn.relative_position_index"] = torch.randint(0, (2 * m - 1) ** 2,
                                                                      (m * m, m * m))
            if j % 2 and res > window:
                state[p + "attn_mask"] = torch.zeros((res // m) ** 2, m * m, m * m)
        if i < len(depths) - 1:
            state[f"layers.{i}.downsample.reduction.weight"] = rand(2 * c, 4 * c)
            state[f"layers.{i}.downsample.norm.weight"] = rand(4 * c)
            state[f"layers.{i}.downsample.norm.bias"] = rand(4 * c)
    last = embed << (len(depths) - 1)
    state.update({"norm.weight": rand(last), "norm.bias": rand(last),
                  "head.weight": rand(classes, last), "head.bias": rand(classes)})
    for key in state:  # LayerNorm gains near 1, as trained ones are (0.02 would vanish signals)
        if re.search(r"norm\d?\.weight$", key):
            state[key] += 1
    torch.save({"model": state}, path)
    return state


def bicubic_oracle(grid: np.ndarray, size: int) -> np.ndarray:
    """(C, n, n) -> (C, size, size) by Keys' cubic convolution (a = -0.75), written out here:
    half-pixel centres, source = (i + 0.5) * n / size - 0.5, edge samples repeated."""
    a = -0.75

    def kernel(x):
        x = abs(x)
        if x <= 1:
            return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
        return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a if x < 2 else 0.0

    n = grid.shape[-1]
    weights = np.zeros((size, n))
    for i in range(size):
        src = (i + 0.5) * n / size - 0.5
        base = math.floor(src)
        for k in range(base - 1, base + 3):
            weights[i, min(max(k, 0), n - 1)] += kernel(src - k)
    return np.einsum("ij,cjk,lk->cil", weights, grid, weights)


def resized_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """The oracle applied to a ((2M-1)^2, heads) table, back in the table's layout."""
    side, heads = math.isqrt(table.shape[0]), table.shape[1]
    grid = table.double().numpy().T.reshape(heads, side, side)
    out = bicubic_oracle(grid, 2 * window - 1)
    return torch.from_numpy(out.reshape(heads, -1).T.copy()).float()


def encoder_keys(model):
    return [k for k in model.state_dict() if k.startswith(("patch_embed.", "layers.", "norm."))]


def assert_encoder_and_decoder_blocks_filled(model, report):
    missing = set(report.missing)
    assert not missing & set(encoder_keys(model))
    assert not [k for k in missing if ".blocks." in k]


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_public_layout_fills_a_model_of_its_size(tmp_path, name):
    depths, heads, window, img_size, classes = LAYOUTS[name]
    embed = 16 if heads == B_HEADS else 12
    state = swin_checkpoint(tmp_path / f"{name}.pth", depths, heads, window, img_size, classes,
                            embed)
    model = SwinUnet(img_size=img_size, window_size=window, embed_dim=embed, depths=depths,
                     num_heads=heads, in_chans=3)
    report = load_pretrained(model, tmp_path / f"{name}.pth")
    assert_encoder_and_decoder_blocks_filled(model, report)
    assert report.interpolated == {} and report.converted == {}
    own = model.state_dict()
    for key in encoder_keys(model):
        assert torch.equal(own[key], state[key]), key
    last = depths[2] - 1  # the mirror: encoder stage 2 -> up-stage 1, every block
    assert torch.equal(own[f"layers_up.1.blocks.{last}.{TABLE}"],
                       state[f"layers.2.blocks.{last}.{TABLE}"])
    # Skipped: the head (1k or 22k classes) and the buffers the model builds itself, no more.
    assert {k for k, why in report.skipped.items() if why == "classification head"} == \
        {"head.weight", "head.bias"}
    rebuilt = [k for k in state if k.endswith(("relative_position_index", "attn_mask"))]
    assert sorted(report.skipped) == sorted(rebuilt + ["head.weight", "head.bias"])


@pytest.mark.parametrize("layout,img_size,window", [
    ("swin_tiny_patch4_window7_224", 256, 8),         # 13x13 tables -> 15x15
    ("swin_base_patch4_window12_384", 224, 7),        # 23x23 -> 13x13
])
def test_bias_tables_of_another_window_are_resized_bicubically(tmp_path, layout, img_size, window):
    depths, heads, file_window, file_size, classes = LAYOUTS[layout]
    embed = 16 if heads == B_HEADS else 12
    state = swin_checkpoint(tmp_path / "in.pth", depths, heads, file_window, file_size, classes,
                            embed)
    model = SwinUnet(img_size=img_size, window_size=window, embed_dim=embed, depths=depths,
                     num_heads=heads, in_chans=1)
    report = load_pretrained(model, tmp_path / "in.pth")
    assert_encoder_and_decoder_blocks_filled(model, report)
    own = model.state_dict()
    tables = [k for k in own if k.endswith(TABLE)]
    assert sorted(report.interpolated) == sorted(tables)
    for key in tables:
        source = key.replace("layers_up.", "layers.")
        if key.startswith("layers_up."):
            level = len(depths) - 1 - int(key.split(".")[1])
            source = f"layers.{level}." + key.split(".", 2)[2]
        expected = resized_table(state[source], window)
        assert own[key].shape == ((2 * window - 1) ** 2, heads[int(source.split(".")[1])])
        assert (own[key] - expected).abs().max() < 1e-6, key
    assert report.interpolated[f"layers.0.blocks.0.{TABLE}"] == \
        f"bicubic {2 * file_window - 1}x{2 * file_window - 1} -> " \
        f"{2 * window - 1}x{2 * window - 1}, window {file_window} -> {window}"


def test_report_counts_for_swin_t_into_a_tiny_lite_model_at_256(tmp_path):
    """Counted from the layout: Swin-T has 13 parameter tensors per block, 12 blocks."""
    swin_checkpoint(tmp_path / "t.pth", (2, 2, 6, 2), T_HEADS, 7, 224, 1000, 12)
    model = SwinUnet(img_size=256, window_size=8, embed_dim=12, depths=(2, 2, 2, 2),
                     num_heads=T_HEADS, in_chans=1)
    report = load_pretrained(model, tmp_path / "t.pth")
    # Encoder: 8 blocks x 13 tensors, 4 patch embedding, 3 x 3 merging, 2 norm; the decoder's
    # 6 blocks repeat them. Tables (8 + 6) are interpolated, the RGB kernel summed.
    assert len(report.converted) == 1
    assert len(report.interpolated) == 8 + 6
    assert len(report.loaded) == (8 * 12 + 3 + 9 + 2) + 6 * 12
    beyond = [k for k, why in report.skipped.items()
              if why == "block beyond the model's depth (stage 2 has 2 blocks)"]
    assert len(beyond) == 4 * 13  # stage-2 blocks 2-5 of Swin-T
    # 12 index buffers, masks of the 5 shifted blocks (stages 0-2), the head.
    assert len(report.skipped) == len(beyond) + 12 + 5 + 2
    # Left at initialisation: patch expanding (3 + 2 x 3), fusion linears (3 x 2), norm_up (2),
    # the 4x expand (3) and the output convolution (1).
    assert len(report.missing) == 3 + 6 + 6 + 2 + 3 + 1
    assert "14 interpolated" in report.summary().splitlines()[0]


def test_a_table_with_another_head_count_is_not_loaded(tmp_path):
    swin_checkpoint(tmp_path / "b.pth", (2, 2, 2, 2), B_HEADS, 7, 224, 1000, 12)
    model = SwinUnet(img_size=224, window_size=7, embed_dim=12, depths=(2, 2, 2, 2),
                     num_heads=T_HEADS, in_chans=3)
    report = load_pretrained(model, tmp_path / "b.pth")
    why = report.skipped[f"layers.1.blocks.0.{TABLE}"]
    assert why == "bias table for 8 heads in the file, 6 in the model"
    assert f"layers.1.blocks.0.{TABLE}" in report.missing
    assert "layers.1.blocks.0.attn.qkv.weight" in report.loaded
    assert not report.interpolated


@pytest.mark.parametrize("img_size,window", [(256, 8), (384, 12), (512, 16), ((256, 512), 8)])
def test_any_size_loads_imagenet_weights_and_trains_a_step(tmp_path, img_size, window):
    """The paper's tiny-lite depths from a Swin-T file, at sizes whose windows differ from 7."""
    swin_checkpoint(tmp_path / "t.pth", (2, 2, 6, 2), T_HEADS, 7, 224, 1000, 12)
    torch.manual_seed(0)
    model = SwinUnet(img_size=img_size, window_size=window, embed_dim=12, depths=(2, 2, 2, 2),
                     num_heads=T_HEADS, in_chans=1, num_classes=3, drop_path_rate=0.0)
    report = load_pretrained(model, tmp_path / "t.pth")
    assert_encoder_and_decoder_blocks_filled(model, report)
    assert len(report.interpolated) == 8 + 6  # every table: 8 encoder blocks, 6 mirrored
    h, w = model.img_size
    x, target = torch.rand(1, 1, h, w), torch.randint(0, 3, (1, h, w))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and loss > 0
    for name, param in model.named_parameters():
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name


@pytest.mark.slow
@pytest.mark.parametrize("layout,kwargs", [
    ("swin_base_patch4_window12_384_22k", dict(img_size=384, window_size=12, embed_dim=128,
                                               depths=(2, 2, 18, 2), num_heads=B_HEADS)),
    ("swin_tiny_patch4_window7_224", dict(img_size=256, window_size=8)),
])
def test_full_size_swin_b_384_and_tiny_256_start_with_every_encoder_tensor(tmp_path, layout,
                                                                          kwargs):
    depths, heads, window, img_size, classes = LAYOUTS[layout]
    swin_checkpoint(tmp_path / "in.pth", depths, heads, window, img_size, classes,
                    128 if heads == B_HEADS else 96)
    model = SwinUnet(in_chans=1, num_classes=9, **kwargs)
    report = load_pretrained(model, tmp_path / "in.pth")
    assert_encoder_and_decoder_blocks_filled(model, report)
    assert not [k for k, why in report.skipped.items() if why.startswith(("shape", "bias"))]
