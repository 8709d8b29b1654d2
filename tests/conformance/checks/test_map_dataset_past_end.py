"""Regression tests: ``map_dataset.index_past_end_raises_index_error`` on a dataset with its own
``__iter__`` (which, unlike the legacy sequence protocol, does not need the IndexError to end
iteration). Each dataset here is written for the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from torchcontract.conformance import Report, check
from torchcontract.protocols import MapDataset

pytestmark = pytest.mark.clause("map_dataset.index_past_end_raises_index_error")


def _result(report: Report, check_id: str) -> tuple[str, str]:
    found = next(r for r in report.results if r.check_id == check_id)
    return found.status, found.message


class DictBackedWithIter:
    """Samples in a dict: KeyError past the end, but its own __iter__, so iteration ends."""

    def __init__(self) -> None:
        self.samples = {i: float(i) for i in range(5)}

    def __len__(self) -> int:
        return 5

    def __getitem__(self, index: int) -> float:
        return self.samples[int(index)]

    def __iter__(self) -> Iterator[float]:
        return iter([self.samples[i] for i in range(5)])


class UndercountsWithIter(DictBackedWithIter):
    def __init__(self) -> None:
        super().__init__()
        self.samples[5] = 5.0  # len says 5: the sixth sample is never loaded by a DataLoader


def test_with_its_own_iter_another_error_past_the_end_is_a_note() -> None:
    status, message = _result(
        check(DictBackedWithIter(), MapDataset), "map_dataset.index_past_end_raises_index_error"
    )
    assert status == "passed"
    assert "KeyError" in message
    assert "own __iter__" in message


def test_with_its_own_iter_a_sample_past_the_end_fails_for_the_samplers_reason() -> None:
    status, message = _result(
        check(UndercountsWithIter(), MapDataset), "map_dataset.index_past_end_raises_index_error"
    )
    assert status == "failed"
    assert "range(len(ds))" in message
    assert "legacy" not in message
