"""The synchronous start of worker processes is bounded like every wait: pickling a dataset whose
``__reduce__`` blocks (as under spawn or forkserver) fails within the time budget, naming the call."""

from __future__ import annotations

import threading
from typing import Any

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

from torch.utils.data import DataLoader

from torchcontract.conformance import check
from torchcontract.protocols import Loader, MapDataset


class BlocksWhenPickled:
    """A dataset holding a handle whose pickling waits on a lock another thread never releases."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        if not -4 <= index < 4:
            raise IndexError(index)
        return index

    def __reduce__(self) -> Any:
        threading.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.clause("map_dataset.pickle_round_trip")
def test_a_dataset_that_blocks_when_pickled_fails_in_time() -> None:
    report = check(BlocksWhenPickled(), MapDataset, time_budget_s=1)
    failed = [r for r in report.results if r.status == "failed"]
    assert [r.check_id for r in failed] == ["map_dataset.pickle_round_trip"], report
    assert "pickle.dumps(ds) did not return within the time budget of 1 s" in failed[0].message


@pytest.mark.slow
def test_a_spawned_loader_over_it_fails_in_time() -> None:
    loader = DataLoader(BlocksWhenPickled(), batch_size=2, num_workers=1, multiprocessing_context="spawn")
    report = check(loader, Loader, time_budget_s=2)
    failed = [r for r in report.results if r.status == "failed"]
    assert failed, report
    assert "did not return within the time budget of 2 s" in failed[0].message
    assert not report.passed
