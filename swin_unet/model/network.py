"""SwinUnet: Swin Transformer encoder, bottleneck and decoder with skip connections."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import InputError
from ..sizes import as_pair
from .attention import SwinBlock
from .layers import FinalPatchExpand, PatchEmbed, PatchExpand, PatchMerging, permute_tokens
from .plan import TokenPlan, stage_geometry

__all__ = ["SwinUnet", "SwinStage", "build_model", "check_sizes", "ATTENTION_MODES"]

# The values of ``attention``; the config's AttentionMode lists the same (a test holds them equal).
ATTENTION_MODES = ("auto", "sdpa", "explicit")


def _valid(img_size: tuple[int, int], patch_size: int, window_size: int, depths) -> bool:
    factor = patch_size * 2 ** (len(depths) - 1)
    if img_size[0] % factor or img_size[1] % factor or min(img_size) <= 0:
        return False
    return all(res % g.window == 0 for g in stage_geometry(img_size, patch_size, window_size, depths)
               for res in g.resolution)


def _check_counts(embed_dim: int, depths: Sequence[int], num_heads: Optional[Sequence[int]],
                  mlp_ratio: Optional[float], decoder_depths: Optional[Sequence[int]]) -> None:
    """Depths, heads, widths: a stage of each depth, heads that divide its channels."""
    if decoder_depths is not None and (len(decoder_depths) != len(depths) - 1
                                       or min(decoder_depths, default=0) < 1):
        raise InputError(f"decoder_depths must hold {len(depths) - 1} positive block counts "
                         f"(one per level but the deepest), got {list(decoder_depths)}",
                         key="decoder_depths")
    if num_heads is not None and len(num_heads) != len(depths):
        raise InputError(f"depths {list(depths)} and num_heads {list(num_heads)} must have the "
                         f"same length", key="num_heads")
    if len(depths) < 2:
        raise InputError(f"depths {list(depths)}: at least 2 stages", key="depths")
    for level, heads in enumerate(num_heads or ()):
        if (embed_dim << level) % heads:
            raise InputError(f"stage {level} has {embed_dim << level} channels, not divisible "
                             f"by num_heads[{level}] = {heads}", key="num_heads")
    if embed_dim % 2:
        raise InputError(f"embed_dim must be even (patch expanding halves it), got {embed_dim}",
                         key="embed_dim")
    if mlp_ratio is not None and int(embed_dim * mlp_ratio) < 1:
        raise InputError(f"the MLP width embed_dim x mlp_ratio must be at least 1, got "
                         f"mlp_ratio {mlp_ratio}", key="mlp_ratio")


def check_sizes(img_size: Union[int, Sequence[int]], patch_size: int, window_size: int,
                depths: Sequence[int], *, num_heads: Optional[Sequence[int]] = None,
                embed_dim: int = 96, mlp_ratio: Optional[float] = None, in_chans: int = 1,
                num_classes: int = 2,
                decoder_depths: Optional[Sequence[int]] = None) -> tuple[int, int]:
    """Validate the network's sizes: the one place that knows which ones fit together.

    The config calls it when it is read (:func:`swin_unet.config.checks.check_config`), the model
    when it is built.

    Parameters
    ----------
    img_size : int or (H, W)
        The input size.
    patch_size, window_size : int
        Patch embedding stride and attention window.
    depths, num_heads : sequence of int
        Blocks and heads per stage (``num_heads`` None: not checked).
    decoder_depths : sequence of int, optional
        Decoder blocks per level but the deepest (None: the encoder's, nothing to check).
    embed_dim : int
        Channels of the first stage.
    mlp_ratio : float, optional
        MLP width over channels (None: not checked).
    in_chans, num_classes : int
        Input channels and output classes.

    Returns
    -------
    (H, W)

    Raises
    ------
    InputError
        A size that is not positive, heads that do not divide a stage's channels, H or W not
        divisible by patch_size * 2^(stages-1), or a stage whose resolution the window does
        not divide (the message names a valid alternative). ``key`` holds the argument's name.
    """
    depths = tuple(depths)
    positive = {"embed_dim": [embed_dim], "window_size": [window_size],
                "patch_size": [patch_size], "depths": list(depths),
                "num_heads": list(num_heads) if num_heads is not None else [1],
                "in_chans": [in_chans], "num_classes": [num_classes]}
    for key, values in positive.items():
        if not values or min(values) < 1:
            what = ("a non-empty list of positive integers" if key in ("depths", "num_heads")
                    else "positive")
            shown = values[0] if what == "positive" else values
            raise InputError(f"{key} must be {what}, got {shown}", key=key)
    size = as_pair(img_size)
    _check_counts(embed_dim, depths, num_heads, mlp_ratio, decoder_depths)
    depths = tuple(depths)
    factor = patch_size * 2 ** (len(depths) - 1)
    if size[0] % factor or size[1] % factor or min(size) <= 0:
        nearest = tuple(max(factor, round(s / factor) * factor) for s in size)
        raise InputError(
            f"img_size {size[0]}x{size[1]} is not valid: H and W must be positive multiples of "
            f"patch_size * 2^{len(depths) - 1} = {factor}; e.g. img_size={nearest[0]}x{nearest[1]}",
            key="img_size")
    for g in stage_geometry(size, patch_size, window_size, depths):
        if g.resolution[0] % g.window or g.resolution[1] % g.window:
            windows = [m for m in range(2, max(size)) if _valid(size, patch_size, m, depths)]
            window_hint = (f"window_size={min(windows, key=lambda m: abs(m - window_size))}"
                           if windows else "another window_size")
            # The nearest sizes (multiples of `factor`) that this window divides at every stage.
            candidates = [(h, w) for h in range(factor, 2 * size[0] + factor, factor)
                          for w in range(factor, 2 * size[1] + factor, factor)
                          if _valid((h, w), patch_size, window_size, depths)]
            size_hint = ""
            if candidates:
                h, w = min(candidates, key=lambda s: (abs(s[0] - size[0]) + abs(s[1] - size[1]),
                                                     -s[0] * s[1]))
                size_hint = f", or img_size={h}x{w} for window_size {window_size}"
            raise InputError(
                f"window_size {window_size} does not divide stage {g.level}'s resolution "
                f"{g.resolution[0]}x{g.resolution[1]} (img_size {size[0]}x{size[1]}, patch_size "
                f"{patch_size}): every stage's resolution must be a multiple of its window; use "
                f"{window_hint}{size_hint}", key="img_size")
    return size


class SwinStage(nn.Module):
    """Swin blocks of one level, alternating W-MSA and SW-MSA, run in window order.

    ``downsample`` (encoder) or ``upsample`` (decoder) is applied by the network after the blocks,
    with the plan's gather for the next level. Parameter names follow the original code.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, window: int,
                 shifts: Sequence[int], mlp_ratio: float, qkv_bias: bool, drop: float,
                 attn_drop: float, drop_path: Sequence[float]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, shifts[j], mlp_ratio, qkv_bias, drop, attn_drop,
                      drop_path[j])
            for j in range(depth))

    def run_blocks(self, x: torch.Tensor, plan: TokenPlan, level: int, fused: bool) -> torch.Tensor:
        """Run the blocks on ``x`` in the first block's window order; returns the last's order."""
        mask = plan.mask(level)
        for j, block in enumerate(self.blocks):
            step = plan.get(f"step{level}_{j}") if j else None
            if step is not None:
                x = permute_tokens(x, *step)
            x = block(x, mask if block.shift else None, fused)
        return x


class SwinUnet(nn.Module):
    """The Swin-Unet segmentation network (Cao et al., 2021).

    Parameters
    ----------
    img_size
        input size, an int or (H, W); H and W multiples of patch_size * 2^(stages-1)
        and every stage's resolution divisible by its window.
    in_chans
        input channels (1 for CT/MRI slices; 3 for the original checkpoints' inputs).
    num_classes
        output classes, background included.
    embed_dim
        channels of the first stage; doubles at every patch merging.
    depths
        Swin blocks per encoder stage.
    decoder_depths
        Swin blocks of the decoder stage at each level but the deepest (same
        indexing as ``depths``); None mirrors the encoder (``depths[:-1]``), as the original.
    num_heads
        attention heads per stage.
    window_size
        attention window M (shrunk to a stage's resolution where that is <= M).
    mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, drop_path_rate
        as in Swin; drop-path
        increases linearly over the encoder blocks and is mirrored in the decoder.
    patch_size
        side of the patches embedded as tokens.
    attention
        "explicit" (softmax of q k^T + bias), "sdpa"
        (``F.scaled_dot_product_attention``), or "auto": SDPA on CUDA, explicit elsewhere
        (explicit is faster on the CPU for 49-token windows, docs/performance.md).
    grad_checkpoint
        recompute each stage's activations in the backward pass to save memory.

    Input (B, in_chans, H, W) -> logits (B, num_classes, H, W).
    """

    def __init__(self, img_size: Union[int, Sequence[int]] = 224, in_chans: int = 1,
                 num_classes: int = 9, embed_dim: int = 96, depths: Sequence[int] = (2, 2, 2, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 7,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1, patch_size: int = 4,
                 attention: str = "auto", grad_checkpoint: bool = False,
                 decoder_depths: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        depths, num_heads = tuple(depths), tuple(num_heads)
        decoder_depths = depths[:-1] if decoder_depths is None else tuple(decoder_depths)
        if attention not in ATTENTION_MODES:
            raise InputError(f"attention must be one of {', '.join(ATTENTION_MODES)}, got "
                             f"{attention!r}", key="attention")
        self.img_size = check_sizes(img_size, patch_size, window_size, depths,
                                    num_heads=num_heads, embed_dim=embed_dim, mlp_ratio=mlp_ratio,
                                    in_chans=in_chans, num_classes=num_classes,
                                    decoder_depths=decoder_depths)
        self.in_chans, self.num_classes, self.embed_dim = in_chans, num_classes, embed_dim
        self.depths, self.num_heads, self.decoder_depths = depths, num_heads, decoder_depths
        self.window_size, self.patch_size = window_size, patch_size
        self.attention, self.grad_checkpoint = attention, grad_checkpoint
        levels = len(depths)

        self.plan = TokenPlan(self.img_size, patch_size, window_size, depths, decoder_depths)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        stage_rates = [rates[sum(depths[:i]):sum(depths[:i + 1])] for i in range(levels)]

        def stage(level: int, decoder: bool = False) -> SwinStage:
            g = (self.plan.decoder_stages if decoder else self.plan.stages)[level]
            # A decoder stage deeper than its encoder stage repeats the encoder's last rate.
            block_rates = [stage_rates[level][min(j, depths[level] - 1)]
                           for j in range(len(g.shifts))]
            return SwinStage(embed_dim << level, len(g.shifts), num_heads[level], g.window,
                             g.shifts, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, block_rates)

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        self.layers = nn.ModuleList()
        for level in range(levels):
            layer = stage(level)
            layer.downsample = PatchMerging(embed_dim << level) if level < levels - 1 else None
            self.layers.append(layer)
        self.norm = nn.LayerNorm(embed_dim << (levels - 1))

        # Up-stage u works at level a = levels - 1 - u; up-stage 0 is a patch expanding alone.
        self.layers_up = nn.ModuleList([PatchExpand(embed_dim << (levels - 1))])
        self.concat_back_dim = nn.ModuleList([nn.Identity()])
        for u in range(1, levels):
            a = levels - 1 - u
            layer = stage(a, decoder=True)
            layer.upsample = PatchExpand(embed_dim << a) if a > 0 else None
            self.layers_up.append(layer)
            self.concat_back_dim.append(nn.Linear(2 * (embed_dim << a), embed_dim << a))
        self.norm_up = nn.LayerNorm(embed_dim)
        self.up = FinalPatchExpand(embed_dim, scale=patch_size)
        self.output = nn.Conv2d(embed_dim, num_classes, kernel_size=1, bias=False)
        self.apply(_init_weights)

    def set_input_size(self, img_size: Union[int, Sequence[int]]) -> None:
        """Rebuild the gathers and masks for another input size with the same windows;
        :meth:`forward` takes inputs of this size from then on.

        Raises
        ------
        ValueError
            the size is invalid, or needs windows other than the model's parameters.
        """
        size = check_sizes(img_size, self.patch_size, self.window_size, self.depths)
        if size == self.img_size:
            return
        plan = TokenPlan(size, self.patch_size, self.window_size, self.depths, self.decoder_depths)
        new, old = plan.stages, self.plan.stages
        if [g.window for g in new] != [g.window for g in old]:
            raise ValueError(
                f"input {size[0]}x{size[1]} needs windows {[g.window for g in new]} but the model "
                f"was built for {self.img_size[0]}x{self.img_size[1]} with windows "
                f"{[g.window for g in old]}; resize the input to "
                f"{self.img_size[0]}x{self.img_size[1]}")
        self.plan = plan.to(self.plan.embed.device)
        self.img_size = size
        levels = len(self.depths)
        stages = [(layer, new[i]) for i, layer in enumerate(self.layers)]
        stages += [(self.layers_up[u], plan.decoder_stages[levels - 1 - u])
                   for u in range(1, levels)]
        for stage, geometry in stages:
            for block, shift in zip(stage.blocks, geometry.shifts):
                block.shift = shift

    def use_fused_attention(self, device: torch.device) -> bool:
        """Whether attention runs through SDPA on ``device``."""
        if self.attention == "auto":
            return device.type == "cuda"
        return self.attention == "sdpa"

    def _run_stage(self, stage: SwinStage, x: torch.Tensor, level: int, fused: bool) -> torch.Tensor:
        if self.grad_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(stage.run_blocks, x, self.plan, level, fused, use_reentrant=False)
        return stage.run_blocks(x, self.plan, level, fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected input (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(f"input {x.shape[-2]}x{x.shape[-1]}, but the model is set for "
                             f"{self.img_size[0]}x{self.img_size[1]}: resize the input, or call "
                             f"set_input_size({tuple(x.shape[-2:])}) first")
        plan, levels = self.plan, len(self.depths)
        fused = self.use_fused_attention(x.device)

        x = self.pos_drop(self.patch_embed(x, *plan.get("embed")))
        skips = []
        for level, stage in enumerate(self.layers):
            skips.append(x)
            x = self._run_stage(stage, x, level, fused)
            if stage.downsample is not None:
                x = stage.downsample(x, *plan.get(f"merge{level}"))
        x = self.norm(x)

        x = self.layers_up[0](x, *plan.get(f"expand{levels - 1}"))
        for u in range(1, levels):
            a = levels - 1 - u
            stage = self.layers_up[u]
            x = self.concat_back_dim[u](torch.cat([x, skips[a]], dim=-1))
            x = self._run_stage(stage, x, a, fused)
            if stage.upsample is not None:
                x = stage.upsample(x, *plan.get(f"expand{a}"))
        x = self.norm_up(x)
        weight = self.output.weight.view(self.num_classes, self.embed_dim)
        return self.up.to_image(x, weight, *plan.get("pixels"), self.img_size)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def build_model(config, **overrides) -> SwinUnet:
    """SwinUnet from a :class:`~swin_unet.config.ModelConfig` (a dataclass, or any object with
    its fields): every field that is a constructor argument, then ``overrides``."""
    values = ({f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
              if dataclasses.is_dataclass(config) else dict(vars(config)))
    kwargs = {name: value for name, value in values.items() if name in _ARGUMENTS}
    kwargs.update(overrides)
    return SwinUnet(**kwargs)


_ARGUMENTS = frozenset(inspect.signature(SwinUnet).parameters)
