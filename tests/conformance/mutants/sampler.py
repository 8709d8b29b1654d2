"""Samplers, each with one bug (plain Python and NumPy)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from torchcontract import reference_impl as ref
from torchcontract.protocols import Sampler

from ..correct import EndlessShuffles, Points, SeededShuffleSampler
from . import Mutant


def _sampler(cls: type[SeededShuffleSampler]) -> Any:
    return lambda: cls(Points(10))


class DrawsForever(SeededShuffleSampler):
    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed)
        while True:  # num_samples was meant to bound it
            yield int(rng.integers(len(self.data_source)))


class OneBasedIndices(SeededShuffleSampler):
    def __iter__(self) -> Iterator[int]:
        # 1-based ids from a database: index 10 is one past the end
        return (i + 1 for i in super().__iter__())


class StridedFloatIndices(SeededShuffleSampler):
    def __iter__(self) -> Iterator[Any]:
        return iter(np.arange(0, len(self.data_source), 1.0))  # a float step: float64 "indices"


class LenCountsWholeSource(SeededShuffleSampler):
    """Samples only labels 0 and 1, but reports the size of the whole data source."""

    def __iter__(self) -> Iterator[int]:
        return (i for i in super().__iter__() if self.data_source.labels[i] != 2)


class ReplacementByAccident(SeededShuffleSampler):
    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed + self.epoch)
        n = len(self.data_source)
        return iter(rng.choice(n, size=n).tolist())  # choice() draws with replacement by default


class ReseedsFromOsEntropy(SeededShuffleSampler):
    """Checked over 20 indices: two entropy-drawn permutations agree with probability 1/20! ~= 4e-19
    (over 10 it would be 1/10! ~= 2.8e-7, too often for CI)."""

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng().permutation(len(self.data_source)).tolist())  # seed ignored


class YieldsNumpyIntegers(SeededShuffleSampler):
    def __iter__(self) -> Iterator[Any]:
        return iter(np.random.default_rng(self.seed).permutation(len(self.data_source)))  # np.int64s


class EndlessDrawsWithReplacement(EndlessShuffles):
    def _epoch(self, rng: np.random.Generator) -> list[int]:
        return rng.choice(self.n, size=self.n).tolist()  # with replacement: repeats within an epoch


class IsItsOwnIterator(SeededShuffleSampler):
    """__iter__ returns self: the position survives between epochs, so the second epoch is empty."""

    def __init__(self, data_source: Any) -> None:
        super().__init__(data_source)
        self._order: list[int] = list(super().__iter__())
        self._position = 0

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        if self._position >= len(self._order):
            raise StopIteration
        self._position += 1
        return self._order[self._position - 1]


# -- sharding across ranks (checked with world_size=3 over 10 indices) --------------------------------------


class UnevenShards:
    """indices[rank::world_size] without padding: ranks get different counts when N % R != 0."""

    def __init__(self, length: int, num_replicas: int, rank: int) -> None:
        self.dataset = range(length)
        self.length, self.num_replicas, self.rank = length, num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))


def uneven_shards(rank: int, world_size: int) -> UnevenShards:
    return UnevenShards(10, world_size, rank)


class OverlappingShards(UnevenShards):
    """Contiguous blocks that start at `rank` instead of `rank * block`: neighbours overlap and the
    tail of the dataset is on no rank."""

    def __iter__(self) -> Iterator[int]:
        size = -(-self.length // self.num_replicas)
        return iter(range(self.rank, self.rank + size))

    def __len__(self) -> int:
        return -(-self.length // self.num_replicas)


def overlapping_shards(rank: int, world_size: int) -> OverlappingShards:
    return OverlappingShards(10, world_size, rank)


class IgnoresEpoch(ref.DistributedSampler):
    """Stores the epoch but always shuffles as in epoch 0."""

    def __iter__(self) -> Iterator[int]:
        epoch, self.epoch = self.epoch, 0
        try:
            return super().__iter__()
        finally:
            self.epoch = epoch


def ignores_epoch(rank: int, world_size: int) -> IgnoresEpoch:
    return IgnoresEpoch(10, num_replicas=world_size, rank=rank)


# Entropy-seeded ranks cover range(n) only by chance: with n = 60 over 3 ranks of 20 (no padding, so a
# cover is an exact partition), P = C(40, 20) / C(60, 20) * 1 / C(60, 20) ~= 7.9e-21 per run (< 1e-9).
_ENTROPY_N = 60


class EntropySeeded(ref.DistributedSampler):
    """Each instance draws its own seed: ranks (separate processes) shard different permutations."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seed = int(np.random.default_rng().integers(2**31))


def entropy_seeded(rank: int, world_size: int) -> EntropySeeded:
    return EntropySeeded(_ENTROPY_N, num_replicas=world_size, rank=rank)


class _SharedSeed:
    value = 0


def fresh_seed_each_build(rank: int, world_size: int) -> ref.DistributedSampler:
    """Rank 0 picks a seed that the other ranks share (as if broadcast), but every build of the ranks
    picks a new one (a run counter, as a launcher's job id): a restarted run cannot reproduce its
    order. A counter, not OS entropy: two entropy seeds give the same permutation of 10 with
    probability about 1/10! = 2.8e-7, too often for CI; seeds k and k + 1 differ for certain."""
    if rank == 0:
        _SharedSeed.value += 1
    return ref.DistributedSampler(10, num_replicas=world_size, rank=rank, seed=_SharedSeed.value)


class ShardThenBucket:
    """Shards indices evenly (every rank gets 6 of 12), then batches each shard by bucket (short and
    long samples apart, at most 4 a batch): the ranks' batch counts differ although their index
    counts agree, so DDP hangs at the last step of the rank with fewer batches."""

    LONG = frozenset({0, 2, 4, 6, 8, 10, 1})

    def __init__(self, rank: int, world_size: int) -> None:
        self.data_source = range(12)
        self.rank, self.world_size = rank, world_size

    def _batches(self) -> list[list[int]]:
        shard = list(range(self.rank, 12, self.world_size))
        batches = []
        for bucket in ([i for i in shard if i in self.LONG], [i for i in shard if i not in self.LONG]):
            batches.extend(bucket[start : start + 4] for start in range(0, len(bucket), 4))
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


_SHARDING = {"world_size": 3, "data_source_len": 10}


def _mutant(name: str, violates: str, bug: str, factory: Any, **fields: Any) -> Mutant:
    return Mutant(name, Sampler, f"sampler.{violates}", bug, factory, **fields)


MUTANTS = [
    _mutant("draws_forever", "iteration_ends", "an endless sampler not declared infinite",
            _sampler(DrawsForever), kwargs={"time_budget_s": 0.5}, message_contains=("without ending",)),
    _mutant("one_based_indices", "yields_indices_in_range", "indices 1..n instead of 0..n-1",
            _sampler(OneBasedIndices), message_contains=("index 10, outside range(10)",)),
    _mutant("float_indices", "yields_indices_in_range", "float64 indices from a float step",
            _sampler(StridedFloatIndices), message_contains=("float64(0.0)", "expected an int index")),
    _mutant("len_counts_whole_source", "len_matches_count", "__len__ ignores the filter",
            _sampler(LenCountsWholeSource), message_contains=("len(sampler) == 10 but a pass yielded 7",)),
    _mutant("is_its_own_iterator", "each_iter_is_new_pass", "__iter__ returns self",
            _sampler(IsItsOwnIterator), message_contains=("a second iter(sampler) yielded 0 items",)),
    _mutant("replacement_by_accident", "each_index_once", "rng.choice() draws with replacement",
            _sampler(ReplacementByAccident), message_contains=("more than once", "collections.Counter")),
    _mutant("endless_epochs_repeat_indices", "each_index_once",
            "an infinite sampler's epochs are drawn with replacement",
            lambda: EndlessDrawsWithReplacement(10),
            kwargs={"infinite": True, "data_source_len": 10}, message_contains=("more than once",)),
    _mutant("reseeds_from_os_entropy", "same_state_same_order", "default_rng() without a seed in __iter__",
            lambda: ReseedsFromOsEntropy(Points(20)), message_contains=("different orders",)),
    _mutant("yields_numpy_integers", "yields_python_ints", "iterates a NumPy permutation directly",
            _sampler(YieldsNumpyIntegers), message_contains=("of type int64",)),
    _mutant("uneven_shards", "shards_have_equal_length", "indices[rank::world_size] without padding",
            lambda: uneven_shards(0, 3), kwargs={**_SHARDING, "shards": uneven_shards},
            message_contains=("the ranks yield [4, 3, 3] indices",)),
    _mutant("overlapping_shards", "shards_cover_dataset", "blocks start at rank, not rank * block",
            lambda: overlapping_shards(0, 3), kwargs={**_SHARDING, "shards": overlapping_shards},
            message_contains=("are on no rank",)),
    _mutant("ignores_epoch", "set_epoch_reshuffles_every_rank_alike", "set_epoch stored but never used",
            lambda: ignores_epoch(0, 3), kwargs={**_SHARDING, "shards": ignores_epoch},
            message_contains=("after set_epoch(1) every rank yields the same order",)),
    _mutant("entropy_seeded_shards", "shards_cover_dataset", "each rank's sampler draws its own seed",
            lambda: entropy_seeded(0, 3),
            kwargs={"world_size": 3, "data_source_len": _ENTROPY_N, "shards": entropy_seeded},
            message_contains=("on no rank",)),
    _mutant("fresh_seed_each_build", "same_seed_same_shards", "a new shared seed at every start",
            lambda: fresh_seed_each_build(0, 3), kwargs={**_SHARDING, "shards": fresh_seed_each_build},
            message_contains=("building the rank samplers twice gave different shards",)),
    _mutant("shard_then_bucket", "shards_have_equal_length",
            "a batch sampler shards indices evenly, then buckets them: unequal batch counts",
            lambda: ShardThenBucket(0, 2), kwargs={"world_size": 2, "shards": ShardThenBucket},
            message_contains=("the ranks yield [2, 3] batches",)),
]  # fmt: skip
