"""Shared pytest setup: the repository root is importable (swin_unet, datasets, benchmarks)."""

import os
import sys
from pathlib import Path

# Before torch loads. Tests run tiny models, for which two OpenMP threads only add barriers: on a
# busy 2-core machine a tiny forward took 1.2 s with 2 spinning threads against 11 ms with one.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(1)
