"""Randomness that depends on (seed, epoch, sample index) only.

Seeding per sample makes augmentation independent of the number of workers, of the number of ranks and of where a
resumed run restarts, which is what lets a 2-process run equal a 1-process run and a killed run resume exactly."""
import random

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def mix_seed(*parts) -> int:
    """A 63-bit seed from integers (splitmix-style, so nearby inputs give unrelated seeds)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def seed_all(seed: int):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class SeededDataset(Dataset):
    """Reseeds python/numpy/torch RNGs before each sample's transform (timm's transforms use all three)."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        seed_all(mix_seed(self.seed, self.epoch, index))
        return self.dataset[index]


class ShardSampler(Sampler):
    """DistributedSampler's order (one permutation per epoch, rank r takes every world-th index) with a start
    offset, so a run resumed mid-epoch continues with exactly the samples it had not seen.

    The union over ranks of each rank's k-th batch is the k-th batch of a 1-process run with world x the batch."""

    def __init__(self, n, rank=0, world=1, shuffle=True, seed=0, batch_size=1):
        self.n, self.rank, self.world, self.shuffle, self.seed = n, rank, world, shuffle, seed
        # drop_last over the global batch: every rank gets the same whole number of batches
        self.num_batches = n // (batch_size * world)
        self.num_samples = self.num_batches * batch_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0, batch_size: int = 1):
        self.epoch, self.start = epoch, start_batch * batch_size

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        mine = order[self.rank: self.num_samples * self.world: self.world]
        return iter(mine[self.start:])

    def __len__(self):
        return self.num_samples - self.start


def eval_shard(n, rank, world):
    """Indices of an eval shard: no padding, so summed counts over ranks cover every sample exactly once."""
    return list(range(rank, n, world))
