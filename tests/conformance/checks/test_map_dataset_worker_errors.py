"""Regression tests: ``error_index=`` makes ``map_dataset.worker_errors_keep_their_type`` load a real
error path (a corrupt sample) through a worker, instead of only ``ds[len(ds)]``."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

from torchcontract.conformance import Report, Target, check
from torchcontract.protocols import MapDataset

from ...workers import fixtures

ERRORS = "map_dataset.worker_errors_keep_their_type"

pytestmark = pytest.mark.clause(ERRORS)


def _result(report: Report, check_id: str) -> tuple[str, str]:
    found = next(r for r in report.results if r.check_id == check_id)
    return found.status, found.message


def test_an_error_class_torch_cannot_rebuild_is_found_at_the_declared_index() -> None:
    # Before: only ds[len(ds)] was loaded, whose IndexError torch rebuilds: the clause passed.
    report = check(fixtures.CorruptAtThree(), MapDataset, error_index=3)
    status, message = _result(report, ERRORS)
    assert status == "failed"
    assert "ds[3] raises CorruptSampleError" in message
    assert "RuntimeError" in message
    assert report.passed  # recommended; the other clauses leave index 3 out


def test_a_rebuildable_error_at_the_declared_index_passes() -> None:
    report = check(fixtures.CorruptAtThreeRaisesValueError(), MapDataset, error_index=3)
    assert _result(report, ERRORS)[0] == "passed"
    assert not report.failures, report


def test_a_declared_error_index_that_does_not_raise_fails() -> None:
    status, message = _result(check(fixtures.Squares(), MapDataset, error_index=3), ERRORS)
    assert status == "failed"
    assert "error_index=3" in message


@pytest.mark.parametrize("bad", ["3", 1.5, True, -1])
def test_error_index_must_be_a_non_negative_int(bad: object) -> None:
    with pytest.raises(TypeError, match="error_index"):
        Target(fixtures.Squares(), MapDataset, error_index=bad)
