"""Shared pytest setup: one quiet OpenMP thread (pyproject's pythonpath makes the root importable)."""

import os

# Before torch loads. Tests run tiny models, for which two OpenMP threads only add barriers: on a
# busy 2-core machine a tiny forward took 1.2 s with 2 spinning threads against 11 ms with one.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

torch.set_num_threads(1)
