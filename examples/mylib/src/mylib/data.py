"""Datasets."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info


class Sequences:
    """Token sequences of 2 to 9 tokens with a binary label, generated from ``seed``.

    Map-style: ``ds[i]`` is ``(tokens, label)``, ``tokens`` a 1-d int64 tensor. The tokens of all
    sequences live in one flat tensor, and a sample's tokens are a view into it (no copy per sample, as
    ``TensorDataset`` does): the collate function copies them into the batch.
    """

    def __init__(self, n: int = 64, seed: int = 0, vocabulary: int = 100) -> None:
        rng = np.random.default_rng(seed)
        lengths = rng.integers(2, 10, size=n)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.tokens = torch.from_numpy(rng.integers(1, vocabulary, size=int(self.offsets[-1])))
        self.labels = torch.from_numpy(rng.integers(0, 2, size=n))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} sequences")
        index %= len(self)
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.tokens[start:end], int(self.labels[index])

    def lengths(self) -> list[int]:
        """Each sequence's length, without loading it (what a length-grouped sampler needs)."""
        return np.diff(self.offsets).tolist()


class NoisyImages:
    """Images with random noise added on every access (an augmentation).

    The noise comes from torch's global generator, which torch's DataLoader seeds differently in each
    worker and epoch: a generator created here, in ``__init__``, would be copied into every worker.
    """

    def __init__(self, n: int = 32, size: int = 8) -> None:
        self.images = torch.linspace(0, 1, n * size * size).reshape(n, 1, size, size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return self.images[index] + 0.1 * torch.randn(self.images.shape[1:])


class ShardedStream(IterableDataset[int]):
    """The records ``0, ..., n - 1`` as a stream, each DataLoader worker yielding its own share."""

    def __init__(self, n: int = 40) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        # Sharded here, where each worker runs it: get_worker_info() is None in __init__ (main process).
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))

    def __len__(self) -> int:
        return self.n
