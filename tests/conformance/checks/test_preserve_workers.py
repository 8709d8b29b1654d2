"""Regression tests: the worker and spawn clauses leave the dataset as they found it.

They call the dataset in this process too (``len(ds)``, ``ds[i]`` to compare with a worker's sample,
``ds[len(ds)]``, a pass of ``iter(ds)``): a memoising dataset's cache and a pass counter must be put
back, so that afterwards the dataset behaves as a ``copy.deepcopy`` taken before ``check()``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

from torch.utils import data as tud

from torchcontract.conformance import Report, check
from torchcontract.protocols import IterableDataset, MapDataset

WORKER_MAP = (
    "map_dataset.worker_errors_keep_their_type",
    "map_dataset.spawn_workers_yield_same_samples",
)
WORKER_STREAM = (
    "iterable_dataset.workers_yield_each_item_once",
    "iterable_dataset.spawn_workers_yield_same_items",
)


def _statuses(report: Report, ids: tuple[str, ...]) -> dict[str, str]:
    return {r.check_id: r.status for r in report.results if r.check_id in ids}


class MemoisingPoints(tud.Dataset[Any]):
    """Memoises samples in a dict; a sample is drawn on first access (then it stays the same)."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> Any:
        index = int(index)
        if not 0 <= index < 12:
            raise IndexError(index)
        if index not in self.cache:
            self.cache[index] = self.rng.normal(size=2)
        return self.cache[index].copy()


class CountsPasses(tud.IterableDataset[int]):
    """Sharded across workers; each pass is shuffled by the number of passes so far."""

    def __init__(self) -> None:
        self.passes = 0

    def __iter__(self) -> Iterator[int]:
        self.passes += 1
        info = tud.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        order = [int(i) for i in np.random.default_rng(self.passes).permutation(6)]
        yield from order[worker::workers]


@pytest.mark.clause(
    "map_dataset.spawn_workers_yield_same_samples", "map_dataset.worker_errors_keep_their_type"
)
def test_worker_clauses_leave_a_memoising_map_dataset_as_a_copy_taken_before() -> None:
    ds = MemoisingPoints()
    before = copy.deepcopy(ds)
    report = check(ds, MapDataset)
    assert set(_statuses(report, WORKER_MAP).values()) == {"passed"}, report
    assert ds.cache == {}
    order = [11, 0, 7, 3]  # not the order the checks used
    assert all(np.array_equal(ds[i], before[i]) for i in order)


@pytest.mark.clause(
    "iterable_dataset.spawn_workers_yield_same_items", "iterable_dataset.workers_yield_each_item_once"
)
def test_worker_clauses_leave_a_pass_counting_stream_as_a_copy_taken_before() -> None:
    ds = CountsPasses()
    before = copy.deepcopy(ds)
    report = check(ds, IterableDataset, deterministic=False)
    assert set(_statuses(report, WORKER_STREAM).values()) == {"passed"}, report
    assert ds.passes == 0
    assert list(ds) == list(before)
