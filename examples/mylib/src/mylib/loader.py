"""Loaders."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from mylib.collate import pad_collate
from mylib.data import Sequences
from mylib.sampling import LengthGroupedBatchSampler


class SequenceLoader:
    """Padded batches of a ``Sequences`` dataset, grouped by length, reshuffled each epoch.

    Re-iterable: each ``iter()`` is a new epoch (the next one: the sampler's epoch advances). It exposes
    ``dataset`` and ``batch_sampler``, as torch's DataLoader does, so that what it loads can be checked.
    """

    def __init__(self, dataset: Sequences, batch_size: int = 8, seed: int = 0, num_workers: int = 0) -> None:
        self.dataset = dataset
        self.batch_sampler = LengthGroupedBatchSampler(dataset.lengths(), batch_size, seed=seed)
        self._loader = DataLoader(
            dataset, batch_sampler=self.batch_sampler, collate_fn=pad_collate, num_workers=num_workers
        )
        self._epoch = 0

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self.batch_sampler.set_epoch(self._epoch)
        self._epoch += 1
        return iter(self._loader)

    def __len__(self) -> int:
        return len(self.batch_sampler)
