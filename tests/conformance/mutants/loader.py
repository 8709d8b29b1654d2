"""Loaders, each with one bug (plain Python and NumPy)."""

from __future__ import annotations

import itertools
import math
import queue
from collections.abc import Iterator
from typing import Any

from torchcontract.protocols import Loader

from ..correct import BatchLoader, Points, numpy_collate
from . import Mutant
from .map_dataset import DecodesIntoOneBuffer


def _loader(cls: type[BatchLoader], **kwargs: Any) -> Any:
    """10 samples in batches of 4: batches of 4, 4 and 2 (or 4, 4 with drop_last)."""
    return lambda: cls(Points(10), 4, **kwargs)


class IterReturnsBatchList(BatchLoader):
    def __iter__(self) -> Any:
        return [self._batch(start) for start in self._starts()]  # a list, not an iterator


class CyclesForever(BatchLoader):
    def __iter__(self) -> Iterator[Any]:
        return itertools.cycle(super().__iter__())  # "epochs never end": not declared infinite


class BlocksOnDeadWorker(BatchLoader):
    def __iter__(self) -> Iterator[Any]:
        results: queue.Queue[Any] = queue.Queue()  # the worker that fills it died
        yield self._batch(0)
        yield results.get()


class _RewindingIterator:
    def __init__(self, loader: BatchLoader) -> None:
        self.loader, self.starts, self.position = loader, loader._starts(), 0

    def __iter__(self) -> _RewindingIterator:
        return self

    def __next__(self) -> Any:
        if self.position >= len(self.starts):
            self.position = 0  # rewinds for the next epoch: an exhausted iterator yields again
            raise StopIteration
        self.position += 1
        return self.loader._batch(self.starts[self.position - 1])


class IteratorRestartsAfterStopIteration(BatchLoader):
    def __iter__(self) -> Iterator[Any]:
        return _RewindingIterator(self)


class ResumesAbandonedEpoch(BatchLoader):
    """Keeps one iterator and only makes a new one when it is exhausted: after a ``break`` the
    next epoch resumes where the last one stopped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._iterator: Iterator[Any] | None = None
        self._exhausted = True

    def _epoch(self) -> Iterator[Any]:
        yield from super().__iter__()
        self._exhausted = True

    def __iter__(self) -> Iterator[Any]:
        if self._iterator is None or self._exhausted:
            self._iterator, self._exhausted = self._epoch(), False
        return self._iterator


class LenIsCeilButDropsLast(BatchLoader):
    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)  # ignores drop_last


class LenFromUnloadedIndex(BatchLoader):
    def __len__(self) -> int:
        raise RuntimeError("index not loaded yet")  # not TypeError: len() neither works nor says unsized


class DropsPartialBatchAnyway(BatchLoader):
    def _starts(self) -> range:
        return range(0, len(self.dataset) - self.batch_size + 1, self.batch_size)  # drop_last=False ignored

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size


def _as_dict(samples: list[Any]) -> dict[str, Any]:
    features, labels = numpy_collate(samples)
    return {"features": features, "labels": labels}


class IgnoresItsCollateFn(BatchLoader):
    def _batch(self, start: int) -> Any:
        stop = min(start + self.batch_size, len(self.dataset))
        return numpy_collate([self.dataset[i] for i in range(start, stop)])  # not self.collate_fn


def _mutant(name: str, violates: str, bug: str, factory: Any, **fields: Any) -> Mutant:
    return Mutant(name, Loader, f"loader.{violates}", bug, factory, **fields)


MUTANTS = [
    _mutant("iter_returns_batch_list", "iter_returns_iterator", "__iter__ returns a list of batches",
            _loader(IterReturnsBatchList), message_contains=("iter(loader) raised TypeError",)),
    _mutant("cycles_forever", "epoch_ends", "an endless loader not declared infinite",
            _loader(CyclesForever), kwargs={"time_budget_s": 0.5},
            message_contains=("without ending", "infinite=True")),
    _mutant("blocks_on_dead_worker", "epoch_ends", "next() waits forever for a dead worker",
            _loader(BlocksOnDeadWorker), kwargs={"time_budget_s": 0.5}, hangs=True,
            message_contains=("next(it) (item 1) did not return within the time budget",)),
    _mutant("iterator_restarts_after_stop_iteration", "exhaustion_is_sticky",
            "the epoch iterator rewinds when it raises StopIteration",
            _loader(IteratorRestartsAfterStopIteration),
            message_contains=("after the epoch's iterator had raised StopIteration",)),
    _mutant("resumes_abandoned_epoch", "each_iter_is_new_epoch",
            "after a break, iter(loader) resumes the old epoch", _loader(ResumesAbandonedEpoch),
            message_contains=("yielded 2 batches; the first epoch had 3",)),
    _mutant("len_raises_runtime_error", "len_matches_batch_count",
            "__len__ raises RuntimeError (only TypeError means unsized)", _loader(LenFromUnloadedIndex),
            message_contains=("len(loader) raised RuntimeError", "or TypeError when loader is unsized")),
    _mutant("len_is_ceil_but_drops_last", "len_matches_batch_count",
            "__len__ is ceil(n / batch_size) with drop_last=True",
            _loader(LenIsCeilButDropsLast, drop_last=True),
            message_contains=("len(loader) == 3 but an epoch yielded 2 batches",)),
    _mutant("drops_partial_batch_anyway", "batches_cover_dataset",
            "the last partial batch is dropped with drop_last=False", _loader(DropsPartialBatchAnyway),
            message_contains=("held 8 samples", "expected 10")),
    _mutant("over_one_buffer", "samples_survive_later_fetches",
            "its dataset returns one preallocated buffer for every index",
            lambda: BatchLoader(DecodesIntoOneBuffer(10), 4),
            message_contains=("loader.dataset[0] changed after loader.dataset[1]", "sample 1 twice")),
    _mutant("ignores_its_collate_fn", "batches_match_collate", "loader.collate_fn is stored, not used",
            _loader(IgnoresItsCollateFn, collate_fn=_as_dict),
            message_contains=("batch 0 differs from loader.collate_fn(",)),
]  # fmt: skip
