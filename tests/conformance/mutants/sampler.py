"""Samplers, each with one bug (plain Python and NumPy)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

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
    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng().permutation(len(self.data_source)).tolist())  # seed ignored


class YieldsNumpyIntegers(SeededShuffleSampler):
    def __iter__(self) -> Iterator[Any]:
        return iter(np.random.default_rng(self.seed).permutation(len(self.data_source)))  # np.int64s


class EndlessDrawsWithReplacement(EndlessShuffles):
    def _epoch(self, rng: np.random.Generator) -> list[int]:
        return rng.choice(self.n, size=self.n).tolist()  # with replacement: repeats within an epoch


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
    _mutant("replacement_by_accident", "each_index_once", "rng.choice() draws with replacement",
            _sampler(ReplacementByAccident), message_contains=("more than once", "collections.Counter")),
    _mutant("endless_epochs_repeat_indices", "each_index_once",
            "an infinite sampler's epochs are drawn with replacement",
            lambda: EndlessDrawsWithReplacement(10),
            kwargs={"infinite": True, "data_source_len": 10}, message_contains=("more than once",)),
    _mutant("reseeds_from_os_entropy", "same_state_same_order", "default_rng() without a seed in __iter__",
            _sampler(ReseedsFromOsEntropy), message_contains=("different orders",)),
    _mutant("yields_numpy_integers", "yields_python_ints", "iterates a NumPy permutation directly",
            _sampler(YieldsNumpyIntegers), message_contains=("of type int64",)),
]  # fmt: skip
