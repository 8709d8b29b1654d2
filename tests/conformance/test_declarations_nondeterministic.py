"""Regression tests: ``deterministic=False`` and ``ordered=False`` are honoured.

A random module, a random map-style dataset and a random stream, declared ``deterministic=False``,
pass every required clause (the clauses that would compare two random outputs skip, or compare what
stays fixed), while a module whose copy shares its parameters still fails
``module.deepcopy_is_independent``; a stream declared ``ordered=False`` has its passes compared as
multisets, and one whose second pass yields other items still fails. Each object here is written for
the test.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

import torch
from torch import nn

from torchcontract.conformance import Report, check
from torchcontract.protocols import IterableDataset, MapDataset, Module


def _result(report: Report, check_id: str) -> tuple[str, str]:
    found = next(r for r in report.results if r.check_id == check_id)
    return found.status, found.message


def _failed(report: Report) -> list[str]:
    return [r.check_id for r in report.results if r.status == "failed"]


def _inputs() -> tuple[torch.Tensor]:
    return (torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),)


class NoisyLinear(nn.Module):
    """Correct, and random in eval mode too: noise added in forward (a sampling layer)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x)
        return out + torch.randn_like(out)


@pytest.mark.clause("callable_module.eval_is_deterministic")
def test_a_stochastic_module_declared_non_deterministic_passes_every_required_clause() -> None:
    # Before: deepcopy_is_independent and state_dict_round_trip compared two random outputs.
    report = check(NoisyLinear(), Module, example_inputs=_inputs(), deterministic=False)
    assert _failed(report) == []
    assert report.passed
    status, message = _result(report, "callable_module.eval_is_deterministic")
    assert status == "skipped"
    assert "deterministic=False" in message


class SharesParametersOnCopy(NoisyLinear):
    def __deepcopy__(self, memo: dict[int, Any]) -> SharesParametersOnCopy:
        clone = copy.copy(self)
        clone.__dict__ = dict(self.__dict__)
        return clone


@pytest.mark.clause("module.deepcopy_is_independent")
def test_deepcopy_is_still_checked_for_a_non_deterministic_module() -> None:
    report = check(SharesParametersOnCopy(), Module, example_inputs=_inputs(), deterministic=False)
    assert "module.deepcopy_is_independent" in _failed(report)


class RandomPoints:
    """A correct random map dataset: each ds[i] draws from NumPy's global generator (which torch
    reseeds in each worker; a generator made in __init__ would draw alike in every worker)."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> np.ndarray[Any, Any]:
        if not 0 <= index < 10:
            raise IndexError(index)
        return np.random.normal(size=3) + index


class RandomStream:
    """A correct random stream of a fixed length."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __iter__(self) -> Iterator[np.ndarray[Any, Any]]:
        for _ in range(8):
            yield self.rng.normal(size=2)


def test_a_random_map_dataset_declared_non_deterministic_passes() -> None:
    assert _failed(check(RandomPoints(), MapDataset, deterministic=False)) == []


def test_a_random_stream_declared_non_deterministic_passes_and_is_left_as_it_was() -> None:
    ds = RandomStream()
    before = copy.deepcopy(ds)
    report = check(ds, IterableDataset, deterministic=False)
    assert _failed(report) == []
    assert all(np.array_equal(a, b) for a, b in zip(ds, before, strict=True))


class ShufflesEachPass:
    """The same items in a new order each pass: declared ordered=False (but deterministic)."""

    def __init__(self, shift: int = 0) -> None:
        self.passes = 0
        self.shift = shift

    def __iter__(self) -> Iterator[int]:
        self.passes += 1
        order = np.random.default_rng(self.passes).permutation(6)
        for item in order:
            yield int(item) + self.shift * self.passes


@pytest.mark.clause("iterable_dataset.new_iter_starts_new_pass")
def test_an_unordered_stream_is_compared_as_a_multiset() -> None:
    # Before: ordered=False was ignored and the two passes compared position by position.
    assert _failed(check(ShufflesEachPass(), IterableDataset, ordered=False)) == []
    report = check(ShufflesEachPass(shift=100), IterableDataset, ordered=False)
    assert _failed(report) == ["iterable_dataset.new_iter_starts_new_pass"]
    assert "ordered=False" in _result(report, "iterable_dataset.new_iter_starts_new_pass")[1]
