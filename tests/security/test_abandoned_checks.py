"""After ``check()`` returns, a check that was abandoned (a call into the object outlived the time
budget) touches nothing: when the hung call finally returns, torchcontract calls nothing more on the
object and changes no global state (it restored the caller's global RNG seconds after ``check()``
had returned, and went on driving the object)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from torchcontract.conformance import check
from torchcontract.protocols import MapDataset, Sampler

BUDGET_S = 1.0
# Longer than the budget and the grace the engine gives a check, so that the call is abandoned.
HANG_S = BUDGET_S + 3.0
# How long after check() returned the object and the RNG are watched: past the hung call's return.
WATCH_S = HANG_S + 1.5


class HangsOnceSampler:
    """A correct sampler whose ``__iter__`` hangs once, on its ``hang_on``-th call, then returns;
    ``copyable=False``: one that refuses deep copies (the checks then iterate it and restore it)."""

    def __init__(self, hang_on: int, *, copyable: bool = True) -> None:
        self.hang_on = hang_on
        self.copyable = copyable
        self.epoch = 0
        self.touched: list[tuple[str, float]] = []
        self.calls = [0]  # shared by deep copies: the checks iterate copies

    def __len__(self) -> int:
        self.touched.append(("len", time.monotonic()))
        return 8

    def __iter__(self) -> Iterator[int]:
        self.touched.append(("iter", time.monotonic()))
        self.calls[0] += 1
        if self.calls[0] == self.hang_on:
            time.sleep(HANG_S)
        return self._indices()

    def _indices(self) -> Iterator[int]:
        for index in range(8):
            self.touched.append(("next", time.monotonic()))
            yield index

    def __deepcopy__(self, memo: dict[int, Any]) -> HangsOnceSampler:
        if not self.copyable:
            raise TypeError("HangsOnceSampler(copyable=False) cannot be copied")
        copied = HangsOnceSampler(self.hang_on)
        copied.touched, copied.calls = self.touched, self.calls  # one log for the sampler and its copies
        return copied


def _global_rng() -> tuple[Any, ...]:
    return (random.getstate(), np.random.get_state()[1].tobytes())


def _watch_after(returned: float, touched: list[tuple[str, float]]) -> tuple[list[str], bool]:
    """What touched the object after ``returned``, and whether the caller's RNG stayed its own, over
    :data:`WATCH_S` seconds in which the caller draws from its RNG as it pleases."""
    random.random()
    np.random.random()
    mine = _global_rng()
    time.sleep(max(0.0, returned + WATCH_S - time.monotonic()))
    later = [what for what, when in touched if when > returned]
    return later, _global_rng() == mine


@pytest.mark.slow
@pytest.mark.parametrize(
    ("hang_on", "copyable"),
    # The first pass, each_iter_is_new_pass, same_state_same_order (on copies: it restores the global
    # RNG between its two passes); and a sampler that cannot be copied, restored after each pass.
    [(1, True), (2, True), (4, True), (1, False), (2, False), (3, False)],
    ids=["first-pass", "new-pass", "same-order", "first-pass-restored", "new-pass-restored", "restored"],
)
def test_a_call_that_hangs_once_is_abandoned_and_nothing_is_touched_after_check_returns(
    hang_on: int, copyable: bool
) -> None:
    sampler = HangsOnceSampler(hang_on, copyable=copyable)
    random.seed(1)
    np.random.seed(1)
    before = _global_rng()
    report = check(sampler, Sampler, time_budget_s=BUDGET_S)
    returned = time.monotonic()
    assert _global_rng() == before
    assert any("did not return within the time budget" in r.message for r in report.results), report
    sampler.epoch = 5  # the caller goes on with its object
    later, rng_kept = _watch_after(returned, sampler.touched)
    assert later == [], f"the object was called after check() returned: {later}"
    assert rng_kept, "the caller's global RNG was changed after check() returned"
    assert sampler.epoch == 5, "the object's attributes were put back after check() returned"


class HangsOnceDataset:
    """A correct map-style dataset whose ``ds[3]`` hangs once (in a worker clause's thread too)."""

    def __init__(self) -> None:
        self.touched: list[tuple[str, float]] = []
        self.hung = [False]

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        self.touched.append((f"ds[{index}]", time.monotonic()))
        if not -8 <= index < 8:
            raise IndexError(index)
        if index == 3 and not self.hung[0]:
            self.hung[0] = True
            time.sleep(HANG_S)
        return index % 8


@pytest.mark.slow
def test_a_dataset_call_that_hangs_once_is_not_followed_by_any_other() -> None:
    dataset = HangsOnceDataset()
    report = check(dataset, MapDataset, time_budget_s=BUDGET_S)
    returned = time.monotonic()
    assert any("ds[3] did not return within the time budget" in r.message for r in report.results), report
    later, rng_kept = _watch_after(returned, dataset.touched)
    assert later == [], f"the object was called after check() returned: {later}"
    assert rng_kept
