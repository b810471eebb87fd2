"""Inference on the CPU a tile at a time: the same values, with intermediates kept in the cache.

Without autograd, a block's LayerNorm, qkv, attention and MLP, and the final 4x expansion's
LayerNorm and projection, act per token or per window. Over a whole batch at full resolution
their intermediates are tens of MiB (the stage-0 MLP hidden tensor at batch 8 is 38.5 MiB; the
final expansion 154 MiB) and stream through memory, with fresh pages for each; run a tile of
whole windows (or tokens) at a time they stay in the cache. On CUDA one large kernel is better,
and with autograd every activation is kept anyway, so both run whole.

The thresholds were measured on the 2-core development CPUs (README, "Smaller measured
choices"): a block gains once its MLP hidden tensor exceeds 16 MiB, in tiles of at most 4096
tokens, and loses a little below that; the final expansion gains at any batch, in tiles of 512
tokens (a 3 MiB expansion for 96 channels), and more with its LayerNorm folded into the output
projection (:func:`expansion_logits_tiled`).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BLOCK_TILE_MIN_BYTES", "BLOCK_TILE_TOKENS", "HEAD_TILE_TOKENS", "untiled",
           "runs_tiled", "block_runs_tiled", "head_runs_tiled", "tile_windows", "forward_tiled",
           "expansion_logits_tiled"]

BLOCK_TILE_MIN_BYTES = 16 * 2**20
BLOCK_TILE_TOKENS = 4096
HEAD_TILE_TOKENS = 512


_off = threading.local()


@contextmanager
def untiled() -> Iterator[None]:
    """Within the block, the model runs whole-batch: for tracing and counting its operations
    as the architecture defines them (the folded LayerNorm of the tiled final expansion adds a
    small per-call product of weights)."""
    previous = getattr(_off, "value", False)
    _off.value = True
    try:
        yield
    finally:
        _off.value = previous


def runs_tiled(x: torch.Tensor) -> bool:
    """Whether the tiled paths apply to ``x``: a CPU tensor, no autograd, not :func:`untiled`."""
    return (x.device.type == "cpu" and not torch.is_grad_enabled()
            and not getattr(_off, "value", False))


def block_runs_tiled(x: torch.Tensor, hidden: int) -> bool:
    """Whether a block runs tiled on (B, L, C) tokens ``x`` with an MLP ``hidden`` wide."""
    hidden_bytes = x.shape[0] * x.shape[1] * hidden * x.element_size()
    return runs_tiled(x) and hidden_bytes > BLOCK_TILE_MIN_BYTES


def head_runs_tiled(x: torch.Tensor) -> bool:
    """Whether the final expansion runs tiled on (B, L, C) tokens ``x``."""
    return runs_tiled(x) and x.shape[0] * x.shape[1] > HEAD_TILE_TOKENS


def tile_windows(period: int, target: int) -> int:
    """Windows per tile, about ``target``, for windows whose bias repeats every ``period``.

    Every tile must start at a window whose place in the period is 0 or a multiple of the
    tile, so that one slice of the (period, ...) bias serves it: a multiple of the period not
    above the target, else a divisor of the period no smaller than half the target, else the
    period itself.
    """
    if period <= target:
        return target - target % period
    divisor = max(d for d in range(1, target + 1) if period % d == 0)
    return divisor if 2 * divisor >= target else period


def forward_tiled(block: nn.Module, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """A :class:`~swin_unet.model.attention.SwinBlock`'s inference forward on (B, L, C) tokens
    in its window order, whole windows at a time (at most :data:`BLOCK_TILE_TOKENS` tokens)."""
    b, length, c = x.shape
    n = block.window * block.window
    total = b * length // n
    # The dtype the attention logits will have (under autocast, not the residual stream's).
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    bias = block.attn.attention_bias(mask, dtype, total, fused=False)
    # With a mask, the bias has one row per window of an image.
    period = bias.shape[0] if mask is not None else total
    per_tile = tile_windows(period, max(1, BLOCK_TILE_TOKENS // n))
    tokens = x.reshape(total * n, c)
    out = torch.empty_like(tokens)
    for start in range(0, total, per_tile):
        stop = min(total, start + per_tile)
        tile = tokens[start * n:stop * n]
        tile_bias = bias
        if mask is not None and per_tile < period:
            tile_bias = bias[start % period:start % period + per_tile]
        h = block.attn(block.norm1(tile).view(-1, n, c), mask, residual=tile, bias=tile_bias)
        block.mlp(block.norm2(h), residual=h, out=out[start * n:stop * n])
    return out.view(b, length, c)


def expansion_logits_tiled(expand: nn.Module, x: torch.Tensor,
                           weight: torch.Tensor) -> torch.Tensor:
    """(B, L * s^2, K) sub-token logits of a :class:`~swin_unet.model.layers.FinalPatchExpand`
    (expansion, LayerNorm, then the 1x1 projection ``weight`` (K, C)) on (B, L, C) tokens,
    :data:`HEAD_TILE_TOKENS` at a time, with the LayerNorm folded into the projection.

    With E_s the expansion's rows for sub-position s and F_s = E_s minus the mean of its rows,
    F_s x = y_s - mean(y_s), so the logits are W diag(gamma) F_s x / sigma_s + W beta, with
    sigma_s = sqrt(|F_s x|^2 / C + eps). One GEMM gives F x for the sigmas, one with s^2 K
    outputs per token the numerators: the normalized (tokens s^2, C) tensor and the K-wide GEMM
    on it (slow: K is tiny) are never formed. Equal to the unfolded path to float32 rounding.
    """
    b, length, c = x.shape
    per_token, k = expand.scale * expand.scale, weight.shape[0]
    rows = expand.expand.weight.view(per_token, expand.out_dim, c)
    centred = rows - rows.mean(dim=1, keepdim=True)
    numerator = torch.matmul(weight * expand.norm.weight, centred).reshape(per_token * k, c)
    offset = weight @ expand.norm.bias
    centred = centred.reshape(per_token * expand.out_dim, c)
    tokens = x.reshape(b * length, c)
    out = torch.empty(b * length * per_token, k, dtype=x.dtype, device=x.device)
    for start in range(0, b * length, HEAD_TILE_TOKENS):
        stop = min(b * length, start + HEAD_TILE_TOKENS)
        tile = tokens[start:stop]
        spread = torch.linalg.vector_norm(F.linear(tile, centred).view(-1, expand.out_dim),
                                          dim=-1, dtype=torch.float32)
        rstd = spread.square_().div_(expand.out_dim).add_(expand.norm.eps).rsqrt_()
        logits = out[start * per_token:stop * per_token]
        torch.mul(F.linear(tile, numerator).view(-1, k), rstd.unsqueeze(1), out=logits)
        logits.add_(offset)
    return out.view(b, length * per_token, k)
