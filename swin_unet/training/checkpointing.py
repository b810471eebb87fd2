"""Training checkpoints: atomic writes, the random-number state, and loading for --resume."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from ..config.checks import check_class_names
from ..errors import InputError, writing
from ..model import read_checkpoint

__all__ = ["atomic_save", "atomic_copy", "capture_rng_state", "restore_rng_state",
           "rank_rng_state",
           "unwrap_model", "read_resume_checkpoint", "stale_temporaries",
           "describe", "REQUIRED_KEYS"]

logger = logging.getLogger(__name__)

# Keys the contract promises, plus what an exact resume needs.
REQUIRED_KEYS = ("model", "config", "class_names", "epoch", "optimizer", "scheduler", "scaler",
                 "best_metric", "global_step", "step_in_epoch", "rng")


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable; not possible (nor needed) on every platform."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Union[str, Path]) -> None:
    """``torch.save`` to ``path`` so that a kill at any moment leaves the old file intact.

    The data goes to ``<path>.tmp``, is flushed to disk, then renamed over ``path``; a rename
    within one directory is atomic on POSIX and Windows. A failed write removes ``<path>.tmp``.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with writing(path):  # a full or read-only disk: one line naming the checkpoint
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as handle:
                torch.save(obj, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:  # a full disk, an interruption: no half-written file left behind
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)


def atomic_copy(source: Union[str, Path], path: Union[str, Path]) -> None:
    """Copy a finished checkpoint to ``path`` atomically (cheaper than serialising twice)."""
    source, path = Path(source), Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with writing(path):
        try:
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)


def capture_rng_state() -> dict:
    """The state of every random generator the loop uses, in ``weights_only``-loadable types."""
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"bit_generator": numpy_state["bit_generator"],
                  "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                  "pos": int(numpy_state["state"]["pos"]),
                  "has_gauss": int(numpy_state["has_gauss"]),
                  "gauss": float(numpy_state["gauss"])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Put back what :func:`capture_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    numpy = state["numpy"]
    np.random.set_state({"bit_generator": numpy["bit_generator"],
                         "state": {"key": numpy["key"].numpy().astype(np.uint32),
                                   "pos": numpy["pos"]},
                         "has_gauss": numpy["has_gauss"], "gauss": numpy["gauss"]})
    if "cuda" in state:
        cuda = state["cuda"]
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if len(cuda) == visible:
            torch.cuda.set_rng_state_all(cuda)
        else:
            logger.warning("the CUDA random state was saved with %d visible GPU(s) and this "
                           "process sees %d: not restored, so random draws on the GPU "
                           "(drop-path) differ from the interrupted run's", len(cuda), visible)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The SwinUnet inside DistributedDataParallel and ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def read_resume_checkpoint(path: Union[str, Path]) -> dict:
    """Read a training checkpoint for ``--resume`` and check that it holds what resuming needs.

    Raises
    ------
    InputError
        The file is missing or unreadable, or is not a training checkpoint of this project.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from (file not found)")
    checkpoint = read_checkpoint(path)
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise InputError(f"{path}: not a training checkpoint of this project (no "
                         f"'{missing[0]}' entry)")
    if not isinstance(checkpoint["config"], dict):
        raise InputError(f"{path}: the checkpoint's 'config' is not a mapping", path=path)
    check_class_names(checkpoint["class_names"], f"{path}: stored 'class_names'")
    return checkpoint


def stale_temporaries(directory: Union[str, Path]) -> list[Path]:
    """Half-written ``*.tmp`` files a killed run left behind."""
    directory = Path(directory)
    return sorted(directory.glob("*.pth.tmp")) if directory.is_dir() else []


def describe(checkpoint: dict) -> str:
    """One line for the log about a training checkpoint."""
    best = checkpoint.get("best_metric")
    text = f"epoch {checkpoint['epoch']}, step {checkpoint['global_step']}"
    if checkpoint.get("step_in_epoch"):
        text += f" ({checkpoint['step_in_epoch']} iterations into epoch {checkpoint['epoch'] + 1})"
    return text + (f", best mean Dice {best:.4f}" if best is not None else "")


def rank_rng_state(state: dict, context, path: Path) -> dict:
    """This rank's random state from a checkpoint (rank 0's is ``rng``).

    A checkpoint of a run with another number of processes has no state for this rank: every
    rank then continues with rank 0's (logged: not an exact replay).
    """
    ranks = state.get("rng_ranks")
    if ranks is not None and len(ranks) == context.world_size:
        return ranks[context.rank]
    if context.distributed:
        logger.warning("%s holds no random state for %d processes: every rank continues "
                       "the interrupted epoch with rank 0's (not an exact replay)", path,
                       context.world_size)
    return state["rng"]
