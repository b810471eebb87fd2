"""Window attention: window partition/reverse, shift masks, relative position bias, Swin block."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .tiling import block_runs_tiled, forward_tiled

__all__ = [
    "window_partition",
    "window_reverse",
    "relative_position_index",
    "shift_region_labels",
    "shift_mask",
    "window_order",
    "WindowAttention",
    "Mlp",
    "DropPath",
    "SwinBlock",
]

# The logit offset between tokens of different shifted sub-regions. The original code adds -100,
# not -inf; keeping -100 keeps the logits identical to it.
MASK_VALUE = -100.0


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """Split a (B, H, W, C) map into (B * num_windows, window, window, C) windows, row-major."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * num_windows, window, window, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def relative_position_index(window: int) -> torch.Tensor:
    """(window^2, window^2) index into the bias table for each (query, key) pair of a window.

    The entry is (dy + M - 1) * (2M - 1) + (dx + M - 1), where (dy, dx) is the query's
    (row, column) minus the key's.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                        indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return rel[0] * (2 * window - 1) + rel[1]


def shift_region_labels(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """(H, W) labels 0..8 of the sub-regions of a map rolled by (-shift, -shift).

    After the cyclic shift, the last ``window`` rows and columns hold tokens that came from
    different places of the image; the slices [0, H-M), [H-M, H-s), [H-s, H) of rows and
    columns split the map into 9 regions whose tokens must not attend to each other.
    """
    labels = torch.zeros(h, w, dtype=torch.long)
    label = 0
    for rows in (slice(0, h - window), slice(h - window, h - shift), slice(h - shift, h)):
        for cols in (slice(0, w - window), slice(w - window, w - shift), slice(w - shift, w)):
            labels[rows, cols] = label
            label += 1
    return labels


def shift_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """(num_windows, M^2, M^2) additive attention mask for a block shifted by ``shift``.

    0 between tokens of the same sub-region, -100 between tokens of different ones.
    """
    labels = shift_region_labels(h, w, window, shift)
    windows = window_partition(labels.view(1, h, w, 1), window).flatten(1)  # (nW, M^2)
    different = windows[:, :, None] != windows[:, None, :]
    return different.float() * MASK_VALUE


def window_order(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """Row-major token index at each position of the rolled, window-partitioned sequence.

    ``x.flatten(1, 2)[:, window_order(...)]`` equals
    ``window_partition(torch.roll(x, (-shift, -shift), (1, 2)), window).flatten(0, 2)`` per image:
    the same primitives as the straightforward design, applied to an index grid.
    """
    grid = torch.arange(h * w).view(1, h, w, 1)
    if shift:
        grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
    return window_partition(grid, window).flatten()


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch of whole samples with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """Linear(C, rC), GELU, Linear(rC, C)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    Input (B * num_windows, M^2, C), windows contiguous per image. ``mask`` is the stage's
    additive shift mask (num_windows, M^2, M^2) with ``-inf`` between sub-regions (see
    :meth:`~swin_unet.model.plan.TokenPlan.mask`), or None for an unshifted block. ``fused``
    picks ``F.scaled_dot_product_attention`` or the explicit softmax(q k^T * scale + bias) v;
    both compute the same values.

    The relative position bias and the shift mask are combined into one additive attention
    bias (:meth:`attention_bias`), built per forward (a gather of (heads, M^2, M^2) entries).
    """

    def __init__(self, dim: int, window: int, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"channels {dim} are not divisible by num_heads {num_heads}")
        self.dim = dim
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        index = relative_position_index(window)
        self.register_buffer("relative_position_index", index, persistent=False)
        # Index into the flattened table, head-major: one gather writes (heads, M^2, M^2)
        # contiguous, with no permute of a (M^2, M^2, heads) result.
        heads = torch.arange(num_heads).view(-1, 1)
        self.register_buffer("bias_index", index.view(1, -1) * num_heads + heads,
                             persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def position_bias(self) -> torch.Tensor:
        """(heads, M^2, M^2) relative position bias, contiguous."""
        n = self.window * self.window
        table = self.relative_position_bias_table.reshape(-1)
        return table[self.bias_index].view(self.num_heads, n, n)

    def _combine(self, mask: Optional[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        """Bias plus mask in ``dtype``: (heads, N, N), or (num_windows, heads, N, N) with a mask."""
        bias = self.position_bias().to(dtype)
        if mask is not None:
            bias = bias.unsqueeze(0) + mask.to(dtype).unsqueeze(1)
        return bias

    @staticmethod
    def _fit(bias: torch.Tensor, windows: int, fused: bool) -> torch.Tensor:
        """The combined bias in the shape the attention path takes.

        Explicit: as it is (the caller broadcasts it over the batch). SDPA: 4-D,
        (1, heads, N, N) or, with a mask, one bias per window of the batch (B * nW, heads, N, N):
        PyTorch's fused kernels take 4-D inputs and broadcast only dimensions of size 1. Its rows
        are padded to a multiple of 16 elements (last-dimension stride 1, every other stride a
        multiple of 16): the memory-efficient CUDA kernel copies a bias not so aligned into a
        padded one on every call.
        """
        if not fused:
            return bias
        n = bias.shape[-1]
        if bias.ndim == 4:
            n_windows = bias.shape[0]
            bias = bias.unsqueeze(0).expand(windows // n_windows, -1, -1, -1, -1)
        padded = F.pad(bias, (0, -n % 16))  # one copy, contiguous
        return padded.reshape((-1,) + padded.shape[-3:])[..., :n]

    def attention_bias(self, mask: Optional[torch.Tensor], dtype: torch.dtype,
                       windows: int, fused: bool) -> torch.Tensor:
        """The additive attention bias for ``windows`` windows of ``dtype`` queries (see
        :meth:`_fit`)."""
        return self._fit(self._combine(mask, dtype), windows, fused)

    def attend(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
               fused: bool = False, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attention of (B * num_windows, M^2, C) tokens, before the output projection.

        ``bias``: the explicit path's :meth:`attention_bias` for these windows (with a mask,
        the rows of the windows' positions ``w % num_windows``), when the caller holds it.
        """
        windows, n, c = x.shape
        heads, head_dim = self.num_heads, c // self.num_heads
        qkv = self.qkv(x).view(windows, n, 3, heads, head_dim)
        drop = self.attn_drop if self.training else 0.0
        if bias is None:
            bias = self.attention_bias(mask, qkv.dtype, windows, fused)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B*nW, heads, N, d) views
        if fused:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop,
                                                 scale=self.scale)
        else:
            attn = torch.matmul(q * self.scale, k.transpose(-2, -1))
            if mask is not None:
                attn = (attn.view(-1, bias.shape[0], heads, n, n) + bias).view(windows, heads, n, n)
            else:
                attn = attn + bias
            attn = attn.softmax(dim=-1)
            if drop:
                attn = F.dropout(attn, p=drop)
            out = torch.matmul(attn, v)
        return out.reshape(windows, heads, n, head_dim).transpose(1, 2).reshape(windows, n, c)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, fused: bool = False,
                bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attention output after the projection; ``bias``: see :meth:`attend`."""
        return self.proj_drop(self.proj(self.attend(x, mask, fused, bias)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window={self.window}, num_heads={self.num_heads}"


class SwinBlock(nn.Module):
    """x + DropPath(WindowAttention(LN(x))), then x + DropPath(MLP(LN(x))).

    The block works on tokens already in its window order (rolled and partitioned, see
    :func:`window_order`): attention sees contiguous windows, and LayerNorm, MLP and the residual
    adds act per token, so no roll or partition happens here. The stage moves the stream from one
    block's order to the next with one gather. ``shift`` is recorded for the stage's plan.
    """

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
                fused: bool = False) -> torch.Tensor:
        b, length, c = x.shape
        if not (self.training or fused) and block_runs_tiled(x, self.mlp.fc1.out_features):
            return forward_tiled(self, x, mask)
        windows = self.norm1(x).view(-1, self.window * self.window, c)
        x = x + self.drop_path(self.attn(windows, mask, fused).view(b, length, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def extra_repr(self) -> str:
        return f"window={self.window}, shift={self.shift}"
