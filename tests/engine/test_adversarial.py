"""Hostile objects: every call bounded, nothing touched after check() returns."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import numpy as np
import pytest

from torchcontract.conformance import check
from torchcontract.protocols import MapDataset

from ..conformance.reports import check_then_release


class SlowOnce:
    """ds[3] takes 1.5 s (past a 0.3 s budget), then returns; every call is logged with its time."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        if not -8 <= index < 8:
            raise IndexError(index)
        with self.lock:
            self.calls.append(time.monotonic())
        if index == 3:
            time.sleep(1.5)
            random.random()  # the abandoned call changes the global state after it returns
        return index % 8


def test_an_abandoned_check_makes_no_further_call_into_the_object() -> None:
    dataset = SlowOnce()
    report = check(dataset, MapDataset, time_budget_s=0.3)
    returned = time.monotonic()
    assert not report.passed
    time.sleep(2.5)  # the hung ds[3] returns meanwhile; the check thread must not go on
    with dataset.lock:
        later = [t for t in dataset.calls if t > returned]
    assert later == [], f"{len(later)} calls into the object after check() returned"


class HangsInSetEpoch:
    """A random map dataset whose set_epoch blocks: the worker clauses call it in the calling thread."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> float:
        if not -8 <= index < 8:
            raise IndexError(index)
        return float(np.random.random())

    def set_epoch(self, epoch: int) -> None:
        self.release.wait()

    def __deepcopy__(self, memo: dict[int, Any]) -> HangsInSetEpoch:
        copied = HangsInSetEpoch()
        copied.release = self.release
        return copied

    def __reduce__(self) -> Any:
        return (HangsInSetEpoch, ())


def test_a_hang_in_a_worker_clause_is_bounded_by_the_budget() -> None:
    pytest.importorskip("torch", reason="the worker clauses need torch")
    dataset = HangsInSetEpoch()
    started = time.monotonic()
    report = check_then_release(dataset, MapDataset, deterministic=False, time_budget_s=1)
    elapsed = time.monotonic() - started
    (result,) = [r for r in report.results if r.check_id == "map_dataset.workers_draw_independent_randomness"]
    assert result.status == "failed"
    assert "ds.set_epoch(0) did not return within the time budget of 1 s" in result.message
    assert not report.passed
    # Not a timed test of speed: before the bound, this check() never returned at all.
    assert elapsed < 60
