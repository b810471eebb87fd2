"""Training batches whose order depends on (seed, epoch) only: the slices, sampler and loader."""

from __future__ import annotations

import random
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..config import Config, TrainConfig
from ..errors import InputError
from .distributed import DistributedContext, gather_objects, raise_first_error

__all__ = ["EpochBatchSampler", "build_train_loader", "open_train_slices", "seed_everything",
           "per_rank_batch_size"]


def seed_everything(seed: int, epoch: int, rank: int) -> None:
    """Seed torch, NumPy and Python from (seed, epoch, rank).

    Called at the start of every epoch, so drop-path and any other randomness of epoch ``e``
    is the same whether the run was resumed or not, and differs between ranks.
    """
    state = np.random.SeedSequence([int(seed), int(epoch), int(rank)]).generate_state(2)
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))
    np.random.seed(int(state[0]))
    random.seed(int(state[1]))


def per_rank_batch_size(global_batch_size: int, world_size: int) -> int:
    """This process's share of the global batch.

    Raises
    ------
    InputError
        The global batch does not split evenly over the processes.
    """
    if global_batch_size % world_size:
        raise InputError(f"config key 'train.batch_size': {global_batch_size} does not split "
                         f"evenly over {world_size} processes")
    return global_batch_size // world_size


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of one rank's share of an epoch, reproducible from (seed, epoch).

    Without ``iters_per_epoch`` an epoch is one pass over the data set: the permutation is
    :class:`~torch.utils.data.DistributedSampler`'s (seeded by ``seed + epoch``, padded so
    every rank gets the same number of batches) and the last batch may be short, as in the
    original code. With ``iters_per_epoch`` an epoch is that many full batches on every rank,
    cut from one endless stream of passes (pass ``j`` is ``randperm`` seeded by ``seed + j``):
    epoch ``e`` takes the stream's ``e``-th stretch of ``iters_per_epoch`` global batches,
    so every slice comes once per pass whatever the epoch length, and each rank takes every
    ``world_size``-th index of it, as DistributedSampler does. ``skip`` drops the first
    batches of an epoch, for a run resumed in the middle of one. One object serves every
    epoch, so a DataLoader with persistent workers can keep them.
    """

    def __init__(self, dataset: Dataset, batch_size: int, context: DistributedContext,
                 seed: int, iters_per_epoch: Optional[int] = None) -> None:
        self.sampler = DistributedSampler(dataset, num_replicas=context.world_size,
                                          rank=context.rank, shuffle=True, seed=int(seed),
                                          drop_last=False)
        self.num_items = len(dataset)
        self.rank, self.world_size = context.rank, context.world_size
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.iters_per_epoch = None if iters_per_epoch is None else int(iters_per_epoch)
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's permutation and how many of its first batches to leave out."""
        self.sampler.set_epoch(int(epoch))
        self.epoch, self.skip = int(epoch), int(skip)

    def batches_per_epoch(self) -> int:
        """Batches in a whole epoch (ignoring ``skip``)."""
        if self.iters_per_epoch is not None:
            return self.iters_per_epoch
        return -(-len(self.sampler) // self.batch_size)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.skip)

    def _stream(self) -> list[int]:
        """This rank's indices of the epoch with ``iters_per_epoch`` iterations."""
        total = self.iters_per_epoch * self.batch_size * self.world_size
        start = self.epoch * total
        passes, position = divmod(start, self.num_items)
        out: list[int] = []
        while len(out) < total:
            generator = torch.Generator()
            generator.manual_seed(self.seed + passes)
            permutation = torch.randperm(self.num_items, generator=generator).tolist()
            out += permutation[position:position + total - len(out)]
            passes, position = passes + 1, 0
        return out[self.rank::self.world_size]

    def __iter__(self):
        indices = list(self.sampler) if self.iters_per_epoch is None else self._stream()
        for start in range(self.skip * self.batch_size, len(indices), self.batch_size):
            yield indices[start:start + self.batch_size]


def build_train_loader(dataset: Dataset, batch_size: int, context: DistributedContext,
                       train_cfg: TrainConfig,
                       num_workers: int) -> tuple[DataLoader, EpochBatchSampler]:
    """The DataLoader of the training slices and its sampler (``train.seed`` and
    ``train.iters_per_epoch``).

    Pinned memory and persistent workers on CUDA (the slices' augmentation runs in the workers
    while the GPU computes); on the CPU the workers would only compete with the model for the
    same cores, so they are not kept alive between epochs.
    """
    if num_workers < 0:
        raise InputError(f"config key 'data.num_workers': must not be negative, got {num_workers}")
    sampler = EpochBatchSampler(dataset, batch_size, context, train_cfg.seed,
                                train_cfg.iters_per_epoch)
    cuda = context.device.type == "cuda"
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                        pin_memory=cuda, persistent_workers=cuda and num_workers > 0)
    return loader, sampler


def open_train_slices(source, config: Config, context: DistributedContext) -> Dataset:
    """The training slices on every rank, their on-disk cache built once per machine.

    The builder (local rank 0, or with ``data.cache_shared`` the job's rank 0) takes the
    cache's lock before the others look, so they wait for it and then map what it wrote;
    without a complete cache, a rank that is not a builder builds it itself (a cache folder
    believed shared that is not). Two runs on the same data serialise on the same lock.

    Raises
    ------
    InputError
        On every rank, when the cache could not be built or opened on any.
    """
    cache = source.slice_cache(config.model.img_size)
    builder = context.is_main if config.data.cache_shared else context.is_local_main
    error, store = None, None
    try:
        if builder:
            cache.claim()
    except InputError as exc:
        error = exc
    gather_objects(None, context)  # the builders hold their locks now
    try:
        if error is None:
            store = cache.open()
    except InputError as exc:
        error = exc
    raise_first_error(error, context)
    return source.train_slices(config.model.img_size, seed=config.train.seed, store=store)
