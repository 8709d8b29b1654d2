"""Worker-process clauses: real DataLoader workers (fork, and forkserver/spawn) on broken and correct
datasets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

from torchcontract.conformance import Target, check
from torchcontract.protocols import IterableDataset, MapDataset

from . import fixtures

WORKER_CHECKS = {
    "iterable_dataset.workers_yield_each_item_once",
    "iterable_dataset.workers_draw_independent_randomness",
    "iterable_dataset.spawn_workers_yield_same_items",
    "map_dataset.workers_draw_independent_randomness",
    "map_dataset.worker_errors_keep_their_type",
    "map_dataset.spawn_workers_yield_same_samples",
    "map_dataset.set_epoch_reaches_persistent_workers",
    "iterable_dataset.set_epoch_reaches_persistent_workers",
}


def _failed(obj: Any, protocol: type, **options: Any) -> list[str]:
    report = check(obj, protocol, **options)
    return [r.check_id for r in report.results if r.status == "failed" and r.severity == "required"]


def test_the_error_message_explains_the_rebuilt_exception() -> None:
    report = check(fixtures.RaisesRichError(), MapDataset)
    (failure,) = [r for r in report.results if r.status == "failed"]
    assert "raises OutOfRangeError in this process" in failure.message
    assert "the caller got RuntimeError" in failure.message


@pytest.mark.parametrize(
    ("obj", "protocol", "options"),
    [
        (fixtures.ShardedRange(), IterableDataset, {}),
        (fixtures.NoisyStreamSeededPerWorker(), IterableDataset, {"deterministic": False}),
        (fixtures.NoisyFromWorkerSeed(), MapDataset, {"deterministic": False}),
        (fixtures.NoisyFromGlobalNumpy(), MapDataset, {"deterministic": False}),
        (fixtures.Squares(), MapDataset, {}),
        (fixtures.EpochInSharedMemory(), MapDataset, {}),
        (fixtures.StreamEpochInSharedMemory(), IterableDataset, {}),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, (dict, type)) else None,
)
@pytest.mark.clause(*sorted(WORKER_CHECKS))
def test_correct_datasets_pass_every_worker_clause(obj: Any, protocol: type, options: dict[str, Any]) -> None:
    report = check(obj, protocol, **options)
    ran = {r.check_id: r.status for r in report.results if r.check_id in WORKER_CHECKS}
    assert "failed" not in ran.values(), report
    assert report.passed, report
    assert "passed" in ran.values()


STREAM_WORKER_CHECKS = (
    "iterable_dataset.workers_yield_each_item_once",
    "iterable_dataset.spawn_workers_yield_same_items",
)


@pytest.mark.clause(*STREAM_WORKER_CHECKS)
def test_plain_iterables_are_skipped_with_the_reason() -> None:
    report = check([1, 2, 3], IterableDataset)
    messages = {r.check_id: (r.status, r.message) for r in report.results}
    for check_id in STREAM_WORKER_CHECKS:
        status, message = messages[check_id]
        assert status == "skipped"
        assert "streams only subclasses of torch.utils.data.IterableDataset" in message


@pytest.mark.parametrize(
    ("make", "protocol", "clause"),
    [
        (
            fixtures.NoisyEpochsCopiedInItsThreadOnly,
            MapDataset,
            "map_dataset.workers_draw_independent_randomness",
        ),
        (
            fixtures.NoisyStreamEpochsCopiedInItsThreadOnly,
            IterableDataset,
            "iterable_dataset.workers_draw_independent_randomness",
        ),
    ],
    ids=["map_dataset", "iterable_dataset"],
)
@pytest.mark.clause(
    "iterable_dataset.workers_draw_independent_randomness", "map_dataset.workers_draw_independent_randomness"
)
def test_a_dataset_copied_only_in_its_own_thread_gets_set_epoch_itself_and_keeps_its_epoch(
    make: Callable[[], Any], protocol: type, clause: str
) -> None:
    # Before: "copy.deepcopy(ds) raised RuntimeError ...; expected it to succeed" (HuggingFace's
    # IterableDataset.shuffle), though the copy is only torchcontract's way to leave ds's epoch alone.
    dataset = make()  # in this thread: a copy made in the check's threads raises
    dataset.set_epoch(7)
    report = Target(dataset, protocol, deterministic=False).run(select=lambda spec: spec.check_id == clause)
    (result,) = [r for r in report.results if r.check_id == clause]
    assert result.status == "passed", result
    assert "copy.deepcopy(ds) raised RuntimeError: dictionary changed size during iteration" in result.message
    assert "ds.set_epoch was called on ds itself" in result.message
    assert dataset.epoch == 7  # set_epoch(0), set_epoch(1), ... on ds itself, put back by the engine
