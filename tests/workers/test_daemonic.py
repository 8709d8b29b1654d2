"""``check()`` inside a daemonic process (a DataLoader worker), which ``multiprocessing`` refuses
children: the clauses that start processes are skipped, saying why, and the others still run."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

from torch.utils import data

from torchcontract.conformance import CHECKS, check
from torchcontract.protocols import MapDataset

from . import fixtures


class ChecksInItsWorker(data.Dataset[dict[str, Any]]):
    """Its one sample is the report of check() on a correct dataset, run in the worker that loads it."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index != 0:
            raise IndexError(index)
        report = check(fixtures.Squares(), MapDataset)
        return {
            "daemon": multiprocessing.current_process().daemon,
            "passed": report.passed,
            "results": {r.check_id: [r.status, r.message] for r in report.results},
        }


def test_check_in_a_dataloader_worker_skips_the_clauses_that_start_processes() -> None:
    loader = data.DataLoader(
        ChecksInItsWorker(),
        batch_size=None,
        num_workers=1,
        multiprocessing_context=multiprocessing.get_context("fork"),
    )
    (outcome,) = list(loader)
    assert outcome["daemon"] is True
    results = outcome["results"]
    starting_processes = [check_id for check_id in results if {"workers"} & CHECKS[check_id].needs]
    assert "map_dataset.worker_errors_keep_their_type" in starting_processes
    assert "map_dataset.spawn_workers_yield_same_samples" in starting_processes
    for check_id in starting_processes:
        status, message = results[check_id]
        assert status == "skipped", results[check_id]
        assert "daemonic process" in message
    assert results["map_dataset.getitem_is_deterministic"][0] == "passed"
    assert not [check_id for check_id, (status, _) in results.items() if status in ("failed", "error")]
    assert outcome["passed"], results
