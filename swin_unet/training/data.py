"""Training batches whose order depends on (seed, epoch) only: the sampler and the DataLoader."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..errors import InputError
from .distributed import DistributedContext

__all__ = ["EpochBatchSampler", "build_train_loader", "seed_everything", "per_rank_batch_size"]


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
    """Batches of one rank's share of a shuffled epoch, reproducible from (seed, epoch).

    The permutation is :class:`~torch.utils.data.DistributedSampler`'s (seeded by
    ``seed + epoch``, padded so every rank gets the same number of batches); the last batch
    may be short, as in the original code. ``skip`` drops the first batches of an epoch, for a
    run resumed in the middle of one. One object serves every epoch, so a DataLoader with
    persistent workers can keep them.
    """

    def __init__(self, dataset: Dataset, batch_size: int, context: DistributedContext,
                 seed: int) -> None:
        self.sampler = DistributedSampler(dataset, num_replicas=context.world_size,
                                          rank=context.rank, shuffle=True, seed=int(seed),
                                          drop_last=False)
        self.batch_size = int(batch_size)
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's permutation and how many of its first batches to leave out."""
        self.sampler.set_epoch(int(epoch))
        self.skip = int(skip)

    def batches_per_epoch(self) -> int:
        """Batches in a whole epoch (ignoring ``skip``)."""
        return -(-len(self.sampler) // self.batch_size)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.skip)

    def __iter__(self):
        indices = list(self.sampler)
        for start in range(self.skip * self.batch_size, len(indices), self.batch_size):
            yield indices[start:start + self.batch_size]


def build_train_loader(dataset: Dataset, batch_size: int, context: DistributedContext,
                       seed: int, num_workers: int) -> tuple[DataLoader, EpochBatchSampler]:
    """The DataLoader of the training slices and its sampler.

    Pinned memory and persistent workers on CUDA (the slices' augmentation runs in the workers
    while the GPU computes); on the CPU the workers would only compete with the model for the
    same cores, so they are not kept alive between epochs.
    """
    if num_workers < 0:
        raise InputError(f"config key 'data.num_workers': must not be negative, got {num_workers}")
    sampler = EpochBatchSampler(dataset, batch_size, context, seed)
    cuda = context.device.type == "cuda"
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                        pin_memory=cuda, persistent_workers=cuda and num_workers > 0)
    return loader, sampler
