"""Patch embedding, patch merging, patch expanding, and the token permutation they share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .tiling import expansion_logits_tiled, head_runs_tiled

__all__ = ["permute_tokens", "PatchEmbed", "PatchMerging", "PatchExpand", "FinalPatchExpand"]


class _PermuteTokens(torch.autograd.Function):
    """``x.index_select(dim, index)`` for a permutation ``index``, whose gradient is a gather.

    The stock backward of ``index_select`` is a scatter-add (``index_add_``) because an index
    may repeat; a permutation never repeats, so the gradient is the gather by its inverse,
    which is cheaper and deterministic.
    """

    @staticmethod
    def forward(x: torch.Tensor, dim: int, index: torch.Tensor,
                inverse: torch.Tensor) -> torch.Tensor:
        return _select(x, dim, index)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, dim, _, inverse = inputs
        ctx.dim = dim
        ctx.save_for_backward(inverse)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        return _select(grad, ctx.dim, inverse), None, None, None


def _select(x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """``x.index_select(dim, index)``; for the token axis of a contiguous (B, L, C) stream, as
    one gather of whole rows of the (B * L, C) view (faster on the CPU: docs/performance.md)."""
    if dim != 1 or x.ndim != 3 or not x.is_contiguous() or x.shape[0] == 1:
        return x.index_select(dim, index)
    b, length, c = x.shape
    rows = (torch.arange(0, b * length, length, device=index.device).view(-1, 1)
            + index.view(1, -1)).view(-1)
    return x.view(b * length, c).index_select(0, rows).view(b, index.numel(), c)


def permute_tokens(x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor,
                   dim: int = 1) -> torch.Tensor:
    """Reorder ``x`` along ``dim`` by the permutation ``index`` (``inverse`` is its inverse)."""
    if not torch.is_grad_enabled() or not x.requires_grad:
        return _select(x, dim, index)
    return _PermuteTokens.apply(x, dim, index, inverse)


class PatchEmbed(nn.Module):
    """Conv2d(in_chans -> C, kernel = stride = patch) then LayerNorm(C), tokens in a given order."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, H/p * W/p, C), token k being row-major patch ``order[k]``."""
        x = self.proj(x).flatten(2)  # (B, C, N) row-major
        x = permute_tokens(x, order, inverse, dim=2).transpose(1, 2)
        return self.norm(x)


class PatchMerging(nn.Module):
    """2x2 neighbours concatenated, LayerNorm(4C), Linear(4C -> 2C, no bias).

    ``gather`` lists, for each output token in order, its 4 neighbours' positions in the input
    sequence in the order (0,0), (1,0), (0,1), (1,1) (row offset first), so that
    ``x[:, gather].view(B, L/4, 4C)`` is the concatenation.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, gather: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        x = permute_tokens(x, gather, inverse).view(b, length // 4, 4 * c)
        return self.reduction(self.norm(x))


class PatchExpand(nn.Module):
    """Linear(C -> 2C, no bias), each token's channels split as (p1, p2, C/2) into a 2x2 block
    of tokens (p1 the row offset), then LayerNorm(C/2). Resolution doubles, channels halve.

    ``gather`` lists, for each output token in order, its position in the (L * 4) sequence of
    sub-tokens ``expanded.view(B, L * 4, C/2)``.
    """

    def __init__(self, dim: int, scale: int = 2, out_dim: int | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.out_dim = out_dim if out_dim is not None else dim // 2
        self.expand = nn.Linear(dim, scale * scale * self.out_dim, bias=False)
        self.norm = nn.LayerNorm(self.out_dim)

    def forward(self, x: torch.Tensor, gather: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        b, length, _ = x.shape
        x = self.expand(x).view(b, length * self.scale * self.scale, self.out_dim)
        return self.norm(permute_tokens(x, gather, inverse))


class FinalPatchExpand(PatchExpand):
    """The 4x patch expanding back to full resolution: Linear(C -> 16C, no bias), LayerNorm(C).

    Its ``to_image`` runs the expansion, the LayerNorm and the 1x1 output projection in token
    space and rearranges only the ``num_classes`` output channels into the image: the same
    values as rearranging the C-channel map first (every step but the rearrangement acts per
    pixel), with far less data moved at full resolution.
    """

    def __init__(self, dim: int, scale: int = 4) -> None:
        super().__init__(dim, scale=scale, out_dim=dim)

    def to_image(self, x: torch.Tensor, weight: torch.Tensor, pixel_order: torch.Tensor,
                 inverse: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, L, C) tokens -> (B, K, H, W) logits with the 1x1 projection ``weight`` (K, C).

        ``pixel_order[p]`` is the position of row-major pixel p in the (L * scale^2) sequence.
        """
        b, length, _ = x.shape
        if head_runs_tiled(x):
            sub_logits = expansion_logits_tiled(self, x, weight)
        else:
            sub = self.norm(self.expand(x).view(b, length * self.scale * self.scale, self.out_dim))
            sub_logits = F.linear(sub, weight)
        logits = permute_tokens(sub_logits, pixel_order, inverse)  # (B, HW, K)
        logits = logits.transpose(1, 2).contiguous()
        return logits.view(b, weight.shape[0], *size)
