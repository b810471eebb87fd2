"""The numbers behind the explanation: stage geometry, shift masks, attention cost, model cost."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..model.attention import shift_region_labels, window_order
from .trace import AttentionCall, ModelTrace, trace_model

__all__ = [
    "msa_macs",
    "wmsa_macs",
    "StageView",
    "ShiftView",
    "AttentionCost",
    "PartCost",
    "Explanation",
    "window_ids",
    "explain_model",
]


def msa_macs(h: int, w: int, channels: int) -> int:
    """Multiply-adds of global multi-head self-attention over h x w tokens: 4hwC^2 + 2(hw)^2 C."""
    return 4 * h * w * channels ** 2 + 2 * (h * w) ** 2 * channels


def wmsa_macs(h: int, w: int, channels: int, window: int) -> int:
    """Multiply-adds of window attention with M x M windows: 4hwC^2 + 2 M^2 hw C."""
    return 4 * h * w * channels ** 2 + 2 * window ** 2 * h * w * channels


def window_ids(h: int, w: int, window: int, shift: int = 0) -> torch.Tensor:
    """(h, w) index of the window each token of the (unrolled) map attends in.

    Built with the model's :func:`~swin_unet.model.attention.window_order`: position k of the
    window-partitioned sequence belongs to window k // M^2.
    """
    order = window_order(h, w, window, shift)
    ids = torch.empty(h * w, dtype=torch.long)
    ids[order] = torch.arange(h * w) // (window * window)
    return ids.view(h, w)


@dataclass(frozen=True)
class StageView:
    """One encoder stage as the model built it.

    ``patch_px`` is the side, in input pixels, of the image patch one token stands for;
    ``windows`` is (rows, columns) of the window grid; ``shifts`` the shift of each block.
    """

    level: int
    resolution: tuple[int, int]
    patch_px: int
    channels: int
    heads: int
    window: int
    windows: tuple[int, int]
    shifts: tuple[int, ...]

    @property
    def tokens(self) -> int:
        """Tokens of the stage's feature map."""
        return self.resolution[0] * self.resolution[1]


@dataclass
class ShiftView:
    """A shifted stage: its region labels before and after the cyclic shift, and its mask.

    Attributes
    ----------
    level, resolution, window, shift
        the stage's geometry.
    labels_after
        (h, w) region of each position of the map rolled by (-shift, -shift), from
        the model's :func:`~swin_unet.model.attention.shift_region_labels`.
    labels_before
        the same labels at the tokens' positions before the roll.
    mask
        the (num_windows, M^2, M^2) tensor the model passed to the attention of its
        shifted blocks in the traced pass (the buffer itself, not a copy).
    users
        names of the attention modules that received ``mask``.
    """

    level: int
    resolution: tuple[int, int]
    window: int
    shift: int
    labels_after: torch.Tensor
    labels_before: torch.Tensor
    mask: torch.Tensor
    users: list[str] = field(default_factory=list)

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the window grid."""
        return self.resolution[0] // self.window, self.resolution[1] // self.window

    @property
    def padded_windows(self) -> int:
        """Windows a shifted grid would need without the cyclic shift (padding the border)."""
        return (self.grid[0] + 1) * (self.grid[1] + 1)

    @property
    def mixed_windows(self) -> int:
        """Windows whose mask keeps some token pairs apart (tokens from several regions)."""
        return int((self.mask != 0).flatten(1).any(dim=1).sum())

    @property
    def masked_fraction(self) -> float:
        """Fraction of all (query, key) pairs of the stage that the mask blocks."""
        return float((self.mask != 0).float().mean())


@dataclass(frozen=True)
class AttentionCost:
    """Cost of one attention layer of an encoder stage, in multiply-adds (MAC).

    ``counted_*`` come from ``torch.utils.flop_counter`` on the model (its FLOPs halved: it
    counts 2 FLOPs per multiply-add), averaged over the stage's blocks.
    """

    level: int
    resolution: tuple[int, int]
    channels: int
    window: int
    windows: int
    blocks: int
    counted_macs: float
    counted_matmul_macs: float

    @property
    def tokens(self) -> int:
        """Tokens hw."""
        return self.resolution[0] * self.resolution[1]

    @property
    def msa_macs(self) -> int:
        """Global MSA from the formula."""
        return msa_macs(*self.resolution, self.channels)

    @property
    def wmsa_macs(self) -> int:
        """W-MSA from the formula."""
        return wmsa_macs(*self.resolution, self.channels, self.window)

    @property
    def matmul_macs(self) -> int:
        """The formula's attention-matmul term 2 M^2 hw C (q k^T and attn v)."""
        return 2 * self.window ** 2 * self.tokens * self.channels

    @property
    def msa_over_wmsa(self) -> float:
        """How many times global MSA costs more than W-MSA."""
        return self.msa_macs / self.wmsa_macs


@dataclass(frozen=True)
class PartCost:
    """Parameters and counted FLOPs of one part of the network (one encoder or decoder stage...)."""

    name: str
    params: int
    flops: int
    attention_flops: int
    mlp_flops: int


@dataclass
class Explanation:
    """Everything the command draws and tabulates, taken from one model and one traced pass."""

    settings: dict
    stages: list[StageView]
    shifts: list[ShiftView]
    attention: list[AttentionCost]
    parts: list[PartCost]
    params: int
    flops: int


def _stages(model) -> list[StageView]:
    views = []
    for g in model.plan.stages:
        views.append(StageView(
            level=g.level, resolution=tuple(g.resolution), patch_px=model.patch_size << g.level,
            channels=model.embed_dim << g.level, heads=model.num_heads[g.level], window=g.window,
            windows=(g.resolution[0] // g.window, g.resolution[1] // g.window),
            shifts=tuple(g.shifts)))
    return views


def _encoder_calls(trace: ModelTrace, level: int) -> list[AttentionCall]:
    prefix = f"layers.{level}.blocks."
    return [call for name, call in trace.attention.items() if name.startswith(prefix)]


def _shifts(model, trace: ModelTrace) -> list[ShiftView]:
    views = []
    for g in model.plan.stages:
        shift = max(g.shifts)
        if not shift:
            continue
        shifted = [call for call in _encoder_calls(trace, g.level) if call.mask is not None]
        if not shifted:
            raise RuntimeError(f"stage {g.level} has shifted blocks but none got a mask in the "
                               f"traced pass")
        mask = shifted[0].mask
        after = shift_region_labels(*g.resolution, g.window, shift)
        views.append(ShiftView(
            level=g.level, resolution=tuple(g.resolution), window=g.window, shift=shift,
            labels_after=after, labels_before=torch.roll(after, (shift, shift), (0, 1)),
            mask=mask,
            users=[name for name, call in trace.attention.items() if call.mask is mask]))
    return views


def _attention(model, trace: ModelTrace) -> list[AttentionCost]:
    costs = []
    for g in model.plan.stages:
        calls = _encoder_calls(trace, g.level)
        first = calls[0]
        costs.append(AttentionCost(
            level=g.level, resolution=tuple(g.resolution), channels=first.channels,
            window=first.window, windows=first.windows, blocks=len(calls),
            counted_macs=sum(c.flops for c in calls) / 2 / len(calls),
            counted_matmul_macs=sum(c.matmul_flops for c in calls) / 2 / len(calls)))
    return costs


def _part_specs(model) -> list[tuple[str, list[str]]]:
    levels = len(model.depths)
    specs = [("patch embedding", ["patch_embed"])]
    for level in range(levels):
        extra = " + patch merging" if level < levels - 1 else ""
        specs.append((f"encoder stage {level}{extra}", [f"layers.{level}"]))
    specs.append(("bottleneck norm", ["norm"]))
    specs.append(("decoder up-stage 0: patch expanding", ["layers_up.0"]))
    for u in range(1, levels):
        extra = " + patch expanding" if u < levels - 1 else ""
        specs.append((f"decoder up-stage {u}: skip fusion + blocks{extra}",
                      [f"concat_back_dim.{u}", f"layers_up.{u}"]))
    # The output projection runs inside the final expanding's to_image (a method, not a module
    # call), so the counter books its matmul on the whole model; "" collects that remainder.
    specs.append(("output head: norm, 4x expanding, projection", ["norm_up", "up", "output", ""]))
    return specs


def _outermost(flops: dict[str, int]) -> list[str]:
    """Counted modules none of whose ancestors (the model aside) has a count of its own.

    A stage runs its blocks through a method, not its forward, so the counter never sees the
    stage as a module: its FLOPs are those of the outermost modules under its name.
    """
    names = []
    for name in flops:
        parts = name.split(".")
        if name and not any(".".join(parts[:i]) in flops for i in range(1, len(parts))):
            names.append(name)
    return names


def _parts(model, trace: ModelTrace) -> list[PartCost]:
    flops = trace.flops_by_module
    outermost = _outermost(flops)
    attributed = sum(flops[name] for name in outermost)
    parts = []
    for label, prefixes in _part_specs(model):
        names = [p for p in prefixes if p]
        params = sum(p.numel() for n, p in model.named_parameters()
                     if any(n.startswith(prefix + ".") for prefix in names))
        part_flops = sum(flops[n] for n in outermost
                         if any(n == prefix or n.startswith(prefix + ".") for prefix in names))
        if "" in prefixes:
            part_flops += trace.total_flops - attributed
        inside = [n for n in flops if any(n.startswith(prefix + ".") for prefix in names)]
        parts.append(PartCost(
            label, params, part_flops,
            attention_flops=sum(flops[n] for n in inside if n.endswith(".attn")),
            mlp_flops=sum(flops[n] for n in inside if n.endswith(".mlp"))))
    return parts


def explain_model(model) -> Explanation:
    """Trace ``model`` once and gather its geometry, shift masks, attention cost and part costs.

    Parameters
    ----------
    model : SwinUnet
        The network to explain.

    Returns
    -------
    Explanation
        Its shift masks are the model's own buffers.
    """
    trace = trace_model(model)
    settings = dict(img_size=list(model.img_size), patch_size=model.patch_size,
                    window_size=model.window_size, in_chans=model.in_chans,
                    num_classes=model.num_classes, embed_dim=model.embed_dim,
                    depths=list(model.depths), num_heads=list(model.num_heads))
    return Explanation(settings=settings, stages=_stages(model), shifts=_shifts(model, trace),
                       attention=_attention(model, trace), parts=_parts(model, trace),
                       params=sum(p.numel() for p in model.parameters()),
                       flops=trace.total_flops)
