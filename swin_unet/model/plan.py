"""Token orders of the fast path: every roll, window partition and rearrangement as one gather.

The straightforward Swin-Unet keeps each stage's tokens row-major and, around every block,
rolls the map, partitions it into windows, attends, reverses the partition and rolls back.
Only attention needs windows; LayerNorm, the MLP, drop-path and the residual adds act on each
token alone and give the same values in any token order. So the fast path keeps the residual
stream of a stage in the *window order of the block being run*: the sequence
``window_partition(roll(x, -shift))`` flattened, whose row-major source indices are
``window_order(h, w, window, shift)`` (call it P_j for block j). Between blocks j-1 and j it
moves the stream with one gather by inverse(P_{j-1})[P_j]; nothing else changes.

Changes of resolution fold into the same gathers:
- patch embedding writes its tokens straight in P_0 order of stage 0;
- patch merging gathers, for each output token in the next stage's P_0 order, its 4 neighbours
  from the current stage's last order;
- patch expanding gathers each output token, in P_0 order of the finer level, from the
  (token, sub-position) sequence of the expanded coarse tokens;
- the final 4x expand gathers row-major pixels from the expanded level-0 tokens.
A decoder stage at level a has the windows and shifts of encoder stage a (its depth may differ),
so block j of either uses the same order; the skip (input of encoder stage a) is stored in P_0 of level a, which is exactly
the order the decoder's fused input arrives in. Every gather is a permutation, so its gradient
is the gather by the inverse permutation (see :func:`~swin_unet.model.layers.permute_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import shift_mask, window_order

__all__ = ["StageGeometry", "stage_geometry", "TokenPlan"]


@dataclass(frozen=True)
class StageGeometry:
    """Resolution, effective window and per-block shifts of one encoder stage (level)."""

    level: int
    resolution: tuple[int, int]
    window: int
    shifts: tuple[int, ...]


def stage_geometry(img_size: tuple[int, int], patch_size: int, window_size: int,
                   depths: tuple[int, ...]) -> list[StageGeometry]:
    """Each stage's geometry as the original design defines it.

    Blocks alternate shift 0 and window // 2; a stage whose smaller side is <= the window has
    no shift and a window shrunk to that side.
    """
    h, w = img_size[0] // patch_size, img_size[1] // patch_size
    stages = []
    for level, depth in enumerate(depths):
        res = (h >> level, w >> level)
        if min(res) <= window_size:
            window, shifted = min(res), 0
        else:
            window, shifted = window_size, window_size // 2
        shifts = tuple(shifted if j % 2 else 0 for j in range(depth))
        stages.append(StageGeometry(level, res, window, shifts))
    return stages


def _inverse(perm: torch.Tensor) -> torch.Tensor:
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel())
    return inverse


class TokenPlan(nn.Module):
    """All gather indices and shift masks for one input size, as non-persistent buffers.

    Attributes are accessed through :meth:`get`, which returns ``(index, inverse)`` pairs:
    ``embed``; ``step{level}_{j}`` (block j-1 -> j, absent when the orders agree);
    ``merge{level}`` (level -> level + 1); ``expand{level}`` (level -> level - 1); ``pixels``
    (level 0 -> image). ``mask(level)`` is the stage's shift mask or None.

    ``decoder_depths`` (one per level but the deepest; default: the encoder's) may differ from
    the encoder's: block j of either stage at a level has the same window order (shifts
    alternate 0, s, 0, ...), so the steps are shared, and only the order a decoder stage ends
    in (which ``expand`` and ``pixels`` start from) depends on its own depth.
    """

    def __init__(self, img_size: tuple[int, int], patch_size: int, window_size: int,
                 depths: tuple[int, ...], decoder_depths: tuple[int, ...] | None = None) -> None:
        super().__init__()
        depths = tuple(depths)
        decoder_depths = depths[:-1] if decoder_depths is None else tuple(decoder_depths)
        self.img_size = tuple(img_size)
        self.patch_size = patch_size
        self.stages = stage_geometry(self.img_size, patch_size, window_size, depths)
        self.decoder_stages = stage_geometry(self.img_size, patch_size, window_size,
                                             decoder_depths + depths[-1:])[:-1]
        # Block shifts of the longer of a level's two stages (the shorter's are a prefix).
        shifts = [max(g.shifts, d.shifts, key=len)
                  for g, d in zip(self.stages, self.decoder_stages)]
        shifts.append(self.stages[-1].shifts)
        orders = [{s: window_order(*g.resolution, g.window, s) for s in set(level)}
                  for g, level in zip(self.stages, shifts)]
        inverses = [{s: _inverse(p) for s, p in level.items()} for level in orders]

        def last(level: int, decoder: bool) -> torch.Tensor:
            """Inverse of the order the level's encoder (or decoder) stage ends in."""
            g = (self.decoder_stages if decoder else self.stages)[level]
            return inverses[level][g.shifts[-1]]

        self._add("embed", orders[0][0])
        for g, level_shifts in zip(self.stages, shifts):
            for j in range(1, len(level_shifts)):
                previous, current = level_shifts[j - 1], level_shifts[j]
                if current != previous:
                    self._add(f"step{g.level}_{j}",
                              inverses[g.level][previous][orders[g.level][current]])
            if any(level_shifts):
                mask = shift_mask(*g.resolution, g.window, max(level_shifts))
                # -inf, not the original's -100: exp(-100) is a float32 denormal (3.7e-44), slow
                # on x86 CPUs (docs/performance.md); -inf gives exact zeros. Every row keeps its
                # own token, so no row is all -inf.
                self.register_buffer(f"mask{g.level}", mask.masked_fill(mask < 0, float("-inf")),
                                     persistent=False)

        deepest = len(self.stages) - 1
        for g, finer in zip(self.stages[1:], self.stages[:-1]):
            # patch merging finer -> g: 4 neighbours of each token of g, in g's first order.
            rows, cols = orders[g.level][0] // g.resolution[1], orders[g.level][0] % g.resolution[1]
            neighbours = [(2 * rows + dr) * finer.resolution[1] + 2 * cols + dc
                          for dr, dc in ((0, 0), (1, 0), (0, 1), (1, 1))]
            rowmajor = torch.stack(neighbours, dim=1).flatten()
            self._add(f"merge{finer.level}", last(finer.level, decoder=False)[rowmajor])
            # patch expanding g -> finer: each finer token from (coarse token, sub-position); the
            # deepest level's tokens come from the encoder, the others from a decoder stage.
            rows = orders[finer.level][0] // finer.resolution[1]
            cols = orders[finer.level][0] % finer.resolution[1]
            coarse = (rows // 2) * g.resolution[1] + cols // 2
            sub = (rows % 2) * 2 + cols % 2
            self._add(f"expand{g.level}",
                      last(g.level, decoder=g.level < deepest)[coarse] * 4 + sub)

        p = patch_size
        rows, cols = torch.meshgrid(torch.arange(self.img_size[0]), torch.arange(self.img_size[1]),
                                    indexing="ij")
        token = (rows // p) * self.stages[0].resolution[1] + cols // p
        sub = (rows % p) * p + cols % p
        self._add("pixels", (last(0, decoder=True)[token] * p * p + sub).flatten())

    def _add(self, name: str, index: torch.Tensor) -> None:
        self.register_buffer(name, index, persistent=False)
        self.register_buffer(name + "_inv", _inverse(index), persistent=False)

    def get(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(index, inverse)`` of gather ``name``, or None if the plan has no such gather."""
        index = getattr(self, name, None)
        if index is None:
            return None
        return index, getattr(self, name + "_inv")

    def mask(self, level: int) -> torch.Tensor | None:
        """Additive shift mask (num_windows, M^2, M^2) of stage ``level``: 0 within a sub-region,
        -inf across; None when the stage has no shift."""
        return getattr(self, f"mask{level}", None)
