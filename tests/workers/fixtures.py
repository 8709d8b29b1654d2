"""Datasets, samplers and loader factories for the worker and distributed checks.

They live in an importable module (not in a test file) because worker processes started with
spawn or forkserver, and the ranks of a process group, unpickle them by module name.
"""

from __future__ import annotations

import copy
import io
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils import data

from torchcontract import reference_impl as ref

# ----------------------------------------------------------------------------------------------------
# iterable datasets


class NaiveRange(data.IterableDataset[int]):
    """Does not shard: every worker yields every item."""

    def __init__(self, length: int = 12) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.length))


class ShardedRange(NaiveRange):
    """Shards by worker: each item once across workers."""

    def __iter__(self) -> Iterator[int]:
        worker = data.get_worker_info()
        start, step = (0, 1) if worker is None else (worker.id, worker.num_workers)
        return iter(range(start, self.length, step))


class NoisyStreamWithGenerator(data.IterableDataset[float]):
    """Noise from a generator made in __init__: copied into every worker, the same every epoch. It
    shards its count across workers (so only the randomness is wrong)."""

    def __init__(self, length: int = 12) -> None:
        self.length = length
        self.rng = np.random.default_rng()

    def __len__(self) -> int:
        return self.length

    def _positions(self) -> range:
        worker = data.get_worker_info()
        start, step = (0, 1) if worker is None else (worker.id, worker.num_workers)
        return range(start, self.length, step)

    def __iter__(self) -> Iterator[float]:
        return (float(self.rng.normal()) for _ in self._positions())


class NoisyStreamSeededPerWorker(NoisyStreamWithGenerator):
    """Seeds its generator from get_worker_info().seed: independent per worker and per epoch."""

    def __iter__(self) -> Iterator[float]:
        worker = data.get_worker_info()
        rng = self.rng if worker is None else np.random.default_rng(worker.seed)
        return (float(rng.normal()) for _ in self._positions())


class ScaledStreamByRegistry(ShardedRange):
    """Reads the module-level registry below: wrong in a worker that re-imported this module."""

    def __iter__(self) -> Iterator[int]:
        return (item * SCALES.get("scale", 1) for item in super().__iter__())


# ----------------------------------------------------------------------------------------------------
# map-style datasets


class Squares:
    def __init__(self, length: int = 10) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return index * index


class NoisyWithGenerator(Squares):
    """A generator made in __init__ is copied into every worker: identical draws."""

    def __init__(self, length: int = 10) -> None:
        super().__init__(length)
        self.rng = np.random.default_rng()

    def __getitem__(self, index: int) -> float:  # type: ignore[override]
        return super().__getitem__(index) + float(self.rng.normal())


class NoisyFromWorkerSeed(NoisyWithGenerator):
    """Reseeds per worker from get_worker_info().seed (torch's recommendation)."""

    def __getitem__(self, index: int) -> float:  # type: ignore[override]
        worker = data.get_worker_info()
        if worker is not None and getattr(self, "_seeded_for", None) != worker.seed:
            self.rng, self._seeded_for = np.random.default_rng(worker.seed), worker.seed
        return super().__getitem__(index)


class NoisyFromGlobalNumpy(Squares):
    """Draws from NumPy's legacy global RNG, which torch reseeds in every worker."""

    def __getitem__(self, index: int) -> float:  # type: ignore[override]
        return super().__getitem__(index) + float(np.random.normal())


class OutOfRangeError(IndexError):
    def __init__(self, index: int, length: int) -> None:
        super().__init__(f"index {index} is not in range({length})")
        self.index, self.length = index, length


class RaisesRichError(Squares):
    """An IndexError subclass whose __init__ needs two arguments: torch cannot rebuild it."""

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < self.length:
            raise OutOfRangeError(index, self.length)
        return index * index


class CorruptSampleError(Exception):
    """A decoding error that carries the file and the index: torch cannot rebuild it from a message."""

    def __init__(self, path: str, index: int) -> None:
        super().__init__(f"cannot decode {path} (sample {index})")
        self.path, self.index = path, index


class CorruptAtThree(Squares):
    """Sample 3 is a corrupt file (checked with error_index=3): its error arrives as RuntimeError."""

    def __getitem__(self, index: int) -> int:
        if index == 3:
            raise CorruptSampleError("images/3.jpg", index)
        return super().__getitem__(index)


class CorruptAtThreeRaisesValueError(Squares):
    """Sample 3 raises ValueError(message), which torch rebuilds with its type."""

    def __getitem__(self, index: int) -> int:
        if index == 3:
            raise ValueError("cannot decode images/3.jpg")
        return super().__getitem__(index)


class LambdaInSample(Squares):
    """Each sample carries a lambda (a per-sample transform): it cannot be pickled back from a worker."""

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        return {"x": super().__getitem__(index), "transform": lambda value: value}


# Filled at run time by the main process: a worker that re-imports this module finds it empty.
SCALES: dict[str, int] = {}


class ScaledByRegistry(Squares):
    """Reads a module-level registry set at run time: fine in this process and in forked workers,
    wrong in a worker that rebuilt the dataset from its pickle."""

    def __getitem__(self, index: int) -> int:
        return super().__getitem__(index) * SCALES.get("scale", 1)


def scaled_by_registry() -> ScaledByRegistry:
    SCALES["scale"] = 3  # configured at run time, in this process only
    return ScaledByRegistry()


def scaled_stream_by_registry() -> ScaledStreamByRegistry:
    SCALES["scale"] = 3
    return ScaledStreamByRegistry()


# ----------------------------------------------------------------------------------------------------
# loader factories for the process-group checks (picklable: module-level functions)

TENSORS = data.TensorDataset(torch.arange(22.0).reshape(11, 2), torch.arange(11))


def torch_loader(rank: int, world_size: int) -> data.DataLoader[Any]:
    sampler = data.DistributedSampler(TENSORS, num_replicas=world_size, rank=rank, seed=3)
    return data.DataLoader(TENSORS, batch_size=2, sampler=sampler)


def reference_loader(rank: int, world_size: int) -> ref.DataLoader:
    dataset = ref.MNIST(ref.sample_root(), train=False)
    sampler = ref.DistributedSampler(dataset, num_replicas=world_size, rank=rank, seed=5)
    return ref.DataLoader(dataset, batch_size=64, sampler=sampler)


class ExtraBatchOnRankZero:
    """Rank 0 yields one batch more than the others (its own bookkeeping bug)."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.inner, self.rank = torch_loader(rank, world_size), rank
        self.sampler = self.inner.sampler

    def __iter__(self) -> Iterator[Any]:
        yield from self.inner
        if self.rank == 0:
            yield next(iter(self.inner))


def extra_batch_on_rank_zero(rank: int, world_size: int) -> ExtraBatchOnRankZero:
    return ExtraBatchOnRankZero(rank, world_size)


def ignores_rank(rank: int, world_size: int) -> data.DataLoader[Any]:
    """Every rank loads the whole dataset: equal counts, but each sample world_size times."""
    return data.DataLoader(TENSORS, batch_size=2)


class Tokens(data.Dataset[torch.Tensor]):
    """40 token sequences of 1 to 7 tokens: samples of unequal length, which a collate_fn pads."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -40 <= index < 40:
            raise IndexError(index)
        index %= 40
        return torch.arange(1, 2 + index % 7) + 10 * index


TOKENS = Tokens()


def pad_rows(batch: list[torch.Tensor]) -> torch.Tensor:
    """One zero-padded row per sample: a padded row is not equal to its sample."""
    return torch.nn.utils.rnn.pad_sequence(batch, batch_first=True)


def padding_loader(rank: int, world_size: int) -> data.DataLoader[Any]:
    """A correct sharded loader whose collate_fn pads: each rank's rows are padded to its batch's
    longest sequence, unlike the rows of the whole dataset's batches."""
    sampler = data.DistributedSampler(TOKENS, num_replicas=world_size, rank=rank, seed=3)
    return data.DataLoader(TOKENS, batch_size=4, sampler=sampler, collate_fn=pad_rows)


class IgnoresItsSampler:
    """Exposes a DistributedSampler, but loads the whole dataset on every rank: its batches are not
    the sampler's (another number of them), so its coverage is judged by their content."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.dataset = TENSORS
        self.sampler = data.DistributedSampler(TENSORS, num_replicas=world_size, rank=rank, seed=3)
        self.batch_size = 2

    def __iter__(self) -> Iterator[Any]:
        return iter(data.DataLoader(self.dataset, batch_size=self.batch_size))


def ignores_its_sampler(rank: int, world_size: int) -> IgnoresItsSampler:
    return IgnoresItsSampler(rank, world_size)


def dies_on_rank_one(rank: int, world_size: int) -> data.DataLoader[Any]:
    import os

    if rank == 1:
        os._exit(3)
    return torch_loader(rank, world_size)


def hangs_on_rank_one(rank: int, world_size: int) -> data.DataLoader[Any]:
    import threading

    if rank == 1:
        threading.Event().wait()
    return torch_loader(rank, world_size)


def eval_loader(rank: int, world_size: int) -> data.DataLoader[Any]:
    """Evaluation sharding without padding: rank r loads range(r, 11, world_size), one sample a batch,
    so the ranks' batch counts differ (6 and 5 with two ranks)."""
    return data.DataLoader(TENSORS, batch_size=1, sampler=list(range(rank, len(TENSORS), world_size)))


def duplicating_eval_loader(rank: int, world_size: int) -> data.DataLoader[Any]:
    """As eval_loader, but rank 0 also loads sample 1, which rank 1 has: it counts twice in a metric."""
    indices = list(range(rank, len(TENSORS), world_size)) + ([1] if rank == 0 and world_size > 1 else [])
    return data.DataLoader(TENSORS, batch_size=1, sampler=indices)


# ----------------------------------------------------------------------------------------------------
# per-epoch state and persistent workers


class EpochInAttribute(Squares):
    """Samples shift with the epoch, which set_epoch stores in a plain attribute: persistent workers
    keep the value they were started with."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> int:
        return super().__getitem__(index) + 1000 * self.epoch


class EpochInSharedMemory(Squares):
    """The same, with the epoch in a shared-memory tensor: forked (and spawned) workers see it."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self.epoch.fill_(epoch)

    def __getitem__(self, index: int) -> int:
        return super().__getitem__(index) + 1000 * int(self.epoch)


class StreamEpochInAttribute(ShardedRange):
    """A sharded stream whose items shift with the epoch, kept in a plain attribute."""

    def __init__(self, length: int = 12) -> None:
        super().__init__(length)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return (item + 1000 * self.epoch for item in super().__iter__())


class StreamEpochInSharedMemory(ShardedRange):
    """The same, with the epoch in a shared-memory tensor."""

    def __init__(self, length: int = 12) -> None:
        super().__init__(length)
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self.epoch.fill_(epoch)

    def __iter__(self) -> Iterator[int]:
        shift = 1000 * int(self.epoch)
        return (item + shift for item in super().__iter__())


def copy_in_home_thread(obj: Any, memo: dict[int, Any]) -> Any:
    """``copy.deepcopy(obj)`` in the thread that built it (``obj.home_thread``); in any other thread
    the error HuggingFace's IterableDataset raises there: it holds fsspec's filesystem cache, whose
    instances are keyed by thread, so a copy made in a new thread adds to the dict it iterates."""
    if threading.get_ident() != obj.home_thread:
        raise RuntimeError("dictionary changed size during iteration")
    clone = copy.copy(obj)
    clone.__dict__.update(copy.deepcopy(obj.__dict__, memo))
    return clone


class _EpochsCopiedInItsThreadOnly:
    """set_epoch, and a deep copy that succeeds only in the thread that built the object."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.home_thread = threading.get_ident()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return copy_in_home_thread(self, memo)


class NoisyEpochsCopiedInItsThreadOnly(_EpochsCopiedInItsThreadOnly, NoisyFromGlobalNumpy):
    """Random samples with set_epoch, that can be deep-copied only in the thread that built them."""


class NoisyStreamEpochsCopiedInItsThreadOnly(_EpochsCopiedInItsThreadOnly, NoisyStreamSeededPerWorker):
    """A random stream with set_epoch, that can be deep-copied only in the thread that built it."""


RECORD = 8


class RecordReader(io.FileIO):
    """A file of fixed-size records that seeks only when the record asked for is not the next one
    (sequential reads, as readers of record formats do)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "rb")
        self.next_offset = 0

    def record(self, index: int) -> bytes:
        offset = index * RECORD
        if offset != self.next_offset:
            self.seek(offset)
        data = self.read(RECORD)
        self.next_offset = offset + RECORD
        return data


class RecordFile(data.Dataset[int]):
    """Records ``index ** 2`` read through a :class:`RecordReader` opened in ``__init__``. It pickles
    (it reopens the file by path), so spawned workers are right; forked workers share the file's
    offset, and one worker's read moves the record the other reads next."""

    def __init__(self, path: str, length: int = 16) -> None:
        self.path, self.length = path, length
        self.reader = RecordReader(path)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "length": self.length}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return int.from_bytes(self.reader.record(index), "little")


def record_file(length: int = 16) -> RecordFile:
    """A :class:`RecordFile` over a new file of ``length`` records (removed with the process)."""
    import atexit
    import os
    import tempfile

    handle, path = tempfile.mkstemp(suffix=".records")
    with os.fdopen(handle, "wb") as out:
        out.write(b"".join((i * i).to_bytes(RECORD, "little") for i in range(length)))
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    return RecordFile(path, length)


class UnsizedNaiveRange(data.IterableDataset[int]):
    """Does not shard, and has no __len__: every worker yields every item, and nothing counts them."""

    def __init__(self, length: int = 12) -> None:
        self.length = length

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.length))
