"""The CPU a tile at a time: the same values, with intermediates kept in the cache.

Without autograd, a block's LayerNorm, qkv, attention and MLP, and the final 4x expansion's
LayerNorm and projection, act per token or per window. Over a whole batch at full resolution
their intermediates are large (the final expansion of 16 slices at 224 is 308 MiB) and each
needs fresh memory; run a tile of whole windows (or tokens) at a time, the peak resident memory
of inference stays far lower (docs/performance.md). On CUDA, and with autograd (a block keeps
every activation anyway), everything runs whole.
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
    """Whether the tiled paths apply to ``x``: a CPU tensor, not :func:`untiled`, no autograd."""
    return (x.device.type == "cpu" and not getattr(_off, "value", False)
            and not torch.is_grad_enabled())


def block_runs_tiled(x: torch.Tensor, hidden: int) -> bool:
    """Whether a block runs tiled on (B, L, C) tokens ``x`` with an MLP ``hidden`` wide."""
    hidden_bytes = x.shape[0] * x.shape[1] * hidden * x.element_size()
    return runs_tiled(x) and hidden_bytes > BLOCK_TILE_MIN_BYTES


def head_runs_tiled(x: torch.Tensor) -> bool:
    """Whether the final expansion runs tiled on (B, L, C) tokens ``x`` (inference only)."""
    return x.shape[0] * x.shape[1] > HEAD_TILE_TOKENS and runs_tiled(x)


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
        h = tile + block.attn(block.norm1(tile).view(-1, n, c), mask, bias=tile_bias).view(-1, c)
        torch.add(h, block.mlp(block.norm2(h)), out=out[start * n:stop * n])
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
    per_token = expand.scale * expand.scale
    folded = _fold(expand.expand.weight, expand.norm.weight, expand.norm.bias, weight, per_token)
    logits = _folded_logits(folded, x.reshape(b * length, c), expand.norm.eps)[0]
    return logits.view(b, length * per_token, weight.shape[0])


def _fold(rows: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, weight: torch.Tensor,
          per_token: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The expansion's centred rows F (s^2, C, C_in), the numerators' rows M = W diag(gamma) F_s
    (s^2 K, C_in) and the offset W beta (K)."""
    c = gamma.numel()
    rows = rows.view(per_token, c, -1)
    centred = rows - rows.mean(dim=1, keepdim=True)
    numerator = torch.matmul(weight * gamma, centred).reshape(-1, rows.shape[-1])
    return centred, numerator, weight @ beta


def _folded_logits(folded, tokens: torch.Tensor, eps: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(N s^2, K) logits and (N, s^2) reciprocal sigmas of (N, C_in) ``tokens``, in tiles."""
    centred, numerator, offset = folded
    per_token, c = centred.shape[:2]
    rows, k = centred.reshape(per_token * c, -1), offset.numel()
    n = tokens.shape[0]
    out = torch.empty(n * per_token, k, dtype=tokens.dtype, device=tokens.device)
    rstd = torch.empty(n, per_token, dtype=torch.promote_types(tokens.dtype, torch.float32),
                       device=tokens.device)
    for start in range(0, n, HEAD_TILE_TOKENS):
        stop = min(n, start + HEAD_TILE_TOKENS)
        tile = tokens[start:stop]
        spread = torch.linalg.vector_norm(F.linear(tile, rows).view(-1, c), dim=-1,
                                          dtype=rstd.dtype)
        tile_rstd = spread.square_().div_(c).add_(eps).rsqrt_()
        rstd[start:stop] = tile_rstd.view(-1, per_token)
        logits = out[start * per_token:stop * per_token]
        torch.mul(F.linear(tile, numerator).view(-1, k), tile_rstd.unsqueeze(1), out=logits)
        logits.add_(offset)
    return out, rstd
