"""Iterable-style datasets, each with one bug (plain Python and NumPy)."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import numpy as np

from torchcontract.protocols import IterableDataset

from ..correct import PointStream
from . import Mutant

Item = tuple[np.ndarray[Any, Any], int]


class IterReturnsList(PointStream):
    def __iter__(self) -> Any:
        return [self._item(i) for i in range(self.n)]  # a list is iterable, but not an iterator


class _StreamIterator:
    def __init__(self, stream: PointStream, position: int = 0) -> None:
        self.stream, self.position = stream, position

    def __next__(self) -> Item:
        if self.position >= self.stream.n:
            raise StopIteration
        self.position += 1
        return self.stream._item(self.position - 1)


class _IteratorIterStartsOver(_StreamIterator):
    def __iter__(self) -> _IteratorIterStartsOver:
        return _IteratorIterStartsOver(self.stream)  # iter(it) is not it: a new iterator


class IteratorIterReturnsNewObject(PointStream):
    def __iter__(self) -> Iterator[Item]:
        return _IteratorIterStartsOver(self)


class NeverStopsAtEndOfFile(PointStream):
    def __iter__(self) -> Iterator[Item]:
        i = 0
        while True:  # meant to stop at the end of the file: the check was forgotten
            yield self._item(i % self.n)
            i += 1


class BlocksOnEmptyQueue(PointStream):
    def __init__(self) -> None:
        super().__init__()
        self.incoming: queue.Queue[Item] = queue.Queue()  # its producer thread was never started

    def __iter__(self) -> Iterator[Item]:
        yield self._item(0)
        while True:
            yield self.incoming.get()  # blocks forever


class IterReturnsSelf(PointStream):
    """Its own iterator: the position is never reset, so a second pass is empty."""

    def __init__(self) -> None:
        super().__init__()
        self.position = 0

    def __iter__(self) -> IterReturnsSelf:
        return self

    def __next__(self) -> Item:
        if self.position >= self.n:
            raise StopIteration
        self.position += 1
        return self._item(self.position - 1)


class StoresGeneratorObject(PointStream):
    def __init__(self) -> None:
        super().__init__()
        self._items = (self._item(i) for i in range(self.n))  # one generator, shared by every pass

    def __iter__(self) -> Iterator[Item]:
        return self._items


class LenCountsShardsNotItems(PointStream):
    def __init__(self) -> None:
        super().__init__()
        self.shards = ["part-0.npy", "part-1.npy"]

    def __len__(self) -> int:
        return len(self.shards)  # items, not files, are what a pass yields


class _RewindingIterator(_StreamIterator):
    def __iter__(self) -> _RewindingIterator:
        return self

    def __next__(self) -> Item:
        if self.position >= self.stream.n:
            self.position = 0  # "ready for the next epoch": the next next() starts over
            raise StopIteration
        return super().__next__()


class IteratorRestartsAfterStopIteration(PointStream):
    def __iter__(self) -> Iterator[Item]:
        return _RewindingIterator(self)


class LastItemHasNoLabel(PointStream):
    def __iter__(self) -> Iterator[Any]:
        for i in range(self.n - 1):
            yield self._item(i)
        yield (self._item(self.n - 1)[0],)  # the tail record has no next-token label


def _mutant(name: str, violates: str, bug: str, factory: Any, **fields: Any) -> Mutant:
    return Mutant(name, IterableDataset, f"iterable_dataset.{violates}", bug, factory, **fields)


MUTANTS = [
    _mutant("iter_returns_list", "iter_returns_iterator", "__iter__ returns a list", IterReturnsList,
            message_contains=("iter(ds) raised TypeError", "non-iterator")),
    _mutant("iterator_iter_returns_new_object", "iter_returns_iterator",
            "the iterator's __iter__ returns a new iterator", IteratorIterReturnsNewObject,
            message_contains=("iter(it) is not it",)),
    _mutant("never_stops_at_end_of_file", "iteration_ends", "an endless stream not declared infinite",
            NeverStopsAtEndOfFile, kwargs={"time_budget_s": 0.5},
            message_contains=("without ending", "infinite=True")),
    _mutant("blocks_on_empty_queue", "iteration_ends", "next() blocks forever on a queue",
            BlocksOnEmptyQueue, kwargs={"time_budget_s": 0.5}, hangs=True,
            message_contains=("next(it) (item 1) did not return within the time budget",)),
    _mutant("iter_returns_self", "new_iter_starts_new_pass", "the dataset is its own iterator",
            IterReturnsSelf,
            message_contains=("a second iter(ds) yielded 0 items but the first yielded 10",)),
    _mutant("stores_generator_object", "new_iter_starts_new_pass",
            "__iter__ returns one generator object made in __init__", StoresGeneratorObject,
            message_contains=("yielded 0 items",)),
    _mutant("len_counts_shards", "len_matches_item_count", "__len__ counts files, not items",
            LenCountsShardsNotItems, message_contains=("len(ds) == 2 but a pass yielded 10 items",)),
    _mutant("iterator_restarts_after_stop_iteration", "exhaustion_is_sticky",
            "the iterator rewinds when it raises StopIteration", IteratorRestartsAfterStopIteration,
            message_contains=("after the iterator had raised StopIteration",)),
    _mutant("last_item_has_no_label", "items_share_structure", "the tail item is a 1-tuple",
            LastItemHasNoLabel, message_contains=("item 9", "tuple(ndarray[float32])")),
]  # fmt: skip
