"""Which precision ``--amp`` runs in on a device: one rule for training, validation and test.py."""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from typing import Optional

import torch

__all__ = ["cpu_bf16_support", "autocast_dtype", "autocast", "precision_name"]

logger = logging.getLogger(__name__)

# /proc/cpuinfo flags of the CPU instructions that compute bf16 natively.
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_bf16_support() -> Optional[str]:
    """The native bf16 instructions of this CPU ("amx_bf16" or "avx512_bf16"), or None.

    Read from PyTorch's CPU probe (``torch.cpu.get_capabilities``, cpuinfo) where it has one,
    else from the flags in ``/proc/cpuinfo``. Without them bf16 is emulated and far slower than
    float32 (docs/performance.md).
    """
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        found = capabilities()
        return next((flag for flag in _BF16_FLAGS if found.get(flag)), None)
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return next((flag for flag in _BF16_FLAGS if flag in flags), None)


def autocast_dtype(device: torch.device, amp: bool, requested: str = "auto") -> Optional[torch.dtype]:
    """The autocast dtype of ``--amp`` on ``device``; None means float32.

    Parameters
    ----------
    device : torch.device
        Where the model runs.
    amp : bool
        Whether mixed precision was asked for (``--amp``, ``train.amp``).
    requested : {"auto", "bf16", "fp16"}
        ``train.amp_dtype``. ``auto``: on CUDA bf16 where the GPU supports it, else fp16; on
        the CPU bf16 where it has native bf16 instructions (AMX or AVX-512 BF16), else float32.
        ``bf16`` is honoured on any device (emulated, and slow, on a CPU without them).
        ``fp16`` on the CPU runs float32 (PyTorch's CPU fp16 autocast has no loss scaling).
    """
    if not amp:
        return None
    if device.type == "cuda":
        if requested == "fp16":
            return torch.float16
        if requested == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    if requested == "bf16" or (requested == "auto" and cpu_bf16_support()):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` in ``dtype`` on ``device``, or a no-op for float32 (None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def precision_name(device: torch.device, dtype: Optional[torch.dtype], amp: bool) -> str:
    """One phrase for the log: which precision runs, and why float32 when ``--amp`` was given."""
    if dtype is not None:
        name = str(dtype).replace("torch.", "")
        if device.type == "cpu":
            native = cpu_bf16_support()
            return f"{name} autocast ({native or 'emulated: this CPU has no bf16 instructions'})"
        return f"{name} autocast"
    if amp and device.type == "cpu":
        return ("float32 (--amp: this CPU has no AMX or AVX-512 BF16 instructions, and emulated "
                "bf16 runs far slower than float32)")
    return "float32"
