"""The time budget bounds the object's calls: a pass it cuts short is never compared as a result, and
torchcontract's own comparisons are neither charged to it nor left unbounded (SPEC.md, "Time")."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from torchcontract.conformance import CheckResult, Report, Target, check
from torchcontract.conformance._core import context as _context
from torchcontract.conformance._core import session as _session
from torchcontract.conformance._core.errors import GRACE_S
from torchcontract.conformance._runtime import calls as _calls
from torchcontract.conformance._values import equality as _equality
from torchcontract.protocols import IterableDataset, Loader, MapDataset

from ..conformance.reports import check_then_release, statuses


def _result(report: Report, check_id: str) -> CheckResult:
    (found,) = [result for result in report.results if result.check_id == check_id]
    return found


class SlowAfterFirstEpoch:
    """A loader of 3 batches per epoch whose every epoch after its first takes 0.6 of the budget per
    batch: each call returns, but a second whole epoch does not fit in one check."""

    def __init__(self, seconds_per_batch: float) -> None:
        self.seconds_per_batch = seconds_per_batch
        self.epochs_started = 0

    def __iter__(self) -> Iterator[list[int]]:
        self.epochs_started += 1
        slow = self.epochs_started > 1
        for k in range(3):
            if slow:
                time.sleep(self.seconds_per_batch)
            yield [k, k]


def test_an_epoch_cut_short_by_the_budget_is_unverified_not_a_short_epoch() -> None:
    budget = 1.0
    report = check(SlowAfterFirstEpoch(0.6 * budget), Loader, time_budget_s=budget)
    result = _result(report, "loader.each_iter_is_new_epoch")
    assert result.status == "unverified", result
    assert "cut short" in result.message, result.message
    assert _result(report, "loader.epoch_ends").status == "passed"


class SlowAfterFirstPass:
    """A stream of 3 items whose passes after the first take 0.6 of the budget per item."""

    def __init__(self, seconds_per_item: float) -> None:
        self.seconds_per_item = seconds_per_item
        self.passes = 0

    def __iter__(self) -> Iterator[int]:
        self.passes += 1
        slow = self.passes > 1
        for k in range(3):
            if slow:
                time.sleep(self.seconds_per_item)
            yield k


def test_a_stream_pass_cut_short_is_unverified_not_a_short_pass() -> None:
    budget = 1.0
    report = check(SlowAfterFirstPass(0.6 * budget), IterableDataset, time_budget_s=budget)
    # Each check restores the pass counter: the clause's own second pass is the slow one.
    result = _result(report, "iterable_dataset.new_iter_starts_new_pass")
    assert result.status == "unverified", result
    assert "cut short" in result.message, result.message


# Built once: the dataset's own calls (a C-speed dict copy) cost little, so the check is about the
# comparisons of its samples.
_KEYS = {f"feature_{j}": f"value {j}" for j in range(200_000)}


class ManyKeys:
    """A map-style dataset whose sample is a dict of 200,000 keys."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -4 <= index < 4:
            raise IndexError(index)
        sample: dict[str, Any] = dict(_KEYS)
        sample["index"] = int(index) % 4
        return sample


def test_a_sample_of_200000_keys_is_compared_in_proportion_to_its_size() -> None:
    report = check(ManyKeys(), MapDataset, time_budget_s=10)
    problems = [r for r in report.results if r.status in ("failed", "error", "unverified")]
    assert not problems, report
    assert report.passed


class BudgetClock:
    """``time.monotonic`` of the engine's budget code (``calls``, ``context``, ``session``), standing still
    but for what a test adds: the object's calls cost nothing on it, so that no verdict of the test
    depends on the machine's speed or load.

    It also says when the thread that waits for a check (``session._wait_for_check``, the watchdog)
    reads it: a test moves the clock only once the watchdog has set its deadline and is waiting, and
    then waits (in real time) until the watchdog has looked at the clock again."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.changed = threading.Condition()
        self.watched: threading.Thread | None = None  # the check's thread the watchdog waits for
        self.watchdog_reads = 0  # the watchdog's reads of the clock while it waits for ``watched``

    def monotonic(self) -> float:
        return self.now

    def watchdog_monotonic(self) -> float:
        with self.changed:
            self.watchdog_reads += 1
            self.changed.notify_all()
            return self.now

    def watching(self, worker: threading.Thread) -> None:
        with self.changed:
            self.watched, self.watchdog_reads = worker, 0
            self.changed.notify_all()

    def wait_for(self, condition: Any, what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(condition, timeout=120):
                raise AssertionError(f"the test's clock never saw {what}")


def _run_on(clock: BudgetClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the budget code of the engine on ``clock``."""
    standing = SimpleNamespace(monotonic=clock.monotonic, perf_counter=time.perf_counter)
    monkeypatch.setattr(_calls, "time", standing)
    monkeypatch.setattr(_context, "time", standing)
    monkeypatch.setattr(
        _session, "time", SimpleNamespace(monotonic=clock.watchdog_monotonic, perf_counter=time.perf_counter)
    )
    waiting = _session._wait_for_check

    def watched_wait(worker: threading.Thread, budget_s: float) -> None:
        clock.watching(worker)
        waiting(worker, budget_s)

    monkeypatch.setattr(_session, "_wait_for_check", watched_wait)


def test_our_own_comparisons_are_not_charged_to_the_objects_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A comparison of ours that takes longer than the budget and the engine's grace period together
    (on the budget's clock: the first comparison in a check's thread moves it on) still decides its
    clause: the budget bounds the object's calls alone. Were the comparison charged, the watchdog
    would find the check past its deadline when it next looks, and give up on it as hung."""
    clock = BudgetClock()
    _run_on(clock, monkeypatch)
    original = _equality._Comparer.diff
    caller = threading.current_thread()
    moved: list[float] = []

    def slow_diff(self: Any, *args: Any, **kwargs: Any) -> str | None:
        me = threading.current_thread()
        if not moved and me is not caller:
            # The watchdog has set its deadline and computed what it waits (two reads): then the
            # comparison takes budget + grace + 1 s, and lasts until the watchdog has looked again.
            clock.wait_for(lambda: clock.watched is me and clock.watchdog_reads >= 2, "the watchdog wait")
            moved.append(0.3 + GRACE_S + 1.0)
            with clock.changed:
                clock.now += moved[0]
            clock.wait_for(lambda: clock.watchdog_reads >= 3, "the watchdog look again")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(_equality._Comparer, "diff", slow_diff)
    target = Target(list(range(4)), MapDataset)
    result = target.session(time_budget_s=0.3).result("map_dataset.getitem_is_deterministic")
    assert moved, "no comparison was made in a check's thread"
    assert result.status == "passed", result


def test_an_object_call_inside_our_own_work_stays_charged() -> None:
    seen: list[float] = []
    thread_id = threading.get_ident()
    try:
        with _calls.own_work():
            with _calls.object_call("ds[0]"):
                seen.append(_calls.credit(thread_id))
                time.sleep(0.05)
                seen.append(_calls.credit(thread_id))
            time.sleep(0.05)
        after = _calls.credit(thread_id)
    finally:
        _calls.release(thread_id)
    assert seen[0] == seen[1]  # the clock stands still during the object's call
    assert after >= seen[1] + 0.05  # and runs during our own work


class HashWaits:
    """An item whose ``__hash__`` blocks until the test releases it (an object call that hangs)."""

    release = threading.Event()

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashWaits) and other.value == self.value

    def __hash__(self) -> int:
        HashWaits.release.wait()
        return hash(self.value)


def _stream_of_hash_waits() -> Any:
    from torch.utils.data import IterableDataset as TorchIterableDataset
    from torch.utils.data import get_worker_info

    class Sharded(TorchIterableDataset):  # type: ignore[type-arg]
        def __iter__(self) -> Iterator[HashWaits]:
            info = get_worker_info()
            numbers = range(6) if info is None else range(info.id, 6, info.num_workers)
            return iter([HashWaits(n) for n in numbers])

    return Sharded()


def test_a_hanging_hash_of_an_item_is_bounded_in_a_worker_clause() -> None:
    """The worker clauses run in the calling thread; the hash that our comparison of the workers'
    items calls is the object's code, bounded by the budget like its other calls."""
    pytest.importorskip("torch", reason="the worker clauses need torch")
    HashWaits.release.clear()
    started = time.monotonic()
    try:
        report = check(_stream_of_hash_waits(), IterableDataset, time_budget_s=1)
    finally:
        HashWaits.release.set()
    elapsed = time.monotonic() - started
    result = _result(report, "iterable_dataset.workers_yield_each_item_once")
    assert result.status == "failed", result
    assert "hash(<HashWaits>) did not return within the time budget of 1 s" in result.message
    assert not report.passed
    # Not a timed test of speed: before the bound, this check() never returned at all.
    assert elapsed < 60


class SlowItems:
    """100 items at 10 ms each: an iteration that outlasts a 0.5 s budget, with every call returning."""

    def __len__(self) -> int:
        return 100

    def __getitem__(self, index: int) -> int:
        if not -100 <= index < 100:
            raise IndexError(index)
        time.sleep(0.01)
        return index % 100


def test_an_iteration_cut_short_before_its_count_is_reached_is_unverified() -> None:
    """len(ds) is within max_items, so the count is part of the verdict: a cut iteration has not
    reached it (past max_items only a prefix is compared anyway, and a shorter one passes)."""
    report = check(SlowItems(), MapDataset, time_budget_s=0.5)
    result = _result(report, "map_dataset.iteration_matches_indexing")
    assert result.status == "unverified", result
    assert "the count was not reached" in result.message


class _ReleaseWaits:
    """An iterator of two batches whose ``__del__`` waits for ``release`` (as a DataLoader iterator's
    joins its worker processes): it runs wherever the last reference to the iterator goes."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release
        self.left = 2

    def __iter__(self) -> _ReleaseWaits:
        return self

    def __next__(self) -> list[int]:
        if self.left == 0:
            raise StopIteration
        self.left -= 1
        return [self.left]

    def __del__(self) -> None:
        self.release.wait(30)


class SlowToRelease:
    def __init__(self) -> None:
        self.release = threading.Event()

    def __iter__(self) -> _ReleaseWaits:
        return _ReleaseWaits(self.release)


def test_a_finalizer_of_the_objects_past_the_budget_is_the_objects_hang_not_an_internal_error() -> None:
    report = check_then_release(SlowToRelease(), Loader, time_budget_s=0.5)
    assert "error" not in statuses(report).values(), report
    (hung,) = [result for result in report.results if result.status == "failed"]
    assert "_ReleaseWaits.__del__()" in hung.message, hung.message
    assert "the last reference to it dropped after" in hung.message, hung.message
