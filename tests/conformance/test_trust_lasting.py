"""Regression tests: declarations honoured, nothing lasting, keyword arguments, index past the end.

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


def _inputs() -> tuple[torch.Tensor]:
    return (torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),)


# -- 1. deterministic=False is honoured -----------------------------------------------------------


class NoisyLinear(nn.Module):
    """Correct, and random in eval mode too: noise added in forward (a sampling layer)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x)
        return out + torch.randn_like(out)


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


def _without_workers(target: Target) -> Report:
    # workers.py (another file's clauses) loads through DataLoader in the calling process as well.
    return target.run(select=lambda c: "workers" not in c.needs)


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


def test_an_unordered_stream_is_compared_as_a_multiset() -> None:
    # Before: ordered=False was ignored and the two passes compared position by position.
    assert _failed(check(ShufflesEachPass(), IterableDataset, ordered=False)) == []
    report = check(ShufflesEachPass(shift=100), IterableDataset, ordered=False)
    assert _failed(report) == ["iterable_dataset.new_iter_starts_new_pass"]
    assert "ordered=False" in _result(report, "iterable_dataset.new_iter_starts_new_pass")[1]


# -- 2. nothing lasting -------------------------------------------------------------------------------


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


# -- 3. keyword-only arguments ----------------------------------------------------------------------


class ScaledLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor, *, scale: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x) * scale
        return out


class ScalesKeywordInPlace(ScaledLinear):
    def forward(self, x: torch.Tensor, *, scale: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x) * scale.mul_(2)
        return out


def test_a_module_with_keyword_only_arguments_is_checked_with_example_kwargs() -> None:
    kwargs = {"scale": torch.tensor(2.0)}
    assert "callable_module.call_returns" in _failed(check(ScaledLinear(), Module, example_inputs=_inputs()))
    report = check(ScaledLinear(), Module, example_inputs=_inputs(), example_kwargs=kwargs)
    assert _failed(report) == []
    target = Target(ScaledLinear(), CallableModule, example_inputs=_inputs(), example_kwargs=kwargs)
    assert target.run().passed
    assert torch.equal(kwargs["scale"], torch.tensor(2.0))


def test_example_kwargs_reach_the_messages_and_the_input_check() -> None:
    report = check(
        ScalesKeywordInPlace(), Module, example_inputs=_inputs(), example_kwargs={"scale": torch.tensor(2.0)}
    )
    assert "callable_module.call_preserves_inputs" in _failed(report)
    message = _result(report, "callable_module.call_preserves_inputs")[1]
    assert "copy.deepcopy(m)(*inputs, **kwargs)" in message


@pytest.mark.parametrize("bad", [[("scale", 1)], {1: 2}, "scale"])
def test_example_kwargs_must_be_a_mapping_with_str_keys(bad: Any) -> None:
    with pytest.raises(TypeError, match="example_kwargs"):
        Target(ScaledLinear(), Module, example_inputs=_inputs(), example_kwargs=bad)


def test_example_kwargs_are_for_modules_only() -> None:
    with pytest.raises(TypeError, match="example_kwargs"):
        check([1, 2], MapDataset, example_kwargs={"a": 1})


# -- 4. index past the end, for a dataset with its own __iter__ ----------------------------------------


class DictBackedWithIter:
    """Samples in a dict: KeyError past the end, but its own __iter__, so iteration ends."""

    def __init__(self) -> None:
        self.samples = {i: float(i) for i in range(5)}

    def __len__(self) -> int:
        return 5

    def __getitem__(self, index: int) -> float:
        return self.samples[int(index)]

    def __iter__(self) -> Iterator[float]:
        return iter([self.samples[i] for i in range(5)])


class UndercountsWithIter(DictBackedWithIter):
    def __init__(self) -> None:
        super().__init__()
        self.samples[5] = 5.0  # len says 5: the sixth sample is never loaded by a DataLoader


def test_with_its_own_iter_another_error_past_the_end_is_a_note() -> None:
    status, message = _result(
        check(DictBackedWithIter(), MapDataset), "map_dataset.index_past_end_raises_index_error"
    )
    assert status == "passed"
    assert "KeyError" in message
    assert "own __iter__" in message


def test_with_its_own_iter_a_sample_past_the_end_fails_for_the_samplers_reason() -> None:
    status, message = _result(
        check(UndercountsWithIter(), MapDataset), "map_dataset.index_past_end_raises_index_error"
    )
    assert status == "failed"
    assert "range(len(ds))" in message
    assert "legacy" not in message
