"""The Markdown page and the JSON numbers of ``python -m swin_unet.explain``."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .analysis import Explanation
from .figures import save_figures

__all__ = ["explanation_to_dict", "render_markdown", "write_explanation", "MARKDOWN_NAME",
           "JSON_NAME"]

MARKDOWN_NAME = "how_swin_unet_works.md"
JSON_NAME = "swin_explain.json"


def explanation_to_dict(e: Explanation) -> dict:
    """Every number of the explanation as plain JSON types (masks as summaries, not values)."""
    return {
        "settings": e.settings,
        "params": e.params,
        "flops": e.flops,
        "macs": e.flops / 2,
        "unit_note": "flops as counted by torch.utils.flop_counter (2 per multiply-add); "
                     "*_macs are multiply-adds",
        "stages": [{"level": s.level, "resolution": list(s.resolution), "tokens": s.tokens,
                    "patch_px": s.patch_px, "channels": s.channels, "heads": s.heads,
                    "window": s.window, "windows": list(s.windows), "shifts": list(s.shifts)}
                   for s in e.stages],
        "shifts": [{"level": v.level, "window": v.window, "shift": v.shift,
                    "mask_shape": list(v.mask.shape), "windows": v.mask.shape[0],
                    "padded_windows": v.padded_windows, "mixed_windows": v.mixed_windows,
                    "masked_fraction": v.masked_fraction, "mask_users": v.users}
                   for v in e.shifts],
        "attention": [{"level": a.level, "tokens": a.tokens, "windows": a.windows,
                       "channels": a.channels, "window": a.window, "blocks": a.blocks,
                       "msa_macs": a.msa_macs, "wmsa_macs": a.wmsa_macs,
                       "msa_over_wmsa": a.msa_over_wmsa, "counted_macs": a.counted_macs,
                       "counted_over_formula": a.counted_macs / a.wmsa_macs,
                       "matmul_macs": a.matmul_macs, "counted_matmul_macs": a.counted_matmul_macs,
                       "counted_matmul_over_formula": a.counted_matmul_macs / a.matmul_macs}
                      for a in e.attention],
        "parts": [{"name": p.name, "params": p.params, "flops": p.flops,
                   "attention_flops": p.attention_flops, "mlp_flops": p.mlp_flops}
                  for p in e.parts],
    }


def _m(macs: float) -> str:
    return f"{macs / 1e6:,.1f}"


def _size(pair) -> str:
    return f"{pair[0]}x{pair[1]}"


def _settings_line(e: Explanation) -> str:
    s = e.settings
    return (f"input {_size(s['img_size'])}, in_chans {s['in_chans']}, num_classes "
            f"{s['num_classes']}, patch {s['patch_size']}, embed_dim {s['embed_dim']}, depths "
            f"{tuple(s['depths'])}, heads {tuple(s['num_heads'])}, window {s['window_size']}")


def _windows_section(e: Explanation, figures: dict[str, str]) -> list[str]:
    first, last = e.stages[0], e.stages[-1]
    lines = [
        "## 1. Patches and windows at every encoder stage", "",
        f"The patch embedding cuts the image into {first.patch_px}x{first.patch_px} px patches: "
        f"{_size(first.resolution)} tokens of {first.channels} channels. Each patch merging "
        "concatenates every 2x2 group of neighbouring tokens (4C channels) and projects it to 2C: "
        "four times fewer tokens, each standing for a patch twice as wide. Attention always works "
        "inside windows of M x M tokens, so a window covers four times more of the image at every "
        f"stage; at the last stage ({_size(last.resolution)} tokens, window {last.window}) "
        + ("one window covers the whole image." if last.windows == (1, 1)
           else f"{last.windows[0]}x{last.windows[1]} windows cover the image."),
        "", f"![Patches and windows per stage]({figures['windows']})", "",
        "| stage | tokens (h x w) | patch (px) | channels C | heads | window M (tokens) | "
        "window (px) | windows | block shifts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in e.stages:
        lines.append(
            f"| {s.level} | {_size(s.resolution)} = {s.tokens} | {s.patch_px} | {s.channels} | "
            f"{s.heads} | {s.window} | {s.window * s.patch_px} | "
            f"{s.windows[0]}x{s.windows[1]} = {s.windows[0] * s.windows[1]} | "
            f"{', '.join(map(str, s.shifts))} |")
    lines.append("")
    unshifted = [s.level for s in e.stages if not any(s.shifts)]
    if unshifted:
        one = all(s.windows == (1, 1) for s in e.stages if s.level in unshifted)
        lines += [f"A stage whose smaller side is no larger than the window (stage "
                  f"{', '.join(map(str, unshifted))}) uses a window equal to that side and no "
                  "shifted block, as in the original design"
                  + ("; here that is one window over the whole map, in which every token "
                     "already attends to every other." if one else "."), ""]
    return lines


def _shift_section(e: Explanation, figures: dict[str, str]) -> list[str]:
    lines = [
        "## 2. Shifted windows (SW-MSA)", "",
        "Blocks alternate: W-MSA attends inside the regular window grid, the next block (SW-MSA) "
        "inside a grid moved by s = M // 2 tokens, so tokens near a window border meet their "
        "neighbours across it. Instead of cutting extra, smaller windows at the border, the model "
        "rolls the map by (-s, -s) (`torch.roll`), attends in the regular grid, and rolls back. "
        "After the roll, the windows along the bottom and right edges hold tokens that came from "
        "opposite sides of the image; the shift mask adds -inf (the original code: -100) to the "
        "attention logits between "
        "tokens of different regions, so they do not attend to each other. The regions are the "
        "row and column slices [0, H-M), [H-M, H-s), [H-s, H) of the rolled map "
        "(`shift_region_labels`).", "",
        "The masks below are the tensors the model passed to its shifted blocks in a real forward "
        "pass (`model.plan.mask(level)`); each stage lists the attention modules that received "
        "that very tensor.", "",
    ]
    if not e.shifts:
        return lines + ["No stage of this model has a shifted block (every map fits one window).",
                        ""]
    for v in e.shifts:
        lines += [
            f"### Stage {v.level}: {_size(v.resolution)} tokens, window {v.window}, shift "
            f"{v.shift}", "",
            f"- {v.mask.shape[0]} windows in the shifted block, as many as in the regular one "
            f"(a grid moved without the roll would need {v.padded_windows}, padded);",
            f"- {v.mixed_windows} of them hold tokens of several regions; the mask blocks "
            f"{100 * v.masked_fraction:.1f}% of the stage's (query, key) pairs;",
            f"- mask tensor {tuple(v.mask.shape)}, passed to "
            f"{', '.join(f'`{u}`' for u in v.users)}.", "",
            f"![Stage {v.level} before and after the cyclic shift]({figures[f'shift{v.level}']})",
            "",
            f"![Stage {v.level} attention masks]({figures[f'mask{v.level}']})", "",
        ]
    return lines


def _attention_section(e: Explanation) -> list[str]:
    lines = [
        "## 3. What window attention saves", "",
        "For h x w tokens of C channels, global multi-head self-attention costs "
        "4hwC^2 + 2(hw)^2 C multiply-adds (4hwC^2 for the qkv and output projections, "
        "2(hw)^2 C for q k^T and the weighted sum of v); window attention with M x M windows "
        "costs 4hwC^2 + 2M^2 hwC, linear in the number of tokens. The table gives one attention "
        "layer (a stage has `blocks` of them) in **millions of multiply-adds (MMAC)**. "
        "`counted` is what `torch.utils.flop_counter` measured on the model's attention modules "
        "in one forward pass of one image, halved (the counter counts 2 FLOPs per multiply-add); "
        "`matmuls` is the 2M^2 hwC term alone against the counted `q k^T` and `attn v` matmuls.",
        "",
        "| stage | tokens hw | windows | C | M | blocks | global MSA | W-MSA (formula) | "
        "MSA / W-MSA | W-MSA (counted) | counted / formula | matmuls (formula) | "
        "matmuls (counted) | matmuls counted / formula |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in e.attention:
        lines.append(
            f"| {a.level} | {a.tokens} | {a.windows} | {a.channels} | {a.window} | {a.blocks} | "
            f"{_m(a.msa_macs)} | {_m(a.wmsa_macs)} | {a.msa_over_wmsa:.2f} | "
            f"{_m(a.counted_macs)} | {a.counted_macs / a.wmsa_macs:.4f} | {_m(a.matmul_macs)} | "
            f"{_m(a.counted_matmul_macs)} | {a.counted_matmul_macs / a.matmul_macs:.4f} |")
    first = e.attention[0]
    lines += ["", f"At stage {first.level} global attention would cost "
              f"{first.msa_over_wmsa:.1f} times as much as window attention; at a stage with "
              "one window the two are the same.", ""]
    return lines


def _parts_section(e: Explanation, figures: dict[str, str]) -> list[str]:
    lines = [
        "## 4. Parameters and cost of the whole model", "",
        f"**{e.params / 1e6:.2f} M parameters, {e.flops / 2e9:.2f} G multiply-adds "
        f"({e.flops / 1e9:.2f} GFLOP) per {_size(e.settings['img_size'])} image**, counted by "
        "`torch.utils.flop_counter` (matmuls and convolutions; norms, softmax, GELU and additions "
        "are not counted). Decoder up-stage u works at the resolution of encoder stage "
        f"{len(e.stages) - 1} - u.", "",
        "| part | parameters (M) | GMAC | of which attention | of which MLP |",
        "|---|---|---|---|---|",
    ]
    for p in e.parts:
        lines.append(f"| {p.name} | {p.params / 1e6:.3f} | {p.flops / 2e9:.3f} | "
                     f"{p.attention_flops / 2e9:.3f} | {p.mlp_flops / 2e9:.3f} |")
    lines += [f"| **total** | **{e.params / 1e6:.3f}** | **{e.flops / 2e9:.3f}** | "
              f"{sum(p.attention_flops for p in e.parts) / 2e9:.3f} | "
              f"{sum(p.mlp_flops for p in e.parts) / 2e9:.3f} |", "",
              f"![Attention cost per stage and cost of each part]({figures['cost']})", ""]
    return lines


def render_markdown(e: Explanation, figures: dict[str, str], command: str) -> str:
    """The Markdown page; ``figures`` maps figure keys to paths relative to the page."""
    lines = [
        "# How Swin-Unet works", "",
        f"Generated by `{command}` from this project's model code (`swin_unet/model`): every "
        "figure and number below comes from a `SwinUnet` built with these settings and from one "
        "forward pass of it, so they cannot disagree with the model. Model: "
        f"{_settings_line(e)}.", "",
    ]
    lines += _windows_section(e, figures)
    lines += _shift_section(e, figures)
    lines += _attention_section(e)
    lines += _parts_section(e, figures)
    return "\n".join(lines)


def write_explanation(explanation: Explanation, output, command: str) -> list[Path]:
    """Write the figures (PNG), the Markdown page and the JSON numbers into ``output``.

    Returns:
        The files written, figures first.

    Raises:
        InputError: ``output`` cannot be created or written, or matplotlib is missing.
    """
    output = Path(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
        figures = save_figures(explanation, output)
        (output / MARKDOWN_NAME).write_text(render_markdown(explanation, figures, command) + "\n")
        (output / JSON_NAME).write_text(json.dumps(explanation_to_dict(explanation), indent=1)
                                        + "\n")
    except OSError as exc:
        raise InputError(f"{output}: cannot write the explanation "
                         f"({exc.strerror or exc})") from None
    return [output / name for name in figures.values()] + [output / MARKDOWN_NAME,
                                                            output / JSON_NAME]
