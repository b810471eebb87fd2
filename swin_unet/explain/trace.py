"""One recorded forward pass: FLOPs per module and what every window attention received."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..model.attention import WindowAttention
from ..model.tiling import untiled

__all__ = ["AttentionCall", "ModelTrace", "trace_model"]


@dataclass
class AttentionCall:
    """What one :class:`WindowAttention` module got in the traced pass (batch of one image).

    Attributes
    ----------
    name
        the module's name in the model, e.g. ``layers.0.blocks.1.attn``.
    windows
        windows it attended over (the first dimension of its input).
    window
        side M of a window (its input holds M^2 tokens per window).
    channels
        channels C of its tokens.
    heads
        attention heads.
    mask
        the shift-mask tensor the block passed to it (the object itself), or None.
    flops
        FLOPs counted inside the module: the qkv and proj linears and the two matmuls.
    matmul_flops
        FLOPs of its batched matmuls (``aten.bmm``): ``q k^T`` and ``attn v``; the
        projections are plain GEMMs (``aten.addmm`` / ``aten.mm``), counted apart.
    """

    name: str
    windows: int
    window: int
    channels: int
    heads: int
    mask: Optional[torch.Tensor]
    flops: int = 0
    matmul_flops: int = 0


@dataclass
class ModelTrace:
    """FLOPs counted by ``torch.utils.flop_counter`` in one forward pass of one image.

    Attributes
    ----------
    flops_by_module
        module name (``""`` for the whole model) -> FLOPs counted while that
        module ran, its children included. The counter counts 2 FLOPs per multiply-add of
        matmuls and convolutions; norms, softmax, GELU and additions are not counted.
    attention
        module name -> :class:`AttentionCall`, in the order the modules ran.
    """

    flops_by_module: dict[str, int]
    attention: dict[str, AttentionCall]

    @property
    def total_flops(self) -> int:
        """FLOPs of the whole forward pass."""
        return self.flops_by_module.get("", 0)


def _record(calls: dict[str, AttentionCall], name: str, module: WindowAttention, args: tuple,
            kwargs: dict) -> None:
    x = args[0]
    mask = args[1] if len(args) > 1 else kwargs.get("mask")
    windows, tokens, channels = x.shape
    calls[name] = AttentionCall(name, windows, math.isqrt(tokens), channels, module.num_heads, mask)


def _module_name(counter_name: str, root: str) -> Optional[str]:
    if counter_name == root:
        return ""
    if counter_name.startswith(root + "."):
        return counter_name[len(root) + 1:]
    return None  # the counter's "Global" entry, which repeats the root's


def trace_model(model: torch.nn.Module) -> ModelTrace:
    """Run ``model`` once on a zero image of its input size and record FLOPs and attention inputs.

    The pass runs in eval mode without gradients and with the explicit attention path, whose
    ``q @ k^T`` and ``attn @ v`` the counter sees as batched matmuls (the fused SDPA kernel
    would hide them); the model's mode and attention setting are restored afterwards. FLOPs do
    not depend on the input values.

    Parameters
    ----------
    model : SwinUnet
        The network to trace.

    Returns
    -------
    ModelTrace
        The counts of one image.
    """
    device = next(model.parameters()).device
    x = torch.zeros(1, model.in_chans, *model.img_size, device=device)
    calls: dict[str, AttentionCall] = {}
    handles = [module.register_forward_pre_hook(partial(_record, calls, name), with_kwargs=True)
               for name, module in model.named_modules() if isinstance(module, WindowAttention)]
    was_training, attention = model.training, model.attention
    model.eval()
    model.attention = "explicit"
    try:
        with torch.no_grad(), untiled(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
        model.attention = attention

    root = type(model).__name__
    flops, bmm_flops = {}, {}
    for counter_name, by_op in counter.get_flop_counts().items():
        name = _module_name(counter_name, root)
        if name is not None:
            flops[name] = int(sum(by_op.values()))
            bmm_flops[name] = int(sum(v for op, v in by_op.items() if str(op) == "aten.bmm"))
    for name, call in calls.items():
        call.flops = flops.get(name, 0)
        call.matmul_flops = bmm_flops.get(name, 0)
    return ModelTrace(flops, calls)
