"""Regression tests: ``check()`` leaves nothing lasting in the object it checked.

Each object here is written for the test: a correct object that a clause used to fail (or whose state
``check()`` used to change), or one the clause must still fail.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

import torch
from torch import nn

from torchcontract.conformance import Report, Target, check
from torchcontract.protocols import CallableModule, CollateFn, IterableDataset, MapDataset, Module


def _result(report: Report, check_id: str) -> tuple[str, str]:
    found = next(r for r in report.results if r.check_id == check_id)
    return found.status, found.message


def _failed(report: Report) -> list[str]:
    return [r.check_id for r in report.results if r.status == "failed"]


def _without_workers(target: Target) -> Report:
    # workers.py (another file's clauses) loads through DataLoader in the calling process as well.
    return target.run(select=lambda c: "workers" not in c.needs)


def _inputs() -> tuple[torch.Tensor]:
    return (torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),)


class CountsCalls(nn.Module):
    """A running metric: a call counter (plain attribute) and a list of seen input shapes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)
        self.calls = 0
        self.seen: list[tuple[int, ...]] = []
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.seen.append(tuple(x.shape))
        self.count += 1
        out: torch.Tensor = self.linear(x)
        return out


class RunningMean(nn.Module):
    """Updates a running mean of its inputs in train mode, like BatchNorm's running statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.mean.mul_(0.9).add_(0.1 * x.mean(0))
        return x - self.mean


def _same_state(one: nn.Module, two: nn.Module) -> None:
    assert one.state_dict().keys() == two.state_dict().keys()
    for key, value in one.state_dict().items():
        assert torch.equal(value, two.state_dict()[key]), key
    assert [m.training for m in one.modules()] == [m.training for m in two.modules()]


def test_a_call_counter_is_left_as_it_was() -> None:
    m = CountsCalls()
    parameters = list(m.parameters())
    before = copy.deepcopy(m)
    report = check(m, Module, example_inputs=_inputs())
    assert report.passed
    assert m.calls == 0
    assert m.seen == []
    assert int(m.count) == 0
    _same_state(m, before)
    assert all(a is b for a, b in zip(m.parameters(), parameters, strict=True))  # identities kept
    assert torch.equal(m(*_inputs()), before(*_inputs()))


@pytest.mark.parametrize("protocol", [Module, CallableModule])
def test_running_statistics_in_train_mode_are_left_as_they_were(protocol: type[Any]) -> None:
    m = nn.Sequential(RunningMean(), nn.Linear(3, 4), nn.BatchNorm1d(4)).train()
    before = copy.deepcopy(m)
    check(m, protocol, example_inputs=_inputs())
    _same_state(m, before)
    assert m.training
    assert m[2].training


def test_every_submodule_comes_back_in_its_own_mode() -> None:
    # A model in train mode with a frozen BatchNorm: m.train() alone would switch the BatchNorm on.
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).train()
    m[1].eval()
    check(m, Module, example_inputs=_inputs(), deterministic=False)
    assert [sub.training for sub in m.modules()] == [True, True, False, True]


class MemoisingPoints:
    """Memoises samples in a dict; a sample is drawn on first access (then it stays the same)."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.cache: dict[int, np.ndarray[Any, Any]] = {}

    def __len__(self) -> int:
        return 30

    def __getitem__(self, index: int) -> np.ndarray[Any, Any]:
        index = int(index)
        if not 0 <= index < 30:
            raise IndexError(index)
        if index not in self.cache:
            self.cache[index] = self.rng.normal(size=2)
        return self.cache[index].copy()


def test_a_memoising_map_dataset_behaves_afterwards_as_a_copy_taken_before() -> None:
    ds = MemoisingPoints()
    before = copy.deepcopy(ds)
    report = _without_workers(Target(ds, MapDataset))
    assert _failed(report) == []
    assert ds.cache == {}
    order = [29, 0, 7, 3]  # not the order the checks used
    assert all(np.array_equal(ds[i], before[i]) for i in order)


class CountsPasses:
    """Each pass is shuffled by the number of passes so far (an epoch counter)."""

    def __init__(self) -> None:
        self.passes = 0

    def __iter__(self) -> Iterator[int]:
        self.passes += 1
        yield from (int(i) for i in np.random.default_rng(self.passes).permutation(5))


def test_a_stream_that_counts_passes_starts_afterwards_where_a_copy_taken_before_does() -> None:
    ds = CountsPasses()
    before = copy.deepcopy(ds)
    report = check(ds, IterableDataset, deterministic=False)
    assert _failed(report) == []
    assert ds.passes == 0
    assert list(ds) == list(before)


class CountingCollate:
    def __init__(self) -> None:
        self.batches = 0
        self.sizes: list[int] = []

    def __call__(self, samples: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        self.batches += 1
        self.sizes.append(len(samples))
        return np.stack(samples)


def _closure_collate() -> Any:
    vocabulary: dict[str, int] = {}
    calls = 0

    def collate(samples: list[str]) -> list[int]:
        nonlocal calls
        calls += 1
        return [vocabulary.setdefault(word, len(vocabulary)) for word in samples]

    return collate


def test_collate_functions_with_state_are_left_as_they_were() -> None:
    collate = CountingCollate()
    samples = [np.ones(2), np.zeros(2), np.ones(2)]
    assert check(collate, CollateFn, example_inputs=samples).passed
    assert collate.batches == 0
    assert collate.sizes == []

    closure = _closure_collate()
    before = copy.deepcopy(closure)  # a function deep-copies to itself: compare through the cells
    check(closure, CollateFn, example_inputs=["b", "a", "b"])
    cells = {
        name: cell.cell_contents
        for name, cell in zip(closure.__code__.co_freevars, closure.__closure__ or (), strict=True)
    }
    assert cells == {"calls": 0, "vocabulary": {}}
    assert before is closure


class ReadOnlyViews:
    """Returns read-only NumPy views of its storage: cannot be corrupted in place."""

    def __init__(self) -> None:
        self.data = np.arange(12.0).reshape(4, 3)
        self.data.setflags(write=False)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> np.ndarray[Any, Any]:
        if not 0 <= index < 4:
            raise IndexError(index)
        return self.data[index]


@pytest.mark.clause("map_dataset.samples_are_independent_copies")
def test_a_read_only_view_is_not_reported_and_not_written() -> None:
    ds = ReadOnlyViews()
    status, _ = _result(check(ds, MapDataset), "map_dataset.samples_are_independent_copies")
    assert status == "passed"


_MEMMAP_SCRIPT = """
import sys, warnings
import numpy as np, torch
from torchcontract.conformance import check
from torchcontract.protocols import MapDataset

class OverMemmap:
    def __init__(self, path):
        self.data = np.memmap(path, dtype=np.float32, mode="r", shape=(6, 4))
    def __len__(self):
        return 6
    def __getitem__(self, index):
        if not 0 <= index < 6:
            raise IndexError(index)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns that the array is not writable
            return torch.from_numpy(self.data[index])

report = check(OverMemmap(sys.argv[1]), MapDataset)
result = next(r for r in report.results if r.check_id == "map_dataset.samples_are_independent_copies")
print(result.status)
print(result.message)
"""


def test_a_tensor_over_a_read_only_memory_map_is_never_written(tmp_path: Path) -> None:
    # Before: the check added 1 to the sample in place; over a memory map opened with mode "r" that
    # is a segmentation fault, so the check runs in a subprocess.
    path = tmp_path / "data.bin"
    np.arange(24, dtype=np.float32).tofile(path)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_MEMMAP_SCRIPT), str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    status, message = done.stdout.split("\n", 1)
    assert status == "failed"  # the samples are views of the map: an in-place transform would crash
    assert "share memory" in message
