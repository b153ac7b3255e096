"""The training data order as a pure function of (seed, position), so that a run resumed at iteration ``k`` sees
exactly the batches and augmentations an uninterrupted run sees from ``k`` on, whatever the number of workers.

:class:`ResumableSampler` walks a sequence of epochs; epoch ``e`` is ``torch.randperm`` drawn from a
generator seeded with ``(seed, e)``, cut into global batches of ``batch_size x world_size`` samples (incomplete ones
dropped, as TLlib's loaders do), and rank ``r`` takes its ``batch_size`` slice of each. It starts at any batch. Each
sample comes with its own seed, and :class:`SeededSamples` draws the sample's random augmentation from torch's RNG
seeded with it (the process's RNG is restored afterwards), so augmentations depend neither on which worker loads the
sample nor on what was loaded before.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset, Sampler, default_collate

_EPOCH_STRIDE = 1_000_003  # seeds of consecutive epochs and of different runs' seeds do not collide
_SAMPLE_STRIDE = 1 << 32


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * _EPOCH_STRIDE + epoch


class ResumableSampler(Sampler[tuple[int, int]]):
    """The ``(index, sample seed)`` pairs of batches ``start_batch`` to ``stop_batch`` (counted in this rank's
    batches: training iterations) of a dataset of ``size`` samples, for one rank."""

    def __init__(self, size: int, batch_size: int, seed: int, start_batch: int, stop_batch: int, rank: int = 0,
                 world_size: int = 1):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start_batch, self.stop_batch, self.rank, self.world_size = start_batch, stop_batch, rank, world_size
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = size // self.global_batch
        if self.batches_per_epoch < 1:
            raise ValueError(f"{size} samples make no batch of {batch_size} x {world_size} processes")

    def __len__(self) -> int:
        return max(self.stop_batch - self.start_batch, 0) * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for epoch in range(self.start_batch // self.batches_per_epoch,
                           -(-self.stop_batch // self.batches_per_epoch)):
            first = epoch * self.batches_per_epoch
            batches = range(max(self.start_batch - first, 0), min(self.stop_batch - first, self.batches_per_epoch))
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(epoch_seed(self.seed, epoch)))
            for batch in batches:
                start = batch * self.global_batch + self.rank * self.batch_size
                for offset in range(start, start + self.batch_size):
                    yield int(order[offset]), epoch_seed(self.seed, epoch) * _SAMPLE_STRIDE + offset


class Stacked(tuple):
    """A batch its dataset returned already stacked (``(images, labels)`` tensors), which :func:`collate` passes on."""


def collate(samples: list | Stacked):
    """The loaders' ``collate_fn``: a :class:`Stacked` batch as it is, a list of samples stacked by PyTorch's
    ``default_collate``."""
    return list(samples) if isinstance(samples, Stacked) else default_collate(samples)


class SeededSamples(Dataset):
    """``dataset`` indexed by ``(index, sample seed)``: the sample is loaded with torch's RNG seeded by its seed."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed % (1 << 63))
            return self.dataset[index]

    def __getitems__(self, items: list[tuple[int, int]]) -> list:
        """A whole batch: through the dataset's own batched loading where it has one (seeded by the batch's first
        sample, as one worker loads the whole batch), else sample by sample."""
        load_batch = getattr(self.dataset, "__getitems__", None)
        if load_batch is None:
            return [self[item] for item in items]
        if getattr(self.dataset, "deterministic", False):  # nothing random to seed
            return load_batch([index for index, _ in items])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(items[0][1] % (1 << 63))
            return load_batch([index for index, _ in items])
