"""Regression test: a sample that cannot be pickled (back from a worker) fails at once, naming the part
of the sample at fault (before: a generic "expected it to succeed as in this process", after the whole
time budget), and in the calling process, before any worker starts."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

from torchcontract.conformance import check
from torchcontract.protocols import MapDataset

from ...workers import fixtures

SPAWN = "map_dataset.spawn_workers_yield_same_samples"
CROSSES = "map_dataset.samples_cross_process_boundary"


@pytest.mark.clause(CROSSES, SPAWN)
def test_a_lambda_in_a_sample_is_named_by_its_path() -> None:
    report = check(fixtures.LambdaInSample(), MapDataset)
    found = next(r for r in report.results if r.check_id == CROSSES)
    assert found.status == "failed", report
    spawn = next(r for r in report.results if r.check_id == SPAWN)
    assert spawn.status == "skipped"
    assert f"prerequisite {CROSSES} failed" in spawn.message
    assert "ds[0]['transform'] could not be pickled" in found.message
    assert "time budget" not in found.message
    assert "pickle.dumps(ds[0]['transform'])" in found.message
