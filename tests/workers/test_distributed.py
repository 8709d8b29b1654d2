"""Distributed clauses: samplers sharded across ranks, and loaders under a real gloo process group."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

from torch.utils import data

from torchcontract.conformance import check, check_distributed
from torchcontract.protocols import Sampler

from . import fixtures

SHARDING = {
    "sampler.shards_have_equal_length",
    "sampler.shards_cover_dataset",
    "sampler.set_epoch_reshuffles_every_rank_alike",
    "sampler.same_seed_same_shards",
}


def _statuses(report: Any) -> dict[str, str]:
    return {r.check_id: r.status for r in report.results}


def _required_failures(report: Any) -> set[str]:
    return {r.check_id for r in report.results if r.status == "failed" and r.severity == "required"}


# -- samplers ---------------------------------------------------------------------------------------------


@pytest.mark.clause("sampler.shards_cover_dataset")
@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize(
    "options",
    [{}, {"shuffle": False}, {"drop_last": True}, {"seed": 7}],
    ids=["default", "no-shuffle", "drop-last", "seed"],
)
def test_torch_distributed_sampler_passes_every_sharding_clause(
    world_size: int, options: dict[str, Any]
) -> None:
    sampler = data.DistributedSampler(range(10), num_replicas=world_size, rank=0, **options)
    report = check(sampler, Sampler, world_size=world_size)
    assert report.passed, report
    assert not report.failures, report
    assert _statuses(report)["sampler.shards_cover_dataset"] == "passed"


@pytest.mark.parametrize("world_size", [2, 3])
def test_the_reference_distributed_sampler_passes(world_size: int) -> None:
    from torchcontract import reference_impl as ref

    sampler = ref.DistributedSampler(10, num_replicas=world_size, rank=0)
    report = check(
        sampler,
        Sampler,
        world_size=world_size,
        data_source_len=10,
        shards=lambda r, w: ref.DistributedSampler(10, num_replicas=w, rank=r),
    )
    assert report.passed, report
    assert not report.failures, report


@pytest.mark.clause(
    "sampler.same_seed_same_shards",
    "sampler.set_epoch_reshuffles_every_rank_alike",
    "sampler.shards_cover_dataset",
    "sampler.shards_have_equal_length",
)
def test_sharding_checks_are_off_without_a_world_size() -> None:
    report = check(data.DistributedSampler(range(10), num_replicas=2, rank=0), Sampler)
    for check_id in SHARDING:
        result = next(r for r in report.results if r.check_id == check_id)
        assert result.status == "skipped"
        assert "--conformance-world-size" in result.message


# -- loaders under a process group -------------------------------------------------------------------------


def _no_children_left() -> bool:
    deadline = time.monotonic() + 5
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not multiprocessing.active_children()


@pytest.mark.parametrize("world_size", [2, 3])
def test_torch_loaders_under_a_process_group_pass(world_size: int) -> None:
    report = check_distributed(fixtures.torch_loader, world_size)
    assert report.passed, report
    assert [r.status for r in report.results] == ["passed", "passed"]
    assert _no_children_left()


def test_reference_loaders_under_a_process_group_pass() -> None:
    report = check_distributed(fixtures.reference_loader, 2)
    assert report.passed, report
    assert [r.status for r in report.results] == ["passed", "passed"]


@pytest.mark.clause("loader.ranks_cover_dataset", "loader.ranks_yield_equal_batch_counts")
def test_check_distributed_runs_only_the_process_group_checks() -> None:
    report = check_distributed(fixtures.extra_batch_on_rank_zero, 2)
    assert [r.check_id for r in report.results] == [
        "loader.ranks_yield_equal_batch_counts",
        "loader.ranks_cover_dataset",
    ]
    assert _required_failures(report) == {"loader.ranks_yield_equal_batch_counts"}


@pytest.mark.clause("loader.ranks_cover_dataset")
def test_a_padding_collate_covers_the_dataset_by_its_samplers_indices() -> None:
    """A padded row is not equal to its sample: coverage is judged by the indices of the samplers the
    loaders expose, not by their batches' content."""
    report = check_distributed(fixtures.padding_loader, 2)
    assert report.passed, report
    cover = next(r for r in report.results if r.check_id == "loader.ranks_cover_dataset")
    assert "indices of the loaders' samplers" in cover.message


@pytest.mark.clause("loader.ranks_cover_dataset")
def test_a_loader_that_ignores_the_sampler_it_exposes_is_judged_by_content() -> None:
    report = check_distributed(fixtures.ignores_its_sampler, 2)
    assert _required_failures(report) == {"loader.ranks_cover_dataset"}, report
    assert "11 beyond one copy of the dataset" in report.failures[0].message
    assert "Judged by the samples' content" in report.failures[0].message


@pytest.mark.clause("loader.ranks_cover_dataset")
def test_check_distributed_takes_the_declarations_of_check() -> None:
    """Evaluation sharding declared: unequal batch counts are not a failure, a sample on two ranks is;
    expected failures apply; unusable options fail before any rank starts."""
    assert check_distributed(fixtures.eval_loader, 2, uneven_shards=True).passed
    duplicating = check_distributed(fixtures.duplicating_eval_loader, 2, uneven_shards=True)
    assert _required_failures(duplicating) == {"loader.ranks_cover_dataset"}, duplicating
    known = {"loader.ranks_cover_dataset": "every rank loads everything, by design"}
    assert check_distributed(fixtures.ignores_rank, 2, expected_failures=known).passed
    with pytest.raises(TypeError, match="unknown option"):
        check_distributed(fixtures.torch_loader, 2, not_an_option=True)
    with pytest.raises(TypeError, match="own argument"):
        check_distributed(fixtures.torch_loader, 2, shards=fixtures.torch_loader)


@pytest.mark.clause("loader.ranks_yield_equal_batch_counts")
@pytest.mark.parametrize(
    ("factory", "cause"),
    [
        (fixtures.dies_on_rank_one, "rank 1 of 2 failed: rank 1 exited with status 3"),
        (fixtures.hangs_on_rank_one, "rank 1 of 2 failed: rank 1 did not finish within"),
    ],
    ids=["dies", "hangs"],
)
def test_a_dead_or_hung_rank_fails_in_time_and_every_process_ends(factory: Any, cause: str) -> None:
    started = time.monotonic()
    report = check_distributed(factory, 2, time_budget_s=6)
    assert time.monotonic() - started < 6 + 5
    assert _required_failures(report) == {"loader.ranks_yield_equal_batch_counts"}
    assert cause in report.failures[0].message
    assert _no_children_left()
