"""Shared pytest setup: one quiet OpenMP thread (pyproject's pythonpath makes the root importable)."""

import atexit
import os
import shutil
import tempfile

# Before torch loads. Tests run tiny models, for which two OpenMP threads only add barriers: on a
# busy 2-core machine a tiny forward took 1.2 s with 2 spinning threads against 11 ms with one.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Slice caches of the tests (and of the train.py processes they start) in one temporary folder,
# not in cache/ of the working folder.
if "SWIN_UNET_CACHE" not in os.environ:
    os.environ["SWIN_UNET_CACHE"] = tempfile.mkdtemp(prefix="swin-unet-test-cache-")
    atexit.register(shutil.rmtree, os.environ["SWIN_UNET_CACHE"], True)

import torch  # noqa: E402

torch.set_num_threads(1)
