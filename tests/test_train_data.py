"""The training sampler: every slice once per epoch over the ranks, reproducible, resumable."""

import torch

from swin_unet.training.data import EpochBatchSampler, seed_everything
from swin_unet.training.distributed import DistributedContext


def epoch_batches(n, batch, world_size, seed, epoch, skip=0):
    out = []
    for rank in range(world_size):
        sampler = EpochBatchSampler(range(n), batch, DistributedContext(rank=rank,
                                                                        world_size=world_size),
                                    seed)
        sampler.set_epoch(epoch, skip=skip)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        out.append(batches)
    return out


def test_every_slice_once_per_epoch_over_the_ranks():
    n = 23
    (single,) = epoch_batches(n, 4, 1, seed=5, epoch=0)
    assert sorted(i for b in single for i in b) == list(range(n))
    assert [len(b) for b in single] == [4] * 5 + [3]  # the last batch is short, not dropped
    ranks = epoch_batches(n, 2, 2, seed=5, epoch=0)
    assert len(ranks[0]) == len(ranks[1])  # the ranks step together
    seen = [i for batches in ranks for b in batches for i in b]
    # DistributedSampler pads 23 to 24 with one repeated slice.
    assert sorted(set(seen)) == list(range(n)) and len(seen) == 24
    assert not set(i for b in ranks[0] for i in b) - set(range(n))


def test_order_comes_from_seed_and_epoch_and_a_resume_skips_done_batches():
    a = epoch_batches(40, 4, 2, seed=1, epoch=3)
    assert a == epoch_batches(40, 4, 2, seed=1, epoch=3)
    assert a != epoch_batches(40, 4, 2, seed=1, epoch=4)
    assert a != epoch_batches(40, 4, 2, seed=2, epoch=3)
    resumed = epoch_batches(40, 4, 2, seed=1, epoch=3, skip=2)
    assert resumed == [batches[2:] for batches in a]


def test_seed_everything_per_epoch_and_rank():
    draws = {}
    for epoch, rank in ((0, 0), (0, 1), (1, 0), (0, 0)):
        seed_everything(1234, epoch, rank)
        draws.setdefault((epoch, rank), []).append(torch.rand(3))
    assert torch.equal(*draws[(0, 0)])
    assert not torch.equal(draws[(0, 0)][0], draws[(0, 1)][0])
    assert not torch.equal(draws[(0, 0)][0], draws[(1, 0)][0])


def iters_batches(n, batch, world_size, seed, epoch, iters, skip=0):
    out = []
    for rank in range(world_size):
        context = DistributedContext(rank=rank, world_size=world_size)
        sampler = EpochBatchSampler(range(n), batch, context, seed, iters_per_epoch=iters)
        sampler.set_epoch(epoch, skip=skip)
        batches = list(sampler)
        assert len(batches) == len(sampler) == iters - skip
        out.append(batches)
    return out


def test_iters_per_epoch_gives_full_batches_and_every_slice_once_per_pass():
    n, batch, world, iters = 23, 2, 2, 4  # 16 slices an epoch: a pass spans epochs
    epochs = [iters_batches(n, batch, world, 5, e, iters) for e in range(6)]
    for ranks in epochs:
        assert all(len(b) == batch for batches in ranks for b in batches)
    # The epochs' indices in global order (rank r holds every world-th) are passes over the
    # slices one after another.
    interleaved = [ranks[r][step][pos] for ranks in epochs
                   for step in range(iters) for pos in range(batch) for r in range(world)]
    for start in range(0, 4 * n, n):
        assert sorted(interleaved[start:start + n]) == list(range(n))
    assert epochs[2] == iters_batches(n, batch, world, 5, 2, iters)
    assert epochs[2] != iters_batches(n, batch, world, 6, 2, iters)
    resumed = iters_batches(n, batch, world, 5, 2, iters, skip=3)
    assert resumed == [batches[3:] for batches in epochs[2]]


def test_iters_per_epoch_of_one_pass_is_the_distributed_samplers_order():
    n, batch, world = 24, 3, 2  # 4 iterations of 3 per rank cover the 24 slices exactly
    for epoch in (0, 1):
        assert (iters_batches(n, batch, world, 9, epoch, 4)
                == epoch_batches(n, batch, world, seed=9, epoch=epoch))
