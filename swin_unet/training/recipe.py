"""The optimisation recipe: the published loss, the optimiser and the learning-rate schedule."""

from __future__ import annotations

import math
from typing import Callable

import torch
from monai.losses import DiceCELoss
from torch import nn

__all__ = ["SegmentationLoss", "scaled_lr", "build_optimizer", "build_scheduler", "lr_factor"]

class SegmentationLoss(nn.Module):
    """``ce_weight`` * cross-entropy + ``dice_weight`` * soft Dice, through MONAI's DiceCELoss.

    MONAI is configured to equal the published loss: softmax over the logits, Dice over all
    classes including background, squared terms in the denominator (sum p^2 + sum g^2), sums
    over the whole batch (not per image), smoothing 1e-5 in numerator and denominator, then the
    mean over classes; cross-entropy averaged over pixels.

    Parameters
    ----------
    ce_weight, dice_weight : float
        Weights of the two terms (published: 0.4 and 0.6).
    """

    def __init__(self, ce_weight: float = 0.4, dice_weight: float = 0.6) -> None:
        super().__init__()
        self.ce_weight, self.dice_weight = float(ce_weight), float(dice_weight)
        self.loss = DiceCELoss(include_background=True, to_onehot_y=True, softmax=True,
                               squared_pred=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5,
                               lambda_ce=self.ce_weight, lambda_dice=self.dice_weight)

    def forward(self, logits: torch.Tensor,
                target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss of ``logits`` (B, K, H, W) against integer labels ``target`` (B, 1, H, W).

        Returns
        -------
        (total, cross_entropy, dice) : tuple of torch.Tensor
            The weighted total (with grad), and its two terms (detached) for logging. The same
            total as ``DiceCELoss.forward``; the terms are computed once, not twice.
        """
        # Under autocast the softmax and the batch-wide sums run in fp32: fp16 sums of
        # 224*224*24 squares overflow.
        logits = logits.float()
        dice = self.loss.dice(logits, target)
        cross_entropy = self.loss.ce(logits, target)
        total = self.dice_weight * dice + self.ce_weight * cross_entropy
        return total, cross_entropy.detach(), dice.detach()


def scaled_lr(train, global_batch_size: int) -> float:
    """The learning rate at ``global_batch_size``: ``base_lr`` scaled linearly.

    The published recipe (0.05 at batch 24) is reproduced exactly at batch 24, on any number of
    GPUs, because ``train.batch_size`` is the global batch.
    """
    # The ratio first: at the base batch the rate is base_lr to the last bit (0.05 * 24 / 24
    # is not 0.05 in floating point).
    return train.base_lr * (global_batch_size / train.base_batch_size)


def _decay_and_no_decay(model: nn.Module) -> list[dict]:
    """AdamW parameter groups: no weight decay on norms, biases and relative-position tables."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith("relative_position_bias_table"):
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def _fused_supported(model: nn.Module) -> bool:
    """Fused SGD/AdamW exist for float CPU and CUDA parameters from PyTorch 2.4 on."""
    try:
        torch.optim.SGD([torch.zeros(1)], lr=0.1, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return False
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
               for p in model.parameters())


def build_optimizer(model: nn.Module, train, global_batch_size: int) -> torch.optim.Optimizer:
    """The optimiser of ``train.optimizer`` at the linearly scaled learning rate.

    SGD (the published recipe) decays every parameter, as the original code does; AdamW follows
    the Swin convention of no decay on norms, biases and relative-position bias tables.
    """
    lr = scaled_lr(train, global_batch_size)
    # The fused kernels update all parameters in one pass (docs/performance.md).
    fused = {"fused": True} if _fused_supported(model) else {}
    if train.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=train.momentum,
                               weight_decay=train.weight_decay, **fused)
    # "adamw": the config's Literal field admits no other value.
    return torch.optim.AdamW(_decay_and_no_decay(model), lr=lr,
                             weight_decay=train.weight_decay, **fused)


def lr_factor(train, iters_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the initial lr at iteration ``step`` (0-based) of the whole run.

    ``poly``: the original trainer's rate at every step. It sets the rate after each
    optimiser step from the count before that step, so steps 0 and 1 both run at the full
    rate and step ``k >= 1`` at ``(1 - (k - 1) / total) ** poly_power``. ``cosine``: linear warm-up over ``warmup_epochs``
    (cut short in a run shorter than that, e.g. a 1-epoch trial), then half a cosine down to 0.
    """
    total = max(1, train.epochs * iters_per_epoch)
    warmup = min(total - 1, train.warmup_epochs * iters_per_epoch)
    power = train.poly_power

    if train.schedule == "poly":
        def factor(step: int) -> float:
            return max(0.0, 1.0 - max(0, step - 1) / total) ** power
    else:  # "cosine"
        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, train,
                    iters_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration LambdaLR over :func:`lr_factor`.

    The factor is a plain function, so the scheduler's state dict holds only the iteration
    count: a resumed run rebuilds the schedule from its own config.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(train, iters_per_epoch))
