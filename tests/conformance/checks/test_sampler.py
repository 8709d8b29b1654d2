"""The Sampler and Loader clauses give no false verdict on objects nobody here wrote.

Each test builds an object of the shape that was misjudged (a DistributedSampler subclass with its own
constructor, a DataLoader built with ``batch_sampler=``, a sampler of string keys, ...) and checks
the verdict; the objects are written here, with torch and NumPy only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from torchcontract import reference_impl as ref
from torchcontract.conformance import CheckResult, Report, check
from torchcontract.protocols import Loader, Sampler

from ...conftest import HAS_TORCH, NO_TORCH_REASON
from ..mutants.sampler import ShardThenBucket

needs_torch = pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)


def _result(report: Report, check_id: str) -> CheckResult:
    return next(result for result in report.results if result.check_id == check_id)


def _statuses(report: Report) -> dict[str, str]:
    return {r.check_id: r.status for r in report.results}


def _no_failure(report: Report) -> None:
    failed = [r.check_id for r in report.results if r.status == "failed"]
    assert failed == [], str(report)


SHARDING = (
    "sampler.shards_have_equal_length",
    "sampler.shards_cover_dataset",
    "sampler.set_epoch_reshuffles_every_rank_alike",
)


# -- 1. shards are inferred only for DistributedSampler itself ----------------------------------------


class ShardOfFiles(ref.DistributedSampler):
    """A subclass whose constructor takes a file list and a world description, not torch's keywords."""

    def __init__(self, files: list[str], world: tuple[int, int]) -> None:
        self.files = files
        super().__init__(len(files), num_replicas=world[1], rank=world[0])


class RepeatedShards(ref.DistributedSampler):
    """A subclass that adds a constructor argument: each index ``repeats`` times per pass."""

    def __init__(self, dataset: Any, num_replicas: int, rank: int, repeats: int = 1, **kwargs: Any) -> None:
        super().__init__(dataset, num_replicas, rank, **kwargs)
        self.repeats = repeats

    def __iter__(self) -> Iterator[int]:
        return (index for index in super().__iter__() for _ in range(self.repeats))

    def __len__(self) -> int:
        return super().__len__() * self.repeats


@pytest.mark.clause(*SHARDING)
def test_a_subclass_with_its_own_constructor_skips_sharding() -> None:
    sampler = ShardOfFiles([f"f{i}.bin" for i in range(10)], (0, 2))
    report = check(sampler, Sampler, world_size=2, data_source_len=10)
    _no_failure(report)
    for clause in SHARDING:
        result = _result(report, clause)
        assert result.status == "skipped", report
        assert "shards=" in result.message, result.message


@pytest.mark.clause(*SHARDING)
def test_a_subclass_that_adds_an_argument_is_not_checked_as_another_sampler() -> None:
    # Rebuilt with torch's keywords it would lose repeats=2 and check a different sampler.
    sampler = RepeatedShards(range(10), 2, 0, repeats=2)
    report = check(sampler, Sampler, world_size=2)
    for clause in SHARDING:
        result = _result(report, clause)
        assert result.status == "skipped", report
        assert "shards=" in result.message, result.message


@pytest.mark.clause(*SHARDING)
def test_only_torchs_own_distributed_sampler_is_rebuilt() -> None:
    # The reference DistributedSampler is built like torch's, but the checks know no class but torch's:
    # it declares its shards as any other sampler does (the report's target gives shards=).
    sampler = ref.DistributedSampler(10, num_replicas=2, rank=0)
    report = check(sampler, Sampler, world_size=2, data_source_len=10)
    _no_failure(report)
    for clause in SHARDING:
        result = _result(report, clause)
        assert result.status == "skipped", report
        assert "torch's DistributedSampler itself, not DistributedSampler" in result.message, result.message
    declared = check(
        sampler,
        Sampler,
        world_size=2,
        data_source_len=10,
        shards=lambda rank, world_size: ref.DistributedSampler(10, num_replicas=world_size, rank=rank),
    )
    assert _statuses(declared)["sampler.shards_cover_dataset"] == "passed", declared


@pytest.mark.clause("sampler.shards_cover_dataset")
def test_torchs_distributed_sampler_is_rebuilt_from_its_attributes() -> None:
    data = pytest.importorskip("torch.utils.data", reason=NO_TORCH_REASON)
    sampler = data.DistributedSampler(range(10), num_replicas=2, rank=0)
    report = check(sampler, Sampler, world_size=2)
    assert _statuses(report)["sampler.shards_cover_dataset"] == "passed", report


# -- 2. batch samplers --------------------------------------------------------------------------------


@pytest.mark.clause("sampler.shards_have_equal_length")
def test_batch_shards_with_equal_index_counts_but_unequal_batch_counts_fail() -> None:
    assert [sum(map(len, ShardThenBucket(r, 2))) for r in (0, 1)] == [6, 6]
    assert [len(ShardThenBucket(r, 2)) for r in (0, 1)] == [2, 3]
    report = check(ShardThenBucket(0, 2), Sampler, world_size=2, shards=ShardThenBucket)
    result = _result(report, "sampler.shards_have_equal_length")
    assert result.status == "failed", report
    assert "batches" in result.message
    violations = [r.check_id for r in report.results if r.is_violation]
    assert violations == ["sampler.shards_have_equal_length"], report


class ArrayBatches:
    """A batch sampler yielding NumPy arrays of indices (legal: the fetcher iterates them)."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.data_source = range(n)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[np.ndarray[Any, Any]]:
        return iter(np.array_split(np.arange(len(self.data_source)), -(-len(self.data_source) // 4)))

    def __len__(self) -> int:
        return -(-len(self.data_source) // 4)


BATCH_CLAUSES = (
    "sampler.yields_indices_in_range",
    "sampler.len_matches_count",
    "sampler.each_index_once",
    "sampler.each_iter_is_new_pass",
)


@pytest.mark.clause(*BATCH_CLAUSES)
def test_a_batch_sampler_of_numpy_arrays_is_judged_as_batches() -> None:
    report = check(ArrayBatches(10, 4), Sampler)
    statuses = _statuses(report)
    for clause in BATCH_CLAUSES:
        assert statuses[clause] == "passed", report
    assert report.passed, report


@pytest.mark.clause("sampler.shards_cover_dataset", "sampler.shards_have_equal_length")
def test_numpy_array_batch_shards_are_counted() -> None:
    def shards(rank: int, world_size: int) -> Any:
        return [np.arange(rank, 12, world_size)[i : i + 2] for i in range(0, 6, 2)]

    report = check(shards(0, 2), Sampler, world_size=2, shards=shards, data_source_len=12)
    statuses = _statuses(report)
    assert statuses["sampler.shards_have_equal_length"] == "passed", report
    assert statuses["sampler.shards_cover_dataset"] == "passed", report


@pytest.mark.clause("loader.batches_cover_dataset")
@needs_torch
@pytest.mark.parametrize("drop_last", [False, True])
def test_a_dataloader_with_a_batch_sampler_has_its_coverage_checked(drop_last: bool) -> None:
    import torch
    import torch.utils.data as tud

    ds = torch.arange(10.0)
    loader = tud.DataLoader(
        ds, batch_sampler=tud.BatchSampler(tud.SequentialSampler(ds), 4, drop_last=drop_last)
    )
    report = check(loader, Loader)
    assert _result(report, "loader.batches_cover_dataset").status == "passed", report
    _no_failure(report)


class SkipsLastBatch:
    """A torch-style batch sampler whose iteration forgets the partial batch that drop_last=False keeps."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.sampler, self.batch_size, self.drop_last = range(n), batch_size, False

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.sampler)
        return iter(
            [list(range(s, s + self.batch_size)) for s in range(0, n - self.batch_size + 1, self.batch_size)]
        )

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size


@pytest.mark.clause("loader.batches_cover_dataset")
@needs_torch
def test_a_dataloader_batch_sampler_that_drops_its_partial_batch_fails_coverage() -> None:
    import torch
    import torch.utils.data as tud

    loader = tud.DataLoader(torch.arange(10.0), batch_sampler=SkipsLastBatch(10, 4))
    report = check(loader, Loader)
    result = _result(report, "loader.batches_cover_dataset")
    assert result.status == "failed", report
    assert "held 8 samples" in result.message


# -- 3. no check runs a setup computed from a failed inference ----------------------------------------


class OpaqueBatches:
    """An ordered loader whose batches are opaque objects: nobody can count their samples."""

    def __init__(self) -> None:
        self.dataset = list(range(8))
        self.batch_size = 4
        self.collate_fn = lambda samples: object()

    def __iter__(self) -> Iterator[Any]:
        return iter([object(), object()])

    def __len__(self) -> int:
        return 2


@pytest.mark.clause("loader.batches_match_collate")
def test_batches_match_collate_skips_when_it_cannot_count_a_batch() -> None:
    report = check(OpaqueBatches(), Loader, ordered=True)
    result = _result(report, "loader.batches_match_collate")
    assert result.status == "skipped", report
    assert "how many samples" in result.message, result.message


@pytest.mark.clause("loader.batches_match_collate")
@needs_torch
def test_batches_match_collate_uses_the_batch_samplers_batch_size() -> None:
    import torch
    import torch.utils.data as tud

    ds = torch.arange(10.0)
    loader = tud.DataLoader(ds, batch_sampler=tud.BatchSampler(tud.SequentialSampler(ds), 4, drop_last=False))
    report = check(loader, Loader, ordered=True)
    assert _result(report, "loader.batches_match_collate").status == "passed", report


# -- 4. declarations ------------------------------------------------------------------------------


class RandomLengthPasses:
    """Declared deterministic=False: each pass keeps each index with probability 1/2 (a random
    subsample per epoch), so two passes differ in length and order."""

    def __init__(self, n: int) -> None:
        self.data_source = range(n)
        self.passes = 0

    def __iter__(self) -> Iterator[int]:
        self.passes += 1
        rng = np.random.default_rng(self.passes)  # seeded: the test is certain
        return iter([i for i in range(len(self.data_source)) if rng.random() < 0.5])


COMPARED_ACROSS_PASSES = ("sampler.each_iter_is_new_pass", "sampler.same_state_same_order")


@pytest.mark.clause(*COMPARED_ACROSS_PASSES)
def test_a_sampler_declared_nondeterministic_is_not_compared_across_passes() -> None:
    sampler = RandomLengthPasses(40)
    report = check(sampler, Sampler, deterministic=False)
    _no_failure(report)
    for clause in COMPARED_ACROSS_PASSES:
        result = _result(report, clause)
        assert result.status == "skipped", report
        assert "deterministic=False" in result.message


INFINITE_SKIPS = (
    "sampler.shards_have_equal_length",
    "sampler.shards_cover_dataset",
    "sampler.same_seed_same_shards",
)


@pytest.mark.clause(*INFINITE_SKIPS)
def test_an_infinite_sampler_skips_the_sharding_clauses() -> None:
    def shards(rank: int, world_size: int) -> Any:
        from ..correct import EndlessShuffles

        return EndlessShuffles(10, seed=rank)

    report = check(shards(0, 2), Sampler, infinite=True, world_size=2, shards=shards, data_source_len=10)
    _no_failure(report)
    for clause in INFINITE_SKIPS:
        result = _result(report, clause)
        assert result.status == "skipped", report
        assert "infinite=True" in result.message


@pytest.mark.clause("sampler.shards_cover_dataset")
def test_a_sampler_with_replacement_skips_shard_coverage() -> None:
    def shards(rank: int, world_size: int) -> list[int]:
        return np.random.default_rng(rank).integers(10, size=5).tolist()

    report = check(shards(0, 2), Sampler, replacement=True, world_size=2, shards=shards, data_source_len=10)
    result = _result(report, "sampler.shards_cover_dataset")
    assert result.status == "skipped", report
    assert "replacement=True" in result.message


# -- 5. check() leaves samplers and loaders as it found them -------------------------------------------


class CountingSampler:
    """Its state advances every pass (a counter seeds the order) and set_epoch stores an epoch."""

    def __init__(self, n: int) -> None:
        self.data_source = range(n)
        self.passes = 0
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        self.passes += 1
        order = np.random.default_rng(1000 * self.epoch + self.passes).permutation(len(self.data_source))
        return iter(order.tolist())

    def __len__(self) -> int:
        return len(self.data_source)


def test_check_leaves_a_stateful_sampler_as_it_was() -> None:
    sampler = CountingSampler(10)
    before = copy.deepcopy(sampler)
    check(
        sampler,
        Sampler,
        world_size=2,
        shards=lambda rank, world_size: CountingSampler(10),
        deterministic=False,
    )
    assert (sampler.passes, sampler.epoch) == (before.passes, before.epoch)
    assert list(sampler) == list(before)


class UncopyableCountingSampler(CountingSampler):
    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        raise TypeError("holds a database cursor")


def test_check_restores_a_sampler_it_cannot_copy() -> None:
    sampler = UncopyableCountingSampler(10)
    check(sampler, Sampler, deterministic=False)
    assert (sampler.passes, sampler.epoch) == (0, 0)


@needs_torch
@pytest.mark.parametrize("shuffle", [False, True])
def test_check_leaves_a_loader_with_a_generator_as_it_was(shuffle: bool) -> None:
    import torch
    import torch.utils.data as tud

    loader = tud.DataLoader(torch.arange(10.0), batch_size=4, shuffle=shuffle, generator=torch.Generator())
    before = copy.deepcopy(loader)
    report = check(loader, Loader)
    _no_failure(report)
    assert torch.equal(loader.generator.get_state(), before.generator.get_state())
    for one, two in zip(loader, before, strict=True):
        assert torch.equal(one, two)


class CountingLoader:
    """A plain loader whose sampler state advances every epoch."""

    def __init__(self) -> None:
        self.dataset = list(range(10))
        self.sampler = CountingSampler(10)
        self.batch_size, self.drop_last = 5, False

    def __iter__(self) -> Iterator[list[int]]:
        order = list(self.sampler)
        return iter([order[:5], order[5:]])

    def __len__(self) -> int:
        return 2


def test_check_leaves_a_loader_whose_sampler_advances_as_it_was() -> None:
    loader = CountingLoader()
    before = copy.deepcopy(loader)
    check(loader, Loader)
    assert loader.sampler.passes == before.sampler.passes
    assert list(loader) == list(before)


# -- 7. torch's own samplers, and samplers of keys -------------------------------------------------


@pytest.mark.clause("sampler.each_index_once")
@needs_torch
@pytest.mark.parametrize("num_samples", [25, 30, 7])
def test_random_sampler_without_replacement_over_several_permutations_passes(num_samples: int) -> None:
    import torch.utils.data as tud

    report = check(tud.RandomSampler(range(10), replacement=False, num_samples=num_samples), Sampler)
    assert _result(report, "sampler.each_index_once").status == "passed", report
    _no_failure(report)


class RepeatsInsideABlock:
    """25 indices over 10 as back-to-back blocks, but the second block repeats an index."""

    data_source = range(10)

    def __iter__(self) -> Iterator[int]:
        return iter([*range(10), 0, *range(1, 10), 3, 1, 2, 3, 4])


@pytest.mark.clause("sampler.each_index_once")
def test_a_repeat_inside_a_block_of_a_long_pass_still_fails() -> None:
    report = check(RepeatsInsideABlock(), Sampler)
    result = _result(report, "sampler.each_index_once")
    assert result.status == "failed", report


class KeySampler:
    """Keys of a dict-backed dataset (torch's Dataset docstring allows non-integer keys)."""

    def __init__(self) -> None:
        self.data_source = {f"img{i}": i for i in range(5)}

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.data_source))

    def __len__(self) -> int:
        return len(self.data_source)


class ScaledIndices:
    """(index, scale) pairs, as multi-scale training samplers yield them."""

    data_source = range(6)

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return iter([(i, 0.5 + i % 2) for i in range(6)])

    def __len__(self) -> int:
        return 6


@pytest.mark.clause("sampler.yields_indices_in_range")
@pytest.mark.parametrize("sampler", [KeySampler(), ScaledIndices()], ids=["string_keys", "index_scale_pairs"])
def test_samplers_of_keys_are_not_misread_as_batches(sampler: Any) -> None:
    report = check(sampler, Sampler)
    _no_failure(report)
    result = _result(report, "sampler.yields_indices_in_range")
    assert result.status == "skipped", report
    assert "keys" in result.message, result.message


class FloatIndices:
    data_source = range(3)

    def __iter__(self) -> Iterator[float]:
        return iter([0.0, 1.0, 2.0])


@pytest.mark.clause("sampler.yields_indices_in_range")
def test_float_indices_still_fail() -> None:
    report = check(FloatIndices(), Sampler)
    assert _result(report, "sampler.yields_indices_in_range").status == "failed", report
