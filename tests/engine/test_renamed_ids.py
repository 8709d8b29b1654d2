"""SPEC.md, "Stable ids": a renamed check's old id still names it for one minor release, with a warning."""

from __future__ import annotations

import pytest

from torchcontract.conformance import ConformanceWarning, Target, check
from torchcontract.conformance._core import registry as _registry
from torchcontract.protocols import MapDataset

NEW = "map_dataset.negative_index_mirrors_python"


class RaisesValueErrorBeforeStart:
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        if index < 0:
            raise ValueError("negative offsets are not supported")  # the deviation declared below
        if index >= 4:
            raise IndexError(index)
        return index


@pytest.fixture
def renamed(monkeypatch: pytest.MonkeyPatch) -> str:
    old = "map_dataset.negative_index_like_python"
    monkeypatch.setitem(_registry._RENAMED, old, (NEW, "0.2.0"))
    return old


def test_an_old_id_in_expected_failures_applies_and_warns(renamed: str) -> None:
    with pytest.warns(ConformanceWarning, match=f"'{renamed}' was renamed '{NEW}' in torchcontract 0.2.0"):
        target = Target(RaisesValueErrorBeforeStart(), MapDataset, expected_failures={renamed: "by design"})
    assert target.expected_failures == {NEW: "by design"}
    report = target.run()
    result = next(r for r in report.results if r.check_id == NEW)
    assert result.status == "xfailed", result.message
    assert not report.stale_expected_failures


def test_check_takes_the_old_id_too(renamed: str) -> None:
    with pytest.warns(ConformanceWarning, match="renamed"):
        report = check(RaisesValueErrorBeforeStart(), MapDataset, expected_failures={renamed: "by design"})
    assert next(r for r in report.results if r.check_id == NEW).status == "xfailed"


def test_no_check_is_renamed_yet_and_current_ids_pass_through() -> None:
    assert dict(_registry.RENAMED) == {}
    assert _registry.current_id(NEW) == NEW
