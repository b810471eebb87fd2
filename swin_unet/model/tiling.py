"""The CPU a tile at a time: the same values, with intermediates kept in the cache.

Without autograd, a block's LayerNorm, qkv, attention and MLP, and the final 4x expansion's
LayerNorm and projection, act per token or per window. Over a whole batch at full resolution
their intermediates are tens of MiB (the stage-0 MLP hidden tensor at batch 8 is 38.5 MiB; the
final expansion 154 MiB) and stream through memory, with fresh pages for each; run a tile of
whole windows (or tokens) at a time they stay in the cache. On CUDA one large kernel is better,
and with autograd a block keeps every activation anyway (blocks in tiles trained no faster), so
both run whole there. The final expansion also runs in tiles in training on the CPU, with a
hand-written backward (:class:`_FoldedExpansion`) that needs none of its full-size activations.

The thresholds were measured on a 2-core CPU (docs/performance.md): a block gains once its MLP
hidden tensor exceeds 16 MiB, in tiles of at most 4096 tokens, and loses a little below that;
the final expansion gains at any batch, in tiles of 512 tokens (a 3 MiB expansion for 96 channels), and more with its LayerNorm folded into the output
projection (:func:`expansion_logits_tiled`).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
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


def runs_tiled(x: torch.Tensor, autograd: bool = False) -> bool:
    """Whether the tiled paths apply to ``x``: a CPU tensor, not :func:`untiled`, and no
    autograd, unless ``autograd`` (a path with its own backward, written for one dtype): then
    also with autograd, but not under autocast nor while ``torch.compile`` traces (it would
    unroll the tiles)."""
    if x.device.type != "cpu" or getattr(_off, "value", False):
        return False
    if not torch.is_grad_enabled():
        return True
    return autograd and not (torch.is_autocast_enabled("cpu") or torch.compiler.is_compiling())


def block_runs_tiled(x: torch.Tensor, hidden: int) -> bool:
    """Whether a block runs tiled on (B, L, C) tokens ``x`` with an MLP ``hidden`` wide."""
    hidden_bytes = x.shape[0] * x.shape[1] * hidden * x.element_size()
    return runs_tiled(x) and hidden_bytes > BLOCK_TILE_MIN_BYTES


def head_runs_tiled(x: torch.Tensor) -> bool:
    """Whether the final expansion runs tiled on (B, L, C) tokens ``x``, with or without
    autograd (:class:`_FoldedExpansion`)."""
    return x.shape[0] * x.shape[1] > HEAD_TILE_TOKENS and runs_tiled(x, autograd=True)


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
    With autograd the backward is folded the same way (:class:`_FoldedExpansion`).
    """
    b, length, c = x.shape
    args = (x.reshape(b * length, c), expand.expand.weight, expand.norm.weight,
            expand.norm.bias, weight, expand.norm.eps, expand.scale * expand.scale)
    if torch.is_grad_enabled() and any(t.requires_grad for t in args[:5]):
        logits = _FoldedExpansion.apply(*args)
    else:
        logits = _folded_logits(_fold(*args[1:5], args[6]), args[0], args[5])[0]
    return logits.view(b, length * args[6], weight.shape[0])


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


class _FoldedExpansion(torch.autograd.Function):
    """The folded final expansion with its backward folded too, in the same tiles.

    Per token and sub-position (n = the normalized vector, r = 1/sigma, g the logits' gradient,
    e = M_s x . g): the LayerNorm's input gradient is r P W_g^T g - r^3 e F_s x / C (P centres,
    W_g = W diag(gamma)), so the input's gradient is (r g) M - (c F x) F with c = r^3 e / C, and
    the expansion's is W_g'^T B_s^T - sum (c F_s x) x^T, with B = sum x (r g)^T and W_g' = W_g
    centred. gamma, beta and W follow from B and the gradients' sum. F x is recomputed per tile
    rather than stored: three (tokens, s^2 C) GEMMs as in the unfolded backward, and no
    LayerNorm pass, no K-wide GEMM and no full-size tensor (docs/performance.md).
    """

    @staticmethod
    def forward(ctx, tokens, rows, gamma, beta, weight, eps, per_token):
        folded = _fold(rows, gamma, beta, weight, per_token)
        logits, rstd = _folded_logits(folded, tokens, eps)
        ctx.save_for_backward(tokens, *folded[:2], gamma, beta, weight, rstd)
        return logits

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        tokens, centred, numerator, gamma, beta, weight, rstd = ctx.saved_tensors
        (n, c_in), (per_token, c), k = tokens.shape, centred.shape[:2], weight.shape[0]
        rows = centred.reshape(per_token * c, c_in)
        grad = grad.contiguous().view(n, per_token, k)
        grad_tokens = torch.empty_like(tokens) if ctx.needs_input_grad[0] else None
        x_rg = tokens.new_zeros(c_in, per_token * k)     # B: sum of x (r g)^T
        cu_x = tokens.new_zeros(per_token * c, c_in) if ctx.needs_input_grad[1] else None
        for start in range(0, n, HEAD_TILE_TOKENS):
            stop = min(n, start + HEAD_TILE_TOKENS)
            tile, r = tokens[start:stop], rstd[start:stop].unsqueeze(-1)
            rg = grad[start:stop] * r
            dot = (F.linear(tile, numerator).view_as(rg) * rg).sum(-1, keepdim=True)  # r e
            cu = F.linear(tile, rows).view(-1, per_token, c).mul_(dot.mul_(r).mul_(r / c))
            cu, rg = cu.view(-1, per_token * c), rg.view(-1, per_token * k)
            if grad_tokens is not None:
                part = torch.mm(rg, numerator, out=grad_tokens[start:stop])
                torch.addmm(part, cu, rows, alpha=-1, out=part)
            x_rg.addmm_(tile.t(), rg)
            if cu_x is not None:
                cu_x.addmm_(cu.t(), tile)
        total = grad.sum((0, 1))
        x_rg = x_rg.view(c_in, per_token, k)
        a = torch.einsum("isk,sci->kc", x_rg, centred)  # sum of (r g) (F x)^T
        grad_rows = None
        if cu_x is not None:
            wg = weight * gamma
            wg = wg - wg.mean(dim=1, keepdim=True)
            grad_rows = torch.einsum("kc,isk->sci", wg, x_rg).reshape_as(cu_x).sub_(cu_x)
        return (grad_tokens, grad_rows, (weight * a).sum(0), weight.t() @ total,
                a * gamma + torch.outer(total, beta), None, None)
