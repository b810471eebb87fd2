"""Shared pytest setup: the repository root is importable (swin_unet, datasets, benchmarks)."""

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests compare numbers; keep them reproducible and light on a shared 2-core machine.
torch.set_num_threads(min(2, torch.get_num_threads()))
