"""Checks for :class:`~torchcontract.protocols.Stateful` (SPEC.md, "Stateful"): resumable loading.

A ``Stateful`` target is also iterable: a loader, a sampler or an iterable dataset whose
``state_dict()`` saves where its latest epoch (pass) stands. The clauses never iterate the object
itself: they build fresh instances, with the target's ``factory`` when it gives one, else as deep
copies of the object taken before anything iterated it, and compare what a resumed instance yields with
what an uninterrupted one yields. An epoch is read up to ``max_items`` items; a longer (or infinite)
epoch is resumed within that prefix only.

Worker processes: the single-process clauses run a loader with an integer ``num_workers`` attribute
(torch's ``DataLoader``, torchdata's ``StatefulDataLoader``) with ``num_workers = 0``;
``stateful.resume_with_workers`` sets it to the target's ``num_workers`` (a factory that takes a
``num_workers`` keyword is called with it instead).
"""

from __future__ import annotations

import copy
import inspect
import io
import multiprocessing
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from torchcontract.conformance._core.context import Context, SharedKey
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._values import describe, difference, is_tensor, leaves
from torchcontract.conformance.checks._common import END, next_item
from torchcontract.conformance.checks._workers import shut_down_workers
from torchcontract.conformance.checks.module._shared import first_line
from torchcontract.protocols import Stateful

# Keys no object writes: a state from something else.
FOREIGN_STATE: Mapping[str, Any] = {"torchcontract_foreign_state": 0}
RESUMED = "fresh = <a new instance>; fresh.load_state_dict(state)"


@dataclass
class Epoch:
    """One epoch of an uninterrupted instance: its first ``max_items`` items, and whether it ended."""

    items: list[Any]
    ended: bool


# A deep copy of the object taken before anything iterated it (or the exception copying raised).
_PRISTINE: SharedKey[Any] = SharedKey("pristine copy")
# The uninterrupted run that every resume is compared with, per number of workers.
_REFERENCE_RUNS: dict[int, SharedKey[tuple[Epoch, Epoch | None]]] = {}


def _is_torch_loader(obj: object) -> bool:
    torch_data = sys.modules.get("torch.utils.data")
    return torch_data is not None and isinstance(obj, torch_data.DataLoader)


def _has_worker_count(obj: object) -> bool:
    count = getattr(obj, "num_workers", None)
    return isinstance(count, int) and not isinstance(count, bool)


def _factory_takes_workers(factory: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "num_workers" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _fresh(ctx: Context, workers: int = 0) -> Any:
    """A fresh instance, set to run with ``workers`` worker processes where it has a worker count."""
    factory = ctx.options.factory
    takes_workers = factory is not None and _factory_takes_workers(factory)
    if factory is not None and takes_workers:
        obj = ctx.call(f"factory(num_workers={workers})", factory, num_workers=workers)
    elif factory is not None:
        obj = ctx.call("factory()", factory)
    else:
        pristine = ctx.shared(_PRISTINE, lambda: ctx.attempt("copy.deepcopy(obj)", copy.deepcopy, ctx.obj))
        if isinstance(pristine, Exception):
            ctx.skip(
                f"copy.deepcopy(obj) raised {type(pristine).__name__}: {pristine}; the clauses need fresh "
                "instances: pass factory=<a zero-argument callable that builds one>"
            )
        obj = ctx.call("copy.deepcopy(obj)", copy.deepcopy, pristine)
    if not takes_workers and _has_worker_count(obj) and (workers or obj.num_workers):
        _set_workers(ctx, obj, workers)
    elif workers and not takes_workers:
        ctx.skip(
            "the object has no integer num_workers attribute (and the factory takes no num_workers "
            "keyword): the clause cannot run it with worker processes"
        )
    return obj


def _set_workers(ctx: Context, obj: Any, workers: int) -> None:
    ctx.call(f"obj.num_workers = {workers}", setattr, obj, "num_workers", workers)
    if not workers or not _is_torch_loader(obj):
        return
    # What DataLoader.__init__ sets for workers (prefetch_factor), and the bounds of the worker clauses:
    # every wait bounded by the budget, forked workers that never re-run the main script.
    if getattr(obj, "prefetch_factor", None) is None:
        ctx.call("obj.prefetch_factor = 2", setattr, obj, "prefetch_factor", 2)
    if not getattr(obj, "timeout", 0):
        ctx.call(f"obj.timeout = {ctx.time_budget_s:g}", setattr, obj, "timeout", ctx.time_budget_s)
    if getattr(obj, "multiprocessing_context", None) is None and sys.platform.startswith("linux"):
        fork = multiprocessing.get_context("fork")
        ctx.call("obj.multiprocessing_context = 'fork'", setattr, obj, "multiprocessing_context", fork)


def _iter(ctx: Context, obj: Any, what: str) -> Iterator[Any]:
    if "workers" in ctx.spec.needs:
        return ctx.call_starting_processes(what, iter, obj)
    return ctx.call(what, iter, obj)


def _take(ctx: Context, iterator: Iterator[Any], count: int, what: str) -> list[Any]:
    """Up to ``count`` items (fewer when the iterator ends), within the time budget."""
    items: list[Any] = []
    while len(items) < count:
        if ctx.out_of_time():
            ctx.unverified(f"while reading {what} (item {len(items)})")
        item = next_item(ctx, iterator, f"next({what}) (item {len(items)})")
        if item is END:
            break
        items.append(item)
    return items


def _read_epoch(ctx: Context, obj: Any, what: str) -> Epoch:
    iterator = _iter(ctx, obj, f"iter({what})")
    limit = ctx.options.max_items
    items = _take(ctx, iterator, limit + 1, f"iter({what})")
    ended = len(items) <= limit and not ctx.options.infinite
    if not ended:
        shut_down_workers(ctx, iterator)
    return Epoch(items[:limit], ended)


def _reference(ctx: Context, workers: int = 0) -> tuple[Epoch, Epoch | None]:
    """The first two epochs of an uninterrupted fresh instance (the second only when the first ends)."""

    def record() -> tuple[Epoch, Epoch | None]:
        original = _fresh(ctx, workers)
        first = _read_epoch(ctx, original, "original")
        second = _read_epoch(ctx, original, "original") if first.ended else None
        return first, second

    key = _REFERENCE_RUNS.setdefault(workers, SharedKey(f"uninterrupted run with {workers} workers"))
    return ctx.shared(key, record)


def _state(ctx: Context, obj: Any, what: str) -> Any:
    return ctx.call(f"{what}.state_dict()", lambda: obj.state_dict())


def _load(obj: Any) -> Callable[[Any], Any]:
    """``obj.load_state_dict``, looked up when called (inside ``ctx.call``/``ctx.attempt``)."""
    return lambda state: obj.load_state_dict(state)


@dataclass
class Resumed:
    """A fresh instance loaded with the state of another after ``taken`` items (``ended``: after its
    StopIteration too)."""

    fresh: Any
    state: Any
    taken: int
    ended: bool


def _resume(ctx: Context, taken: int, *, ended: bool = False, workers: int = 0) -> Resumed:
    original = _fresh(ctx, workers)
    iterator = _iter(ctx, original, "iter(original)")
    _take(ctx, iterator, taken, "iter(original)")
    if ended:
        next_item(ctx, iterator, "next(iter(original)) (its StopIteration)")
    state = _state(ctx, original, "original")
    shut_down_workers(ctx, iterator)
    fresh = _fresh(ctx, workers)
    ctx.call("fresh.load_state_dict(state)", _load(fresh), state)
    return Resumed(fresh, state, taken, ended)


def _where(resumed: Resumed) -> str:
    if resumed.ended:
        return "at the end of an epoch (after its StopIteration)"
    return f"after {resumed.taken} items of an epoch"


def _compare(
    ctx: Context,
    got: list[Any],
    expected: list[Any],
    ended: bool,
    context: str,
    reproduce: str,
    expectation: str = "exactly the items that remained, in order",
) -> None:
    """Fail unless ``got`` is ``expected`` (and, when the epoch ends, no more)."""
    for position, (one, two) in enumerate(zip(got, expected, strict=False)):
        found = difference(one, two)
        if found:
            ctx.fail(
                f"{context}, item {position} of the resumed instance differs from item {position} the "
                f"uninterrupted one yields ({found}); expected {expectation} "
                "(a resume that repeats or skips data trains on the wrong data, silently; declare "
                "deterministic=False if the items are random, as augmentations are)",
                reproduce=reproduce,
            )
    if len(got) < len(expected) or (ended and len(got) > len(expected)):
        ctx.fail(
            f"{context}, the resumed instance yielded {len(got)} items where the uninterrupted one yielded "
            f"{len(expected)}; expected {expectation} (a resume that restarts, skips or "
            "repeats trains on the wrong data, silently)",
            reproduce=reproduce,
        )


def _comparable(ctx: Context) -> None:
    if not ctx.options.deterministic:
        ctx.skip("the target declares deterministic=False: resumed items cannot be compared")


def _positions(count: int, ended: bool) -> list[tuple[int, bool]]:
    """(items taken, after StopIteration) to resume at: 0, the middle, before the last item, after all
    items, and after the epoch's end; only within the prefix when the epoch did not end."""
    if not ended:
        return sorted({(0, False), (count // 2, False)})
    points = {(0, False), (count // 2, False), (max(count - 1, 0), False), (count, False), (count, True)}
    return sorted(points)


@register_check(protocol=Stateful, severity="required", since="0.1.0", touches="itself")
def state_dict_is_mapping(ctx: Context) -> None:
    """state_dict() returns a Mapping with str keys, before iterating and mid-epoch, and a fresh instance's
    load_state_dict accepts it."""
    original = _fresh(ctx)
    iterator = _iter(ctx, original, "iter(original)")
    for when in ("after iter(original)", "after one item"):
        state = _state(ctx, original, "original")
        if not isinstance(state, Mapping):
            ctx.fail(
                f"original.state_dict() {when} returned a {type(state).__name__}, {describe(state)}; "
                "expected a Mapping with str keys (torch.save, torch.distributed.checkpoint and "
                "StatefulDataLoader store a dict)",
                reproduce="isinstance(obj.state_dict(), collections.abc.Mapping)",
            )
        keys: list[Any] = ctx.call("list(state)", list, state)
        odd = [key for key in keys if not isinstance(key, str)]
        if odd:
            ctx.fail(
                f"original.state_dict() {when} has the key {describe(odd[0])}; expected str keys "
                "(torch.distributed.checkpoint flattens a state into dotted str paths)",
                reproduce="[key for key in obj.state_dict() if not isinstance(key, str)]",
            )
        fresh = _fresh(ctx)
        ctx.call("fresh.load_state_dict(original.state_dict())", _load(fresh), state)
        if next_item(ctx, iterator, "next(iter(original))") is END:
            break
    shut_down_workers(ctx, iterator)


@register_check(
    protocol=Stateful, severity="required", requires=(state_dict_is_mapping,), since="0.1.0", touches="itself"
)
def resume_yields_rest_of_epoch(ctx: Context) -> None:
    """After k items of an epoch, a fresh instance loaded with state_dict() yields exactly the remaining
    items of that epoch, in order (k = 0, the middle, the last item, all items); loaded at the epoch's
    end, a whole new epoch."""
    _comparable(ctx)
    first, _ = _reference(ctx)
    count = len(first.items)
    for taken, ended in _positions(count, first.ended):
        resumed = _resume(ctx, taken, ended=ended)
        expected = [] if ended else first.items[taken:]
        rest = _read_epoch(ctx, resumed.fresh, "fresh")
        reproduce = (
            f"it = iter(obj); [next(it) for _ in range({taken})]; state = obj.state_dict(); {RESUMED}; "
            f"list(fresh) == list(<a new instance>)[{taken}:]"
        )
        if ended:
            # An epoch that ended is over: the next iter() is a new epoch, never an empty one (which
            # would silently shift the epoch count) nor the rest of an old one.
            if len(rest.items) != count or rest.ended != first.ended:
                ctx.fail(
                    f"loaded with the state taken {_where(resumed)}, iter(fresh) yielded "
                    f"{len(rest.items)} items; expected a whole new epoch of {count} (an epoch that ended "
                    "is over: an empty or partial epoch shifts training by an epoch, silently)",
                    reproduce="list(obj); state = obj.state_dict(); " + RESUMED + "; len(list(fresh))",
                )
            continue
        _compare(
            ctx,
            rest.items,
            expected,
            first.ended,
            f"loaded with the state taken {_where(resumed)}",
            reproduce,
        )
    if not first.ended:
        ctx.note(
            f"the epoch is longer than max_items={ctx.options.max_items} (or infinite): resumed within it"
        )


@register_check(
    protocol=Stateful,
    severity="recommended",
    requires=(resume_yields_rest_of_epoch,),
    since="0.1.0",
    touches="itself",
)
def resume_then_same_next_epoch(ctx: Context) -> None:
    """After the resumed epoch, the next epoch of the resumed instance equals the uninterrupted
    instance's next epoch (its random order included)."""
    _comparable(ctx)
    first, second = _reference(ctx)
    if second is None:
        ctx.skip(f"the epoch is longer than max_items={ctx.options.max_items} (or infinite)")
    count = len(first.items)
    for taken, ended in sorted({(count // 2, False), (count, True)}):
        resumed = _resume(ctx, taken, ended=ended)
        if not ended:
            _read_epoch(ctx, resumed.fresh, "fresh")
        following = _read_epoch(ctx, resumed.fresh, "fresh")
        context = f"after resuming from the state taken {_where(resumed)}, in the next epoch"
        reproduce = (
            f"it = iter(obj); [next(it) for _ in range({taken})]; state = obj.state_dict(); {RESUMED}; "
            "list(fresh); list(fresh) == <the second epoch of a new instance>"
        )
        if ended:
            reproduce = f"list(obj); state = obj.state_dict(); {RESUMED}; list(fresh) == list(obj)"
        expectation = "the uninterrupted instance's next epoch (its random order included)"
        _compare(ctx, following.items, second.items, second.ended, context, reproduce, expectation)


def _middle(count: int) -> int:
    return max(1, count // 2)


@register_check(
    protocol=Stateful,
    severity="required",
    needs=("torch", "workers"),
    requires=(resume_yields_rest_of_epoch,),
    since="0.1.0",
    touches="itself",
)
def resume_with_workers(ctx: Context) -> None:
    """With num_workers worker processes, a fresh instance loaded with the state taken after k items
    yields exactly the remaining items: none that the workers had prefetched is lost or repeated."""
    _comparable(ctx)
    factory = ctx.options.factory
    takes_workers = factory is not None and _factory_takes_workers(factory)
    if not takes_workers and not _has_worker_count(ctx.obj):
        ctx.skip(
            "the object has no integer num_workers attribute (and no factory taking num_workers=): it "
            "loads in one process"
        )
    workers = ctx.options.num_workers
    first, _ = _reference(ctx, workers)
    if len(first.items) < 2:
        ctx.skip("an epoch with workers has fewer than 2 items: nothing to prefetch")
    taken = _middle(len(first.items))
    resumed = _resume(ctx, taken, workers=workers)
    rest = _read_epoch(ctx, resumed.fresh, "fresh")
    _compare(
        ctx,
        rest.items,
        first.items[taken:],
        first.ended,
        f"with num_workers={workers}, loaded with the state taken {_where(resumed)}",
        f"obj.num_workers = {workers}; it = iter(obj); [next(it) for _ in range({taken})]; "
        f"state = obj.state_dict(); {RESUMED}; list(fresh) == list(<a new instance>)[{taken}:]",
    )


@register_check(
    protocol=Stateful, severity="required", requires=(state_dict_is_mapping,), since="0.1.0", touches="itself"
)
def state_is_snapshot(ctx: Context) -> None:
    """The state is a snapshot: advancing the instance after state_dict() does not change the returned
    state, loading does not change it either, and two fresh instances loaded with it yield the same."""
    _comparable(ctx)
    first, _ = _reference(ctx)
    taken = _middle(len(first.items)) if len(first.items) > 1 else 0
    original = _fresh(ctx)
    iterator = _iter(ctx, original, "iter(original)")
    _take(ctx, iterator, taken, "iter(original)")
    state = _state(ctx, original, "original")
    frozen = ctx.attempt("copy.deepcopy(state)", copy.deepcopy, state)
    if isinstance(frozen, Exception):
        ctx.skip(f"copy.deepcopy(state) raised {type(frozen).__name__}: {frozen}: nothing to compare it with")
    _take(ctx, iterator, len(first.items) + 1, "iter(original)")
    shut_down_workers(ctx, iterator)
    found = difference(state, frozen)
    if found:
        ctx.fail(
            f"state = original.state_dict() after {taken} items changed when original went on to the end "
            f"of the epoch ({found}); expected a snapshot (a checkpoint written after the next step, as "
            "asynchronous checkpointing writes it, would resume at the wrong place)",
            reproduce=f"it = iter(obj); [next(it) for _ in range({taken})]; s = obj.state_dict(); "
            "c = copy.deepcopy(s); list(it); s == c",
        )
    window = max(len(first.items) - taken, 1)
    batches = []
    for name in ("fresh", "second"):
        fresh = _fresh(ctx)
        ctx.call(f"{name}.load_state_dict(state)", _load(fresh), state)
        found = difference(state, frozen)
        if found:
            ctx.fail(
                f"{name}.load_state_dict(state) changed state ({found}); expected loading to leave it as it "
                "is (the same checkpoint is loaded on every rank, and again after a crash)",
                reproduce="s = obj.state_dict(); c = copy.deepcopy(s); fresh.load_state_dict(s); s == c",
            )
        batches.append(_take(ctx, _iter(ctx, fresh, f"iter({name})"), window, f"iter({name})"))
    _compare(
        ctx,
        batches[1],
        batches[0],
        True,
        f"two fresh instances loaded with one state taken after {taken} items: in the second",
        "s = obj.state_dict(); a.load_state_dict(s); b.load_state_dict(s); list(a) == list(b)",
    )


def _first_line(error: BaseException) -> str:
    line = first_line(error)[:160]
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


def _round_trip(torch: Any, value: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _unportable(ctx: Context, torch: Any, state: Any) -> str | None:
    """The path and value of the first leaf of ``state`` that ``torch.save`` / ``torch.load(weights_only=
    True)`` refuses, or None."""
    for path, leaf in leaves(state):
        outcome = ctx.attempt(f"torch.save(state{path})", _round_trip, torch, leaf)
        if isinstance(outcome, Exception):
            return f"state{path} = {describe(leaf)} ({_first_line(outcome)})"
    return None


@register_check(
    protocol=Stateful,
    severity="required",
    needs=("torch",),
    requires=(state_dict_is_mapping,),
    since="0.1.0",
    touches="itself",
)
def state_is_portable(ctx: Context) -> None:
    """The state survives torch.save and torch.load(weights_only=True) unchanged, and holds no tensor on a
    device other than the CPU."""
    import torch

    original = _fresh(ctx)
    iterator = _iter(ctx, original, "iter(original)")
    _take(ctx, iterator, 1, "iter(original)")
    state = _state(ctx, original, "original")
    shut_down_workers(ctx, iterator)
    for path, leaf in leaves(state):
        if is_tensor(leaf) and str(leaf.device) != "cpu":
            ctx.fail(
                f"state{path} is a tensor on {leaf.device}; expected every tensor of a state on the CPU (a "
                "checkpoint with device tensors loads only where that device exists, and pins its memory)",
                reproduce=f"obj.state_dict(){path}.device",
            )
    loaded = ctx.attempt("torch.load(<torch.save(state)>, weights_only=True)", _round_trip, torch, state)
    if isinstance(loaded, Exception):
        culprit = _unportable(ctx, torch, state)
        ctx.fail(
            "the state did not survive torch.save / torch.load(weights_only=True): "
            f"{culprit or _first_line(loaded)}; expected tensors, numbers, str, bytes, None and dicts, "
            "lists and tuples of them (torch.load defaults to weights_only=True since torch 2.6, and "
            "torch.distributed.checkpoint stores only those)",
            reproduce="buffer = io.BytesIO(); torch.save(obj.state_dict(), buffer); buffer.seek(0); "
            "torch.load(buffer, weights_only=True)",
        )
    found = difference(loaded, state)
    if found:
        ctx.fail(
            f"after torch.save / torch.load(weights_only=True) the state differs ({found}); expected it "
            "unchanged",
            reproduce="torch.load(<torch.save(obj.state_dict())>, weights_only=True) == obj.state_dict()",
        )


@register_check(
    protocol=Stateful,
    severity="recommended",
    requires=(resume_yields_rest_of_epoch,),
    since="0.1.0",
    touches="itself",
)
def foreign_state_is_not_silent(ctx: Context) -> None:
    """load_state_dict of an empty state, or of a state with none of its keys, raises (at loading or at
    the next iteration) or starts afresh: never yields other items silently."""
    _comparable(ctx)
    first, _ = _reference(ctx)
    for shown, state in (("{}", {}), (repr(dict(FOREIGN_STATE)), dict(FOREIGN_STATE))):
        fresh = _fresh(ctx)
        what = f"fresh.load_state_dict({shown})"
        if isinstance(ctx.attempt(what, _load(fresh), state), Exception):
            continue
        iterator = ctx.attempt("iter(fresh)", iter, fresh)
        if isinstance(iterator, Exception):
            continue
        items: list[Any] = []
        raised = ended = False
        while len(items) <= len(first.items) and not ctx.out_of_time():
            item = ctx.attempt(f"next(iter(fresh)) (item {len(items)})", next, iterator)
            if isinstance(item, StopIteration):
                ended = True
                break
            if isinstance(item, Exception):
                raised = True
                break
            items.append(item)
        shut_down_workers(ctx, iterator)
        if not (ended or raised) and len(items) <= len(first.items):
            ctx.unverified(
                f"while reading iter(fresh) after {what} (after {len(items)} items): a pass cut short "
                "is not compared"
            )
        if raised:
            continue
        same = len(items) == len(first.items) or (not first.ended and len(items) > len(first.items))
        found = next(
            (
                difference(one, two)
                for one, two in zip(items, first.items, strict=False)
                if difference(one, two)
            ),
            None,
        )
        if found or not same:
            told = found or f"{len(items)} items where a fresh start yields {len(first.items)}"
            ctx.fail(
                f"after {what} the instance yielded other items than a fresh start ({told}); expected an "
                "error naming the missing keys, or a fresh start (a checkpoint of another object, or an "
                "empty one, must not resume silently at a made-up position)",
                reproduce=f"{what}; list(fresh) == list(<a new instance>)",
            )
