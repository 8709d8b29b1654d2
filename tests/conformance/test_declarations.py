"""Documented designs that are not bugs are declared on the target, not xfailed (SPEC.md, "Declarations").

Each family has an object of that shape written here: with its declaration it passes; a mutant that
breaks the guarantee left under the declaration fails the clause concerned, naming the declaration.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from torchcontract.conformance import CheckResult, Report, Target, check
from torchcontract.protocols import CollateFn, IterableDataset, Loader, MapDataset, Module, Sampler

from ..conftest import HAS_TORCH, NO_TORCH_REASON


def _result(report: Report, check_id: str) -> CheckResult:
    return next(result for result in report.results if result.check_id == check_id)


def _violations(report: Report) -> list[str]:
    return [r.check_id for r in report.results if r.is_violation]


def _fails_only(report: Report, check_id: str, *words: str) -> str:
    """``check_id`` fails (a recommended one fails as a warning), and no required check fails."""
    failed = [r.check_id for r in report.results if r.status == "failed"]
    assert check_id in failed, str(report)
    assert [v for v in _violations(report) if v != check_id] == [], str(report)
    message = _result(report, check_id).message
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize(
    "option",
    [
        {"uneven_shards": 1},
        {"max_padding": -1},
        {"max_padding": 2.0},
        {"reshuffles_each_pass": "yes"},
        {"transforms_samples": None},
        {"uneven_shards": True, "max_padding": 3},
    ],
)
def test_declarations_are_validated(option: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match=next(iter(option))):
        Target([0, 1], Sampler, **option)


# ----------------------------------------------------------------------------------------------------
# 1. oversampling without a `replacement` attribute


class ClassBalanced:
    """Indices 0-1 are the minority class and are drawn four times each per pass (class balancing)."""

    def __init__(self, n: int = 10) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n + 6

    def __iter__(self) -> Iterator[int]:
        return iter([*range(self.n), 0, 1, 0, 1, 0, 1])


class OneStrayDuplicate(ClassBalanced):
    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter([*range(self.n - 1), 3])


@pytest.mark.clause("sampler.each_index_once")
def test_oversampling_suggests_replacement_and_the_declaration_passes() -> None:
    report = check(ClassBalanced(), Sampler, data_source_len=10)
    _fails_only(report, "sampler.each_index_once", "deliberate oversampling", "declare replacement=True")
    declared = check(ClassBalanced(), Sampler, data_source_len=10, replacement=True)
    assert _violations(declared) == [], str(declared)


@pytest.mark.clause("sampler.each_index_once")
def test_a_stray_duplicate_is_not_called_oversampling() -> None:
    message = _fails_only(check(OneStrayDuplicate(), Sampler, data_source_len=10), "sampler.each_index_once")
    assert "deliberate oversampling" not in message


# ----------------------------------------------------------------------------------------------------
# 2. evaluation sharding: unequal ranks, no padding


class EvalShard:
    """torch-style evaluation sharding: range(rank, n, world_size), without padding."""

    def __init__(self, n: int, rank: int, world_size: int, extra: tuple[int, ...] = ()) -> None:
        self.n, self.rank, self.world_size, self.extra = n, rank, world_size, extra

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size)) + len(self.extra)

    def __iter__(self) -> Iterator[int]:
        return iter([*range(self.rank, self.n, self.world_size), *self.extra])


def _eval_shards(rank: int, world_size: int) -> EvalShard:
    return EvalShard(10, rank, world_size)


def _duplicating_eval_shards(rank: int, world_size: int) -> EvalShard:
    """Rank 0 also evaluates index 1, which rank 1 has: that sample counts twice in the metric."""
    return EvalShard(10, rank, world_size, extra=(1,) if rank == 0 else ())


def _sharded(factory: Any, **options: Any) -> Report:
    return check(factory(0, 3), Sampler, world_size=3, shards=factory, data_source_len=10, **options)


@pytest.mark.clause("sampler.shards_have_equal_length")
def test_uneven_shards_fail_equal_length_without_the_declaration() -> None:
    _fails_only(_sharded(_eval_shards), "sampler.shards_have_equal_length")


@pytest.mark.clause("sampler.shards_cover_dataset", "sampler.shards_have_equal_length")
def test_uneven_shards_declared_pass_and_coverage_is_checked() -> None:
    report = _sharded(_eval_shards, uneven_shards=True)
    assert _violations(report) == [], str(report)
    equal = _result(report, "sampler.shards_have_equal_length")
    assert equal.status == "skipped"
    assert "uneven_shards=True" in equal.message
    assert _result(report, "sampler.shards_cover_dataset").status == "passed"


@pytest.mark.clause("sampler.shards_cover_dataset")
def test_uneven_shards_that_duplicate_an_index_fail_coverage() -> None:
    # The world_size - 1 repeats of DistributedSampler's padding would have let this one through.
    _fails_only(
        _sharded(_duplicating_eval_shards, uneven_shards=True),
        "sampler.shards_cover_dataset",
        "uneven_shards=True",
        "exactly one rank",
    )


# ----------------------------------------------------------------------------------------------------
# 3. documented padding: a bound on the repeats


class PaddedShard:
    """Pads the indices to a multiple of world_size * 4 (a per-rank batch of 4) by repeating from the
    start, then shards them round-robin: 10 indices over 2 ranks become 16, 6 of them repeats."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    def _indices(self) -> list[int]:
        multiple = self.world_size * 4
        padded = -(-10 // multiple) * multiple
        return [i % 10 for i in range(padded)][self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self._indices())

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())


def _padded(rank: int, world_size: int) -> PaddedShard:
    return PaddedShard(rank, world_size)


def _padded_report(**options: Any) -> Report:
    return check(PaddedShard(0, 2), Sampler, world_size=2, shards=_padded, data_source_len=10, **options)


@pytest.mark.clause("sampler.shards_cover_dataset")
def test_padding_beyond_world_size_fails_without_a_bound() -> None:
    report = _padded_report()
    assert "sampler.shards_cover_dataset" in _violations(report), str(report)


def test_padding_within_max_padding_passes() -> None:
    report = _padded_report(max_padding=6)
    assert _violations(report) == [], str(report)


@pytest.mark.clause("sampler.shards_cover_dataset")
def test_padding_beyond_max_padding_fails_naming_the_bound() -> None:
    # Rank 0 repeats 3 indices (within the bound of 5); all ranks together repeat 6 (beyond it).
    _fails_only(_padded_report(max_padding=5), "sampler.shards_cover_dataset", "max_padding=5")


# ----------------------------------------------------------------------------------------------------
# 4. a seeded order that changes every pass


class SharedEpochReshuffle:
    """A seeded shuffle whose seed advances on every iter(); its copies share the epoch counter (as a
    sampler reading the trainer's epoch does), so two copies in the same state give different orders."""

    def __init__(self, n: int = 12, state: dict[str, int] | None = None) -> None:
        self.n = n
        self.state = state if state is not None else {"epoch": 0}

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedEpochReshuffle:
        return type(self)(self.n, self.state)

    def __len__(self) -> int:
        return self.n

    def _order(self, epoch: int) -> list[int]:
        order: list[int] = np.random.default_rng(1234 + epoch).permutation(self.n).tolist()
        return order

    def __iter__(self) -> Iterator[int]:
        epoch = self.state["epoch"]
        self.state["epoch"] += 1
        return iter(self._order(epoch))


class DriftingReshuffle(SharedEpochReshuffle):
    """After the first pass, each pass draws index (epoch + 1) % n in place of epoch % n."""

    def _order(self, epoch: int) -> list[int]:
        order = super()._order(epoch)
        if epoch == 0:
            return order
        return [(epoch + 1) % self.n if i == epoch % self.n else i for i in order]


@pytest.mark.clause("sampler.same_state_same_order")
def test_a_reshuffling_sampler_fails_same_order_without_the_declaration() -> None:
    _fails_only(check(SharedEpochReshuffle(), Sampler, data_source_len=12), "sampler.same_state_same_order")


@pytest.mark.clause("sampler.same_state_same_order")
def test_reshuffles_each_pass_declared_passes() -> None:
    report = check(SharedEpochReshuffle(), Sampler, data_source_len=12, reshuffles_each_pass=True)
    assert _violations(report) == [], str(report)
    assert "reshuffles_each_pass=True" in _result(report, "sampler.same_state_same_order").message


@pytest.mark.clause("sampler.same_state_same_order")
def test_passes_that_draw_different_indices_still_fail() -> None:
    _fails_only(
        check(DriftingReshuffle(), Sampler, data_source_len=12, reshuffles_each_pass=True),
        "sampler.same_state_same_order",
        "reshuffles_each_pass=True",
        "same indices",
    )


class ReshufflingLoader:
    """A loader whose order changes every epoch by design, over a dataset it reads in index order
    otherwise (it says shuffle=False: its order inference would call it ordered)."""

    shuffle = False

    def __init__(self) -> None:
        self.dataset = list(range(12))
        self.sampler = SharedEpochReshuffle()

    def __iter__(self) -> Iterator[list[int]]:
        order = list(self.sampler)
        return iter([order[i : i + 4] for i in range(0, 12, 4)])


@pytest.mark.clause("loader.each_iter_is_new_epoch")
def test_a_reshuffling_loader_passes_with_the_declaration() -> None:
    report = check(ReshufflingLoader(), Loader, ordered=True, reshuffles_each_pass=True)
    assert "loader.each_iter_is_new_epoch" not in _violations(report), str(report)
    undeclared = check(ReshufflingLoader(), Loader, ordered=True)
    assert "loader.each_iter_is_new_epoch" in _violations(undeclared), str(undeclared)


# ----------------------------------------------------------------------------------------------------
# 5. transforming collate functions

SAMPLES = [{"x": np.full(3, float(i)), "y": i} for i in range(5)]


def renaming_collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"inputs": np.stack([s["x"] for s in samples]), "labels": np.array([s["y"] for s in samples])}


def packing_collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Packs every sample's tokens into one row (sequence packing), with the boundaries."""
    return {
        "tokens": np.concatenate([s["x"] for s in samples])[None, :],
        "lengths": np.array([[len(s["x"]) for s in samples]]),
    }


def pairwise_packing_collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Packs samples two to a row: a short (odd) batch breaks it."""
    if len(samples) % 2:
        raise ValueError(f"cannot pack {len(samples)} samples in pairs")
    tokens = np.concatenate([s["x"] for s in samples])
    return {"tokens": tokens.reshape(len(samples) // 2, -1)}


@pytest.mark.clause("collate_fn.batch_has_one_row_per_sample", "collate_fn.batch_mirrors_sample_structure")
@pytest.mark.parametrize(
    ("collate", "clause"),
    [
        (renaming_collate, "collate_fn.batch_mirrors_sample_structure"),
        (packing_collate, "collate_fn.batch_has_one_row_per_sample"),
    ],
)
def test_transforming_collates_pass_with_the_declaration(collate: Any, clause: str) -> None:
    assert clause in _violations(check(collate, CollateFn, example_inputs=SAMPLES))
    declared = check(collate, CollateFn, example_inputs=SAMPLES, transforms_samples=True)
    assert _violations(declared) == [], str(declared)
    assert "transforms_samples=True" in _result(declared, "collate_fn.batch_mirrors_sample_structure").message


@pytest.mark.clause("collate_fn.batch_has_one_row_per_sample")
def test_a_collate_that_rejects_a_short_batch_still_fails() -> None:
    samples = SAMPLES[:4]
    report = check(pairwise_packing_collate, CollateFn, example_inputs=samples, transforms_samples=True)
    _fails_only(report, "collate_fn.batch_has_one_row_per_sample", "samples[:1]")


class PackingLoader:
    """A loader of packed batches (batch_size samples to a row); ``short=True`` loses the last, short
    batch although it says drop_last=False."""

    shuffle = False
    batch_size = 4
    drop_last = False
    sampler = None

    def __init__(self, short: bool = False) -> None:
        self.dataset = SAMPLES * 2
        self.collate_fn = packing_collate
        self.short = short

    def __iter__(self) -> Iterator[dict[str, Any]]:
        starts = range(0, len(self.dataset), self.batch_size)
        batches = [self.collate_fn(self.dataset[s : s + self.batch_size]) for s in starts]
        return iter(batches[:-1] if self.short else batches)


@pytest.mark.clause("loader.batches_cover_dataset", "loader.batches_match_collate")
def test_a_packing_loader_passes_with_the_declaration() -> None:
    assert "loader.batches_cover_dataset" in _violations(check(PackingLoader(), Loader))
    declared = check(PackingLoader(), Loader, transforms_samples=True)
    assert _violations(declared) == [], str(declared)
    assert _result(declared, "loader.batches_match_collate").status == "passed", str(declared)


@pytest.mark.clause("loader.batches_cover_dataset")
def test_a_packing_loader_that_loses_a_batch_still_fails() -> None:
    _fails_only(
        check(PackingLoader(short=True), Loader, transforms_samples=True),
        "loader.batches_cover_dataset",
        "transforms_samples=True",
    )


@pytest.mark.clause("loader.ranks_cover_dataset", "loader.ranks_yield_equal_batch_counts")
@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)
def test_uneven_loaders_under_a_process_group() -> None:
    from ..workers import fixtures

    def run(factory: Any, **options: Any) -> Report:
        target = Target(factory, Loader, shards=factory, world_size=2, **options)
        return target.run(time_budget_s=60, select=lambda spec: "distributed" in spec.needs)

    undeclared = run(fixtures.eval_loader)
    assert _violations(undeclared) == ["loader.ranks_yield_equal_batch_counts"], str(undeclared)
    declared = run(fixtures.eval_loader, uneven_shards=True)
    assert _violations(declared) == [], str(declared)
    counts = _result(declared, "loader.ranks_yield_equal_batch_counts")
    assert counts.status == "skipped"
    assert "uneven_shards=True" in counts.message
    assert _result(declared, "loader.ranks_cover_dataset").status == "passed", str(declared)
    _fails_only(
        run(fixtures.duplicating_eval_loader, uneven_shards=True),
        "loader.ranks_cover_dataset",
        "uneven_shards=True",
    )


# ----------------------------------------------------------------------------------------------------
# Every failure that a documented declaration resolves names it; every skip names what enables it.


class RandomSamples:
    """Random augmentation: the same index gives another sample each time."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> float:
        if not -8 <= index < 8:
            raise IndexError(index)
        return float(self.rng.random())


class Endless:
    """A stream that never ends (a replay buffer, a generator of synthetic data)."""

    def __iter__(self) -> Iterator[int]:
        index = 0
        while True:
            yield index
            index += 1


class ShufflesEachPass:
    """A stream that yields the same items in a new order on every pass (a shuffle buffer)."""

    def __init__(self) -> None:
        self.passes = 0

    def __iter__(self) -> Iterator[int]:
        self.passes += 1
        order: list[int] = np.random.default_rng(self.passes).permutation(12).tolist()
        return iter(order)


class CorruptSample:
    """ds[5] is a corrupt record that raises, by design of the data (error_index)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        if not -8 <= index < 8:
            raise IndexError(index)
        if index % 8 == 5:
            raise ValueError("record 5 is corrupt")
        return index


class GrowingPasses:
    """Each pass draws one index more than the last: passes of random length, by design."""

    def __init__(self) -> None:
        self.passes = 0

    def __iter__(self) -> Iterator[int]:
        self.passes += 1
        return iter(range(min(self.passes, 10)))


def _tokens(index: int) -> Any:
    import torch

    return torch.arange(1 + index % 3)


def _variable_length() -> list[Any]:
    return [_tokens(index) for index in range(6)]


def _pad(batch: list[Any]) -> Any:
    import torch

    return torch.nn.utils.rnn.pad_sequence(batch, batch_first=True)


def _module_with_an_unused_head() -> Any:
    import torch

    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(3, 3)
            self.unused_head = torch.nn.Linear(3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    return TwoHeads()


def _module_inputs() -> dict[str, Any]:
    import torch

    return {"example_inputs": (torch.ones(2, 3),)}


# (id, build the object, protocol, options, the clause, the declaration that resolves it, needs torch)
RESOLVED_BY_A_DECLARATION: list[tuple[str, Any, Any, dict[str, Any], str, dict[str, Any], bool]] = [
    ("replacement", ClassBalanced, Sampler, {"data_source_len": 10}, "sampler.each_index_once",
     {"replacement": True}, False),
    ("uneven_shards", lambda: _eval_shards(0, 3), Sampler,
     {"world_size": 3, "shards": _eval_shards, "data_source_len": 10}, "sampler.shards_have_equal_length",
     {"uneven_shards": True}, False),
    ("max_padding", lambda: PaddedShard(0, 2), Sampler,
     {"world_size": 2, "shards": _padded, "data_source_len": 10}, "sampler.shards_cover_dataset",
     {"max_padding": 6}, False),
    ("reshuffles_each_pass", SharedEpochReshuffle, Sampler, {"data_source_len": 12},
     "sampler.same_state_same_order", {"reshuffles_each_pass": True}, False),
    ("reshuffles_each_pass", ReshufflingLoader, Loader, {"ordered": True}, "loader.each_iter_is_new_epoch",
     {"reshuffles_each_pass": True}, False),
    ("deterministic", GrowingPasses, Sampler, {}, "sampler.each_iter_is_new_pass",
     {"deterministic": False}, False),
    ("transforms_samples", lambda: renaming_collate, CollateFn, {"example_inputs": SAMPLES},
     "collate_fn.batch_mirrors_sample_structure", {"transforms_samples": True}, False),
    ("transforms_samples", lambda: packing_collate, CollateFn, {"example_inputs": SAMPLES},
     "collate_fn.batch_has_one_row_per_sample", {"transforms_samples": True}, False),
    ("transforms_samples", PackingLoader, Loader, {}, "loader.batches_cover_dataset",
     {"transforms_samples": True}, False),
    ("deterministic", RandomSamples, MapDataset, {}, "map_dataset.getitem_is_deterministic",
     {"deterministic": False}, False),
    ("error_index", CorruptSample, MapDataset, {}, "map_dataset.getitem_in_range_succeeds",
     {"error_index": 5}, False),
    ("infinite", Endless, IterableDataset, {"time_budget_s": 0.5}, "iterable_dataset.iteration_ends",
     {"infinite": True}, False),
    ("ordered", ShufflesEachPass, IterableDataset, {}, "iterable_dataset.new_iter_starts_new_pass",
     {"ordered": False}, False),
    ("collate_fn", _variable_length, MapDataset, {}, "map_dataset.samples_collate",
     {"collate_fn": _pad}, True),
    ("unused_parameters", _module_with_an_unused_head, Module, "module inputs",
     "module.backward_reaches_parameters", {"unused_parameters": True}, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "protocol", "options", "check_id", "declaration", "needs_torch"),
    [pytest.param(*case[1:], id=f"{case[4]}-{case[0]}") for case in RESOLVED_BY_A_DECLARATION],
)
def test_a_failure_that_a_declaration_resolves_names_it(
    build: Any, protocol: Any, options: Any, check_id: str, declaration: dict[str, Any], needs_torch: bool
) -> None:
    if needs_torch and not HAS_TORCH:
        pytest.skip(NO_TORCH_REASON)
    if options == "module inputs":
        options = _module_inputs()
    options = dict(options)
    budget = options.pop("time_budget_s", 30)
    ((name, value),) = declaration.items()
    named = f"{name}={value}" if isinstance(value, bool) else f"{name}="  # a flag, or any value
    report = check(build(), protocol, time_budget_s=budget, **options)
    result = _result(report, check_id)
    assert result.status == "failed", str(report)
    assert named in result.message, result.message
    declared = check(build(), protocol, time_budget_s=budget, **options, **declaration)
    assert _result(declared, check_id).status != "failed", str(declared)


class NoBatchSettings:
    """A loader over a dataset that exposes no batch_size or drop_last."""

    def __init__(self) -> None:
        self.dataset = list(range(8))

    def __iter__(self) -> Iterator[list[int]]:
        return iter([self.dataset[i : i + 4] for i in range(0, 8, 4)])


@pytest.mark.clause("loader.batches_cover_dataset", "loader.batches_match_collate")
def test_a_skip_names_what_would_enable_the_clause() -> None:
    report = check(NoBatchSettings(), Loader)
    cover = _result(report, "loader.batches_cover_dataset")
    assert cover.status == "skipped"
    assert "batch_size" in cover.message
    assert "drop_last as attributes" in cover.message
    matched = _result(report, "loader.batches_match_collate")
    assert matched.status == "skipped"
    assert "ordered=True" in matched.message
