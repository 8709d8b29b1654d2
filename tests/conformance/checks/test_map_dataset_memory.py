"""map_dataset.holds_few_python_objects: a bounded walk that never runs the dataset's code, counts what
forked workers would copy on read, and leaves arrays, classes and modules alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from torchcontract.conformance import check
from torchcontract.protocols import MapDataset

CLAUSE = "map_dataset.holds_few_python_objects"

pytestmark = pytest.mark.clause(CLAUSE)


class Records:
    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        if not -4 <= index < 4:
            raise IndexError(index)
        return index


def _result(dataset: Any) -> Any:
    return next(r for r in check(dataset, MapDataset).results if r.check_id == CLAUSE)


def test_millions_of_names_in_an_array_pass() -> None:
    names = np.array([f"img_{i}.jpg" for i in range(1_200_000)])  # one object
    assert _result(Records(names=names)).status == "passed"


def test_an_object_array_is_counted_item_by_item() -> None:
    column = np.empty(1_100_000, dtype=object)
    column[:] = [(i,) for i in range(1_100_000)]  # a pandas object column: a tuple per row
    result = _result(Records(column=column))
    assert result.status == "failed"
    assert "ds.column" in result.message


def test_the_walk_runs_none_of_the_objects_code() -> None:
    class Trap:
        calls = 0

        def __getattr__(self, name: str) -> Any:
            if not name.startswith("__"):  # pickle and deepcopy look up __getstate__ (Python 3.10)
                Trap.calls += 1
            raise AttributeError(name)

        @property
        def loud(self) -> int:
            Trap.calls += 1
            raise RuntimeError("a property must not be read")

    cycle: list[Any] = []
    cycle.append(cycle)
    result = _result(Records(trap=Trap(), cycle=cycle, cls=Records, module=np))
    assert result.status == "passed", result.message
    assert Trap.calls == 0


def test_shared_objects_are_counted_once() -> None:
    same = "a path repeated"
    assert _result(Records(paths=[same] * 1_500_000)).status == "passed"
