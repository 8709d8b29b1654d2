"""map_dataset checks: reproducers that are expressions, and a time budget that ends a check
early without failing it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from torchcontract.conformance import check
from torchcontract.protocols import MapDataset

from ..correct import NoisyPoints, Points
from ..reports import status as _status

# -- the reproducer of a NumPy index is an expression, not a quoted string ------------------------------


@pytest.mark.clause("map_dataset.accepts_numpy_integer_index")
def test_numpy_index_failure_shows_the_expression() -> None:
    class IntOnly(NoisyPoints):
        def __getitem__(self, index: Any) -> Any:
            if type(index) is not int:
                raise TypeError(f"index must be int, not {type(index).__name__}")
            return super().__getitem__(index)

    status, message = _status(
        check(IntOnly(), MapDataset, deterministic=False), "map_dataset.accepts_numpy_integer_index"
    )
    assert status == "failed"
    assert "reproduce: ds[np.int64(9)]" in message
    assert "'np.int64" not in message


# -- a slow map-style dataset is not a broken one -----------------------------------------------------


class SlowPoints(Points):
    def __getitem__(self, index: int) -> Any:
        time.sleep(0.001)  # a decoder of compressed images, say
        return super().__getitem__(index)


@pytest.mark.clause("map_dataset.iteration_matches_indexing")
def test_iteration_of_a_slow_dataset_compares_what_the_budget_allows() -> None:
    # 1,000 items to compare at 2 ms each outlast a 0.5 s budget: before the fix, a failure.
    report = check(SlowPoints(2000), MapDataset, time_budget_s=0.5)
    status, message = _status(report, "map_dataset.iteration_matches_indexing")
    assert status == "passed", message
    assert "the time budget (0.5 s) ran out after" in message
