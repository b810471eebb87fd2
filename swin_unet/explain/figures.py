"""Matplotlib figures of the windows, the cyclic shift, the shift masks and the costs."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .analysis import AttentionCost, Explanation, PartCost, ShiftView, StageView, window_ids

__all__ = ["require_matplotlib", "mask_mosaic", "windows_figure", "shift_figure", "mask_figure",
           "cost_figure", "save_figures"]

# Nine distinct colours for the nine shift regions (matplotlib's tab10 without its grey).
REGION_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#bcbd22", "#17becf"]


def require_matplotlib():
    """The matplotlib module, or an :class:`InputError` saying how to install it.

    matplotlib is an optional dependency of ``python -m swin_unet.explain`` only.
    """
    try:
        return importlib.import_module("matplotlib")
    except ImportError:
        raise InputError("matplotlib is not installed: it is needed to draw the figures of "
                         "swin_unet.explain (pip install matplotlib)") from None


def _figure(width: float, height: float):
    # A bare Figure keeps clear of pyplot's global state and backend (no display needed).
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _grid_lines(ax, h: int, w: int, step: int, offset: int = 0, scale: float = 1.0, **style):
    for y in range(offset % step, h + 1, step):
        ax.axhline(y * scale, **style)
    for x in range(offset % step, w + 1, step):
        ax.axvline(x * scale, **style)


def windows_figure(stages: list[StageView]):
    """One panel per encoder stage: the image cut into its patches (thin) and windows (thick).

    Windows are shaded in a checkerboard computed from the model's ``window_order``.
    """
    from matplotlib.colors import ListedColormap

    fig = _figure(3.2 * len(stages), 3.8)
    axes = fig.subplots(1, len(stages), squeeze=False)[0]
    for ax, stage in zip(axes, stages):
        h, w = stage.resolution
        ids = window_ids(h, w, stage.window)
        parity = ((ids // stage.windows[1]) + (ids % stage.windows[1])) % 2
        p = stage.patch_px
        ax.imshow(parity.numpy(), cmap=ListedColormap(["#dbe9f6", "#f6e3c8"]),
                  extent=(0, w * p, h * p, 0), interpolation="nearest")
        _grid_lines(ax, h, w, 1, scale=p, color="0.45", linewidth=0.3)
        _grid_lines(ax, h, w, stage.window, scale=p, color="black", linewidth=1.6)
        ax.set_title(f"stage {stage.level}: {h}x{w} patches of {p}x{p} px\n"
                     f"C={stage.channels}, {stage.windows[0]}x{stage.windows[1]} window(s) of "
                     f"{stage.window}x{stage.window} patches", fontsize=9)
        ax.set_xlabel("input pixels", fontsize=8)
        ax.tick_params(labelsize=7)
    return fig


def _draw_regions(ax, labels: torch.Tensor, title: str) -> None:
    from matplotlib.colors import ListedColormap

    ax.imshow(labels.numpy(), cmap=ListedColormap(REGION_COLORS), vmin=-0.5, vmax=8.5,
              interpolation="nearest", extent=(0, labels.shape[1], labels.shape[0], 0))
    for region in range(9):
        rows, cols = torch.nonzero(labels == region, as_tuple=True)
        if rows.numel():
            ax.text(float(cols.float().mean()) + 0.5, float(rows.float().mean()) + 0.5,
                    str(region), ha="center", va="center", fontsize=8, color="white",
                    fontweight="bold")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)


def shift_figure(view: ShiftView):
    """The stage's map before and after the cyclic shift, its 9 regions coloured.

    Left, the map as the previous block left it, with the windows of the shifted block drawn
    where they fall (the regular grid moved by ``shift``); right, the map rolled by
    (-shift, -shift), cut by the regular grid: the windows along the bottom and right edges
    hold tokens of several regions, which the mask keeps apart.
    """
    h, w = view.resolution
    fig = _figure(8.4, 4.6)
    before, after = fig.subplots(1, 2)
    _draw_regions(before, view.labels_before,
                  f"before the shift: shifted windows ({view.window}x{view.window}) "
                  f"start at row/column {view.shift}")
    _grid_lines(before, h, w, view.window, offset=view.shift, color="black", linewidth=1.4)
    _draw_regions(after, view.labels_after,
                  f"after torch.roll by ({-view.shift}, {-view.shift}): "
                  f"{view.grid[0]}x{view.grid[1]} windows")
    _grid_lines(after, h, w, view.window, color="black", linewidth=1.4)
    fig.suptitle(f"Stage {view.level}: shifted block on {h}x{w} tokens, window {view.window}, "
                 f"shift {view.shift}", fontsize=10)
    return fig


def mask_mosaic(mask: torch.Tensor, grid: tuple[int, int], gap: int = 1) -> np.ndarray:
    """The (num_windows, N, N) mask laid out as the window grid, NaN between windows.

    Window i = r * grid[1] + c (row-major, as ``window_partition`` numbers them) sits at
    rows r * (N + gap) and columns c * (N + gap).
    """
    values = mask.detach().cpu().float().numpy()
    n = values.shape[-1]
    rows, cols = grid
    mosaic = np.full((rows * (n + gap) - gap, cols * (n + gap) - gap), np.nan, dtype=np.float32)
    for i, window in enumerate(values):
        r, c = divmod(i, cols)
        mosaic[r * (n + gap):r * (n + gap) + n, c * (n + gap):c * (n + gap) + n] = window
    return mosaic


def mask_figure(view: ShiftView):
    """Every window's (M^2 x M^2) attention mask, from the tensor the model used, as one image."""
    from matplotlib.colors import ListedColormap

    mosaic = mask_mosaic(view.mask, view.grid)
    side = min(9.0, max(6.5, mosaic.shape[1] / 60))
    fig = _figure(side, side * mosaic.shape[0] / mosaic.shape[1] + 0.9)
    ax = fig.subplots()
    cmap = ListedColormap(["#2b2b2b", "#f4f4f4"]).with_extremes(bad="#e0b040")
    # Values are the mask's own: 0 where a query may attend to a key, -inf where it may not
    # (drawn as -1: imshow treats infinities as missing, the colour of the gaps).
    low = float(view.mask.min())
    shown = np.where(np.isneginf(mosaic), np.float32(-1.0), mosaic)
    ax.imshow(shown, cmap=cmap, vmin=min(float(np.nanmin(shown)), -1.0), vmax=0.0,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    n = view.window ** 2
    ax.set_title(f"model.plan.mask({view.level}): {tuple(view.mask.shape)}, one {n}x{n} block per "
                 f"window (query rows, key columns)\nlight = 0 (may attend), dark = "
                 f"{low:g} (masked); {view.mixed_windows} of "
                 f"{view.mask.shape[0]} windows mix regions", fontsize=9)
    return fig


def cost_figure(attention: list[AttentionCost], parts: list[PartCost]):
    """Left: per encoder stage, one attention layer's MSA and W-MSA cost, formula and counted.
    Right: multiply-adds and parameters of each part of the network."""
    fig = _figure(12.0, 4.8)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.4])
    x = np.arange(len(attention))
    bars = [("global MSA (formula)", [a.msa_macs for a in attention], "#d62728"),
            ("W-MSA (formula)", [a.wmsa_macs for a in attention], "#1f77b4"),
            ("W-MSA (counted)", [a.counted_macs for a in attention], "#9ecae1")]
    for k, (label, values, color) in enumerate(bars):
        left.bar(x + (k - 1) * 0.27, np.array(values) / 1e6, 0.27, label=label, color=color)
    left.set_xticks(x, [f"stage {a.level}\n{a.resolution[0]}x{a.resolution[1]}\nC={a.channels}"
                        for a in attention], fontsize=8)
    left.set_ylabel("M multiply-adds per attention layer")
    left.legend(fontsize=8)
    left.set_title("Attention cost per layer", fontsize=10)

    y = np.arange(len(parts))[::-1]
    right.barh(y, [p.flops / 2e9 for p in parts], color="#6baed6")
    for yi, part in zip(y, parts):
        right.text(part.flops / 2e9, yi, f"  {part.params / 1e6:.3g} M params", va="center",
                   fontsize=7)
    right.set_yticks(y, [p.name for p in parts], fontsize=7)
    right.set_xlabel("G multiply-adds per image")
    right.set_xlim(0, max(p.flops for p in parts) / 2e9 * 1.45)
    right.set_title("Whole model by part", fontsize=10)
    return fig


def save_figures(explanation: Explanation, output: Path) -> dict[str, str]:
    """Draw every figure into ``output`` as PNG.

    Returns:
        Figure key (``windows``, ``shift{level}``, ``mask{level}``, ``cost``) -> file name.

    Raises:
        InputError: matplotlib is not installed.
    """
    require_matplotlib()
    figures = {"windows": ("swin_windows.png", windows_figure(explanation.stages))}
    for view in explanation.shifts:
        figures[f"shift{view.level}"] = (f"swin_shift_stage{view.level}.png", shift_figure(view))
        figures[f"mask{view.level}"] = (f"swin_mask_stage{view.level}.png", mask_figure(view))
    figures["cost"] = ("swin_cost.png", cost_figure(explanation.attention, explanation.parts))
    names = {}
    for key, (name, fig) in figures.items():
        fig.savefig(output / name, dpi=100)
        names[key] = name
    return names
