"""Samplers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class LengthGroupedBatchSampler:
    """Batches of indices of similar lengths (less padding), in a random order of batches.

    A batch sampler: each item is a list of indices. The order follows ``seed`` and the epoch set with
    ``set_epoch``, as torch's ``DistributedSampler`` does, so that a run can be reproduced.
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int = 0, drop_last: bool = False
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        # Sort by length, breaking ties at random, cut into batches, then shuffle the batches.
        order = np.lexsort((rng.random(len(self.lengths)), self.lengths))
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        for position in rng.permutation(len(batches)):
            yield batches[position]

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.lengths) // self.batch_size
        return -(-len(self.lengths) // self.batch_size)
