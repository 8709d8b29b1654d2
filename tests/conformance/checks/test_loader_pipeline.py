"""The data-pipeline clauses of loaders: functions that workers receive pickled, len(loader) over a
sized stream with workers, and pin_memory of custom batch types."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import pytest

from torchcontract.conformance import CheckResult, Report, check
from torchcontract.protocols import CollateFn, Loader

from ...conftest import HAS_TORCH, NO_TORCH_REASON

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)

if HAS_TORCH:
    import torch
    from torch.utils import data as tud

    from ..mutants.torch_mutants import SizedShardedStream, forgetful_batch
    from ..torch_cases import BatchAlignedStream, ShardedStream, Stream, _first_two, tensors


def _result(report: Report, check_id: str) -> CheckResult:
    return next(result for result in report.results if result.check_id == check_id)


def _check(obj: object, protocol: type[Any], **kwargs: Any) -> Report:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pin_memory=True without an accelerator
        return check(obj, protocol, **kwargs)


# -- len(loader) over a sized stream with workers ---------------------------------------------------


@pytest.mark.clause("loader.len_matches_batch_count")
def test_sized_stream_with_workers_is_checked_not_skipped() -> None:
    # Before: skipped ("len(loader) is documented as an estimate") although len(loader) == 3 and the
    # epoch has 4 batches (10 items, batch_size=4, 2 workers with 5 items each).
    loader = tud.DataLoader(SizedShardedStream(10), batch_size=4, num_workers=2)
    result = _result(_check(loader, Loader), "loader.len_matches_batch_count")
    assert result.status == "failed", result
    assert "len(loader) == 3 but an epoch yielded 4 batches" in result.message


@pytest.mark.clause("loader.len_matches_batch_count")
@pytest.mark.parametrize(
    "build",
    [
        lambda: tud.DataLoader(BatchAlignedStream(10, 4), batch_size=4, num_workers=2),
        lambda: tud.DataLoader(ShardedStream(10), batch_size=4),
        lambda: tud.DataLoader(SizedShardedStream(12), batch_size=3, num_workers=2),  # 6 each: whole batches
    ],
    ids=["batch_aligned", "one_process", "divisible"],
)
def test_sized_streams_whose_len_holds_pass(build: Any) -> None:
    assert _result(_check(build(), Loader), "loader.len_matches_batch_count").status == "passed"


@pytest.mark.clause("loader.len_matches_batch_count")
def test_unsized_stream_is_skipped() -> None:
    loader = tud.DataLoader(Stream(10), batch_size=4, num_workers=2)
    result = _result(_check(loader, Loader), "loader.len_matches_batch_count")
    assert result.status == "skipped", result
    assert "unsized" in result.message, result


# -- functions that workers receive pickled ----------------------------------------------------------


class _ScaledCollate:
    """A collate whose pickle drops its scale (a __getstate__ that keeps only what it thinks it needs)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, samples: list[Any]) -> Any:
        return torch.stack([s[0] for s in samples]) * self.scale

    def __getstate__(self) -> dict[str, Any]:
        return {"scale": 1.0}


@pytest.mark.clause("collate_fn.pickle_round_trip", "loader.worker_functions_pickle")
def test_unpickled_collate_that_differs_fails() -> None:
    loader = tud.DataLoader(tensors(10), batch_size=4, num_workers=2, collate_fn=_ScaledCollate(2.0))
    result = _result(_check(loader, Loader), "loader.worker_functions_pickle")
    assert result.status == "failed", result
    assert (
        "pickle.loads(pickle.dumps(loader.collate_fn))([loader.dataset[0], loader.dataset[1]])"
        in result.message
    )
    collate = _result(_check(_ScaledCollate(2.0), CollateFn, example_inputs=list(tensors(4))),
                      "collate_fn.pickle_round_trip")  # fmt: skip
    assert collate.status == "failed", collate
    assert "differs from collate(samples)" in collate.message, collate


@pytest.mark.clause("loader.worker_functions_pickle")
@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"num_workers": 0}, "num_workers=0"),
        ({"num_workers": 2, "multiprocessing_context": "fork"}, "multiprocessing_context='fork'"),
    ],
)
def test_lambda_collate_without_pickling_workers_is_skipped(kwargs: dict[str, Any], reason: str) -> None:
    loader = tud.DataLoader(tensors(10), batch_size=4, collate_fn=lambda b: tud.default_collate(b), **kwargs)
    result = _result(_check(loader, Loader), "loader.worker_functions_pickle")
    assert result.status == "skipped", result
    assert reason in result.message, result


@pytest.mark.clause("loader.worker_functions_pickle")
def test_module_level_functions_pass_and_are_compared() -> None:
    loader = tud.DataLoader(tensors(10), batch_size=4, num_workers=2, collate_fn=_first_two)
    assert _result(_check(loader, Loader), "loader.worker_functions_pickle").status == "passed"


# -- pin_memory of custom batch types ------------------------------------------------------------


def _nested_forgetful(samples: list[Any]) -> dict[str, Any]:
    return {"batch": forgetful_batch(samples), "ids": list(range(len(samples)))}


@pytest.mark.clause("collate_fn.pin_memory_returns_batch")
def test_nested_custom_batch_is_named_by_its_path() -> None:
    inputs = [(torch.zeros(3), torch.tensor(i)) for i in range(4)]
    report = _check(_nested_forgetful, CollateFn, example_inputs=inputs, transforms_samples=True)
    result = _result(report, "collate_fn.pin_memory_returns_batch")
    assert result.status == "failed", result
    assert "collate(samples)['batch'].pin_memory() returned None" in result.message
    assert "in place of collate(samples)['batch'] in every batch" in result.message


@dataclass
class _ToDict:
    features: torch.Tensor

    def pin_memory(self) -> dict[str, Any]:
        return {"features": self.features.pin_memory()}


@pytest.mark.clause("collate_fn.pin_memory_returns_batch")
def test_pin_memory_that_changes_the_type_fails() -> None:
    inputs = [torch.zeros(3) for _ in range(4)]
    report = _check(
        lambda s: _ToDict(torch.stack(s)), CollateFn, example_inputs=inputs, transforms_samples=True
    )
    result = _result(report, "collate_fn.pin_memory_returns_batch")
    assert result.status == "failed", result
    assert "expected a _ToDict" in result.message, result


def test_the_stand_in_for_pin_memory_is_removed_after_the_check() -> None:
    inputs = [(torch.zeros(3), torch.tensor(i)) for i in range(4)]
    before = torch.Tensor.pin_memory
    _check(forgetful_batch, CollateFn, example_inputs=inputs, transforms_samples=True)
    assert torch.Tensor.pin_memory is before
    assert "pin_memory" not in vars(torch.Tensor)


@pytest.mark.clause("loader.pin_memory_returns_batch")
def test_loader_without_pin_memory_is_skipped() -> None:
    loader = tud.DataLoader(tensors(10), batch_size=4, collate_fn=forgetful_batch)
    result = _result(_check(loader, Loader), "loader.pin_memory_returns_batch")
    assert result.status == "skipped", result
    assert "pin_memory is not True" in result.message, result


@pytest.mark.clause("loader.pin_memory_returns_batch")
def test_with_an_accelerator_the_loader_clause_pins_a_batch_collated_anew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With an accelerator torch has pinned the epoch's batches already (a forgetful pin_memory made
    them None): the clause collates the dataset's first samples itself. No GPU here, so only the
    loader's choice is patched; Tensor.pin_memory is still stood in for by clone."""
    from torchcontract.conformance.checks import loader as loader_checks

    monkeypatch.setattr(loader_checks, "accelerator_available", lambda: True)
    loader = tud.DataLoader(tensors(10), batch_size=4, pin_memory=True, collate_fn=forgetful_batch)
    result = _result(_check(loader, Loader), "loader.pin_memory_returns_batch")
    assert result.status == "failed", result
    assert (
        "loader.collate_fn([loader.dataset[0], loader.dataset[1]]).pin_memory() returned None"
        in result.message
    )
