"""A straightforward Swin-Unet, written the way the original design reads: the baseline and oracle.

Each block rolls the row-major map, partitions it into windows, runs explicit attention,
reverses the partition and rolls back; patch merging slices the map; patch expanding and the
final 4x expand rearrange the full channel map; the 1x1 output convolution runs on the image.
Parameter and buffer names (including the persistent ``relative_position_index`` and
``attn_mask`` buffers) are those of the original code, so its ``state_dict()`` prefixed with
``swin_unet.`` has the layout of a checkpoint trained with the original code.

It shares no code with ``swin_unet.model``: tests use it as an independent oracle for the fast
path, and ``bench_model.py`` as the baseline it is measured against.
"""

from __future__ import annotations

import torch
from torch import nn


def _partition(x, m):
    b, h, w, c = x.shape
    x = x.view(b, h // m, m, w // m, m, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, m * m, c)


def _reverse(windows, m, h, w):
    c = windows.shape[-1]
    x = windows.view(-1, h // m, w // m, m, m, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


class RefDropPath(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = 1 - self.p
        return x * x.new_empty(x.shape[0], 1, 1).bernoulli_(keep) / keep


class RefAttention(nn.Module):
    def __init__(self, dim, m, heads, qkv_bias):
        super().__init__()
        self.heads, self.m = heads, m
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * m - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        ys, xs = torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        dy = ys[:, None] - ys[None, :] + m - 1
        dx = xs[:, None] - xs[None, :] + m - 1
        self.register_buffer("relative_position_index", dy * (2 * m - 1) + dx)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask):
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, n, n)
        out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


class RefBlock(nn.Module):
    def __init__(self, dim, res, heads, m, shift, mlp_ratio, qkv_bias, drop_path):
        super().__init__()
        self.res = res
        if min(res) <= m:
            m, shift = min(res), 0
        self.m, self.shift = m, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = RefAttention(dim, m, heads, qkv_bias)
        self.drop_path = RefDropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(dim, hidden)
        self.mlp.act = nn.GELU()
        self.mlp.fc2 = nn.Linear(hidden, dim)
        if shift:
            h, w = res
            img = torch.zeros(1, h, w, 1)
            cnt = 0
            for hs in (slice(0, -m), slice(-m, -shift), slice(-shift, None)):
                for ws in (slice(0, -m), slice(-m, -shift), slice(-shift, None)):
                    img[:, hs, ws, :] = cnt
                    cnt += 1
            win = _partition(img, m).squeeze(-1)
            mask = win.unsqueeze(1) - win.unsqueeze(2)
            mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        else:
            mask = None
        self.register_buffer("attn_mask", mask)

    def forward(self, x):
        h, w = self.res
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        x = self.attn(_partition(x, self.m), self.attn_mask)
        x = _reverse(x, self.m, h, w)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.drop_path(x.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class RefMerging(nn.Module):
    def __init__(self, res, dim):
        super().__init__()
        self.res = res
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        h, w = self.res
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class RefExpand(nn.Module):
    def __init__(self, res, dim, scale, out_dim):
        super().__init__()
        self.res, self.scale, self.out_dim = res, scale, out_dim
        self.expand = nn.Linear(dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x):
        h, w = self.res
        s, c = self.scale, self.out_dim
        b = x.shape[0]
        x = self.expand(x).view(b, h, w, s, s, c).permute(0, 1, 3, 2, 4, 5)
        return self.norm(x.reshape(b, h * s * w * s, c))


class RefLayer(nn.Module):
    def __init__(self, dim, res, depth, heads, m, mlp_ratio, qkv_bias, rates, down, up):
        super().__init__()
        self.blocks = nn.ModuleList(
            RefBlock(dim, res, heads, m, 0 if j % 2 == 0 else m // 2, mlp_ratio, qkv_bias, rates[j])
            for j in range(depth))
        self.downsample = RefMerging(res, dim) if down else None
        self.upsample = RefExpand(res, dim, 2, dim // 2) if up else None

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x)
        if self.upsample is not None:
            x = self.upsample(x)
        return x


class ReferenceSwinUnet(nn.Module):
    """Same constructor arguments (those the original supports) and output as ``SwinUnet``."""

    def __init__(self, img_size=224, in_chans=3, num_classes=9, embed_dim=96,
                 depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24), window_size=7, mlp_ratio=4.0,
                 qkv_bias=True, drop_path_rate=0.1, patch_size=4, decoder_depths=None):
        super().__init__()
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        self.img_size, self.num_classes, self.embed_dim = tuple(img_size), num_classes, embed_dim
        n = len(depths)
        decoder_depths = tuple(depths[:-1]) if decoder_depths is None else tuple(decoder_depths)
        self.patches = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.patch_size = patch_size
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
        self.patch_embed.norm = nn.LayerNorm(embed_dim)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()

        def res(level):
            return self.patches[0] >> level, self.patches[1] >> level

        self.layers = nn.ModuleList(
            RefLayer(embed_dim << i, res(i), depths[i], num_heads[i], window_size, mlp_ratio,
                     qkv_bias, dpr[sum(depths[:i]):sum(depths[:i + 1])], i < n - 1, False)
            for i in range(n))
        self.norm = nn.LayerNorm(embed_dim << (n - 1))
        self.layers_up = nn.ModuleList()
        self.concat_back_dim = nn.ModuleList()
        for u in range(n):
            a = n - 1 - u
            dim = embed_dim << a
            if u == 0:
                self.layers_up.append(RefExpand(res(a), dim, 2, dim // 2))
                self.concat_back_dim.append(nn.Identity())
            else:
                rates = dpr[sum(depths[:a]):sum(depths[:a + 1])]
                rates = [rates[min(j, len(rates) - 1)] for j in range(decoder_depths[a])]
                self.layers_up.append(
                    RefLayer(dim, res(a), decoder_depths[a], num_heads[a], window_size, mlp_ratio,
                             qkv_bias, rates, False, a > 0))
                self.concat_back_dim.append(nn.Linear(2 * dim, dim))
        self.norm_up = nn.LayerNorm(embed_dim)
        self.up = RefExpand(res(0), embed_dim, patch_size, embed_dim)
        self.output = nn.Conv2d(embed_dim, num_classes, 1, bias=False)

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = self.patch_embed.norm(x)
        skips = []
        for layer in self.layers:
            skips.append(x)
            x = layer(x)
        x = self.norm(x)
        n = len(self.layers)
        for u, layer in enumerate(self.layers_up):
            if u > 0:
                x = self.concat_back_dim[u](torch.cat([x, skips[n - 1 - u]], -1))
            x = layer(x)
        x = self.up(self.norm_up(x))
        h, w = self.img_size
        x = x.view(x.shape[0], h, w, self.embed_dim).permute(0, 3, 1, 2)
        return self.output(x)


def original_checkpoint(model: ReferenceSwinUnet, prefix: str = "swin_unet.") -> dict:
    """The flat state dict the original training code saves (``module.`` added under DDP)."""
    return {prefix + k: v.clone() for k, v in model.state_dict().items()}


def imagenet_checkpoint(depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), embed_dim=96, window=7,
                        img_size=224, num_classes=1000, seed=0) -> dict:
    """Random weights in the layout of Microsoft's ``swin_tiny_patch4_window7_224.pth``."""
    torch.manual_seed(seed)
    encoder = ReferenceSwinUnet(img_size=img_size, in_chans=3, num_classes=1, embed_dim=embed_dim,
                                depths=depths, num_heads=num_heads, window_size=window)
    state = {k: v.clone() for k, v in encoder.state_dict().items()
             if k.startswith(("patch_embed.", "layers.", "norm."))}
    # In the classification Swin the last stage's norm is `norm` (the same shape as ours) and a
    # linear head follows.
    state["head.weight"] = torch.randn(num_classes, embed_dim << (len(depths) - 1)) * 0.02
    state["head.bias"] = torch.zeros(num_classes)
    return {"model": state}
