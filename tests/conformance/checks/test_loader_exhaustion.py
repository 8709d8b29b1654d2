"""Regression tests: no iterator made before a rollback (or before another check iterated the loader)
is probed after it.

A loader that cannot be deep-copied is iterated itself, and its state is rolled back afterwards
(``checks/_state.py``, ``restored``). An iterator that reads state kept on the loader (torchdata's
``nodes.Loader`` restores its root node's state) then no longer is the iterator that was exhausted:
probing it after the rollback judges another iterator.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from torchcontract.conformance import Report, Target, check
from torchcontract.protocols import Loader

pytestmark = pytest.mark.clause("loader.exhaustion_is_sticky")


class _Cursor:
    """The iterator of :class:`RollbackLoader`: it reads the loader's own cursor."""

    def __init__(self, loader: RollbackLoader) -> None:
        self.loader = loader

    def __iter__(self) -> _Cursor:
        return self

    def __next__(self) -> list[int]:
        loader = self.loader
        if loader.position >= len(loader.batches):
            raise StopIteration
        batch = loader.batches[loader.position]
        loader.position += 1
        return batch


class RollbackLoader:
    """A correct loader (one live iterator at a time, as torchdata's ``nodes.Loader``) that cannot be
    deep-copied (it holds a lock) and keeps its iterator's position on itself: restoring its
    attributes moves an old iterator back to the start of the epoch."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches = [[0, 1], [2, 3], [4]]
        self.position = 0

    def __iter__(self) -> Iterator[list[int]]:
        self.position = 0
        return _Cursor(self)


def _status(report: Report, check_id: str) -> str:
    return next(r.status for r in report.results if r.check_id == check_id)


def test_exhaustion_is_probed_before_the_loader_is_rolled_back() -> None:
    report = check(RollbackLoader(), Loader)
    assert _status(report, "loader.exhaustion_is_sticky") == "passed", report
    assert report.passed, report


def test_exhaustion_is_probed_before_the_rollback_when_run_alone() -> None:
    """Selected alone (``pytest -k exhaustion_is_sticky``), the clause's prerequisite records the
    first epoch in a check of its own, rolled back before this clause runs."""
    target = Target(RollbackLoader(), Loader)
    report = target.run(select=lambda spec: spec.check_id == "loader.exhaustion_is_sticky")
    assert _status(report, "loader.exhaustion_is_sticky") == "passed", report
