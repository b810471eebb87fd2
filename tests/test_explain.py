"""python -m swin_unet.explain: masks are the model's buffers, formula FLOPs match counted ones."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from swin_unet import SwinUnet
from swin_unet.explain import explain_model, msa_macs, window_ids, wmsa_macs
from swin_unet.explain.__main__ import main
from swin_unet.explain.figures import mask_figure, shift_figure
from swin_unet.model.attention import window_partition

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(embed_dim=12, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), drop_path_rate=0.0)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny(img_size=64, window_size=2, **kwargs) -> SwinUnet:
    torch.manual_seed(0)
    return SwinUnet(**{**TINY, "img_size": img_size, "window_size": window_size, **kwargs})


@pytest.fixture(scope="module")
def explained():
    model = tiny(in_chans=1, num_classes=4)
    return model, explain_model(model)


def test_pictured_mask_is_the_models_own_buffer(explained):
    model, explanation = explained
    assert [v.level for v in explanation.shifts] == [0, 1, 2]  # stage 3 (2x2 tokens) unshifted
    levels = len(model.depths)
    for view in explanation.shifts:
        buffer = model.plan.mask(view.level)
        assert view.mask is buffer
        assert view.mask.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr()
        # The tensor was captured from the forward pass: the encoder's and the decoder's shifted
        # blocks of this level both received this very object.
        assert f"layers.{view.level}.blocks.1.attn" in view.users
        assert f"layers_up.{levels - 1 - view.level}.blocks.1.attn" in view.users

        # The figure shows the mask's values, window i at its place in the window grid.
        image = np.ma.filled(mask_figure(view).axes[0].images[0].get_array(), np.nan)
        n, (rows, cols) = view.window ** 2, view.grid
        for i, window in enumerate(buffer):
            r, c = divmod(i, cols)
            # -inf (blocked) is drawn as -1; 0 (may attend) as itself.
            np.testing.assert_array_equal(image[r * (n + 1):r * (n + 1) + n,
                                                c * (n + 1):c * (n + 1) + n],
                                          np.where(np.isneginf(window.numpy()), -1.0,
                                                   window.numpy()))
        assert np.isnan(image[n, :]).all() and image.shape == (rows * (n + 1) - 1,
                                                               cols * (n + 1) - 1)


def test_coloured_regions_are_the_ones_the_mask_separates(explained):
    _, explanation = explained
    for view in explanation.shifts:
        h, w = view.resolution
        regions = window_partition(view.labels_after.view(1, h, w, 1), view.window).flatten(1)
        apart = regions[:, :, None] != regions[:, None, :]
        assert torch.equal(view.mask != 0, apart)
        assert view.mixed_windows == view.grid[0] + view.grid[1] - 1
        # "before" is the map the roll by (-s, -s) turns into "after".
        rolled = torch.roll(view.labels_before, (-view.shift, -view.shift), (0, 1))
        assert torch.equal(rolled, view.labels_after)
        fig = shift_figure(view)
        pictured = [np.asarray(ax.images[0].get_array()) for ax in fig.axes]
        np.testing.assert_array_equal(pictured[0], view.labels_before.numpy())
        np.testing.assert_array_equal(pictured[1], view.labels_after.numpy())


@pytest.mark.parametrize("img_size,window", [(64, 2), ((64, 128), 2), (96, 3)])
def test_formula_attention_flops_match_counted_matmuls(img_size, window):
    explanation = explain_model(tiny(img_size, window))
    for cost in explanation.attention:
        h, w = cost.resolution
        assert cost.matmul_macs == 2 * cost.window ** 2 * h * w * cost.channels
        assert cost.counted_matmul_macs == pytest.approx(cost.matmul_macs, rel=0.01)
        assert cost.counted_macs == pytest.approx(wmsa_macs(h, w, cost.channels, cost.window),
                                                  rel=0.01)
        assert cost.windows == (h // cost.window) * (w // cost.window)


def test_global_msa_formula_matches_a_model_with_one_window_per_stage():
    # With window 16 on a 64 input every stage is a single window: global attention, so the
    # counted cost must follow 4hwC^2 + 2(hw)^2 C, which exceeds the W-MSA formula with M = 2.
    explanation = explain_model(tiny(64, 16))
    for cost in explanation.attention:
        h, w = cost.resolution
        assert cost.windows == 1 and cost.window == h == w
        assert cost.counted_macs == pytest.approx(msa_macs(h, w, cost.channels), rel=0.01)
        if h > 2:
            assert msa_macs(h, w, cost.channels) > wmsa_macs(h, w, cost.channels, 2)


def test_window_ids_are_the_model_window_squares():
    ids = window_ids(12, 8, 4)
    assert ids.shape == (12, 8)
    for k in range(6):
        rows, cols = torch.nonzero(ids == k, as_tuple=True)
        assert rows.numel() == 16
        assert (rows.max() - rows.min(), cols.max() - cols.min()) == (3, 3)
        assert (int(rows.min()) // 4, int(cols.min()) // 4) == divmod(k, 2)


def test_parts_add_up_to_the_model(explained):
    model, explanation = explained
    assert sum(p.params for p in explanation.parts) == explanation.params
    assert explanation.params == sum(p.numel() for p in model.parameters())
    assert sum(p.flops for p in explanation.parts) == explanation.flops
    head = explanation.parts[-1]
    h0, w0 = model.plan.stages[0].resolution
    c, k = model.embed_dim, model.num_classes
    # 4x expanding Linear(C -> 16C) on the level-0 tokens, then the 1x1 projection per pixel.
    assert head.flops == 2 * (h0 * w0 * c * 16 * c + k * c * 64 * 64)
    stage0 = explanation.parts[1]
    assert stage0.attention_flops / 2 == sum(
        wmsa_macs(h0, w0, c, 2) for _ in range(model.depths[0]))


def _check_outputs(out: Path) -> dict:
    page = (out / "how_swin_unet_works.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert "swin_windows.png" in links and "swin_cost.png" in links
    for link in links:
        assert (out / link).read_bytes()[:8] == PNG_SIGNATURE
    data = json.loads((out / "swin_explain.json").read_text())
    for row in data["attention"]:
        assert row["counted_matmul_over_formula"] == pytest.approx(1.0, abs=0.01)
        assert row["counted_over_formula"] == pytest.approx(1.0, abs=0.01)
    for view in data["shifts"]:
        assert f"swin_mask_stage{view['level']}.png" in links
    return data


def test_command_default_224_window_7(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "swin_unet.explain", "--output", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    data = _check_outputs(tmp_path)
    assert round(data["params"] / 1e6, 2) == 27.17
    assert round(data["macs"] / 1e9, 1) == 6.1
    assert [s["resolution"] for s in data["stages"]] == [[56, 56], [28, 28], [14, 14], [7, 7]]
    assert [s["windows"] for s in data["stages"]] == [[8, 8], [4, 4], [2, 2], [1, 1]]
    assert [(v["level"], v["shift"], v["mask_shape"]) for v in data["shifts"]] == [
        (0, 3, [64, 49, 49]), (1, 3, [16, 49, 49]), (2, 3, [4, 49, 49])]
    assert data["attention"][0]["msa_over_wmsa"] > 13 and data["attention"][3]["msa_over_wmsa"] == 1
    # The committed docs/ page is this command's output: regenerate it when the model changes
    # (python -m swin_unet.explain --output docs/).
    docs = ROOT / "docs"
    assert json.loads((docs / "swin_explain.json").read_text()) == data
    page = (tmp_path / "how_swin_unet_works.md").read_text()
    assert page.replace(f"--output {tmp_path}", "--output docs/") == (
        docs / "how_swin_unet_works.md").read_text()


def test_command_256_window_8(tmp_path, capsys):
    # The 256/8 geometry does not depend on the widths: tiny channels keep the test fast.
    assert main(["--output", str(tmp_path), "--img-size", "256", "--window-size", "8",
                 "--embed-dim", "12", "--num-heads", "1", "1", "2", "2"]) == 0
    data = _check_outputs(tmp_path)
    assert [s["resolution"] for s in data["stages"]] == [[64, 64], [32, 32], [16, 16], [8, 8]]
    assert [s["shifts"] for s in data["stages"]] == [[0, 4], [0, 4], [0, 4], [0, 0]]
    assert [v["mask_shape"] for v in data["shifts"]] == [[64, 64, 64], [16, 64, 64], [4, 64, 64]]
    assert "--window-size 8" in (tmp_path / "how_swin_unet_works.md").read_text()


@pytest.mark.parametrize("args,named", [(["--img-size", "100"], "img_size"),
                                        (["--window-size", "5"], "window_size"),
                                        (["--num-heads", "5", "6", "12", "24"], "num_heads")])
def test_bad_settings_exit_2_with_one_line(tmp_path, capsys, args, named):
    assert main(["--output", str(tmp_path / "out")] + args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and named in err
    assert not (tmp_path / "out").exists()


def test_missing_matplotlib_exits_2_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    assert main(["--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "matplotlib" in err
    assert not (tmp_path / "out").exists()


def test_output_that_is_a_file_exits_2(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("")
    assert main(["--output", str(target), "--img-size", "64", "--window-size", "2",
                 "--embed-dim", "12", "--num-heads", "1", "1", "1", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(target) in err


def test_config_model_section_sets_defaults_and_flags_override(tmp_path):
    config = tmp_path / "model.yaml"
    config.write_text("model:\n  img_size: 64\n  window_size: 2\n  embed_dim: 12\n"
                      "  num_heads: [1, 1, 1, 1]\n  in_chans: 1\n  num_classes: 4\n")
    out = tmp_path / "out"
    assert main(["--output", str(out), "--config", str(config), "--img-size", "64x128"]) == 0
    settings = json.loads((out / "swin_explain.json").read_text())["settings"]
    assert settings["img_size"] == [64, 128] and settings["in_chans"] == 1
    assert settings["embed_dim"] == 12 and settings["num_classes"] == 4
