"""Helpers shared by the check files: bounded iteration, and calling objects the same way each time."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from torchcontract.conformance._core.context import WORLD_SIZE_OFF, Context, SharedKey
from torchcontract.conformance._runtime.calls import object_call
from torchcontract.conformance._values import describe, describe_structure, structure

__all__ = [
    "END",
    "Pass",
    "declared_length",
    "first_structure_mismatch",
    "iterator_problem",
    "next_item",
    "record_pass",
    "recorded_first_pass",
    "try_deepcopy",
]


class _End:
    def __repr__(self) -> str:
        return "END"


END: Any = _End()


def next_item(ctx: Context, iterator: Iterator[Any], what: str) -> Any:
    """``next(iterator)``, or :data:`END` on StopIteration; any other exception fails the check."""
    try:
        item = ctx.invoke(what, next, iterator)
    except StopIteration:
        return END
    except Exception as error:
        ctx.raised(what, error)
    return item


@dataclass
class Pass:
    """One pass over an iterator, bounded in items, time and memory.

    ``count`` items were seen, the first ``len(prefix)`` kept; ``ended``: StopIteration came;
    ``timed_out``: the time budget ran out first. The iterator is not kept: a pass is shared by the
    target's checks, and an iterator made before another check iterated the object (a persistent
    worker iterator is reset and reused) or rolled it back (:func:`~._state.restored`) is not the
    one that was exhausted; a check that probes an iterator makes its own.
    """

    count: int = 0
    prefix: list[Any] = field(default_factory=list)
    ended: bool = False
    timed_out: bool = False


def record_pass(
    ctx: Context,
    iterator: Iterator[Any],
    name: str,
    *,
    limit: int | None,
    keep: int,
    budget_fraction: float = 0.8,
    judges_time: bool = False,
) -> Pass:
    """Iterate until StopIteration, ``limit`` items, or ``budget_fraction`` of the check's time.

    A pass cut short by the budget is never compared as a result: it ends the check as unverified,
    naming it, unless ``judges_time`` (the caller's clause is about whether a pass ends in time, and
    reads ``timed_out`` itself)."""
    record = Pass()
    reserve = ctx.time_budget_s * (1 - budget_fraction)
    while limit is None or record.count < limit:
        if ctx.time_left() <= reserve:
            record.timed_out = True
            break
        item = next_item(ctx, iterator, f"next({name}) (item {record.count})")
        if item is END:
            record.ended = True
            break
        if len(record.prefix) < keep:
            record.prefix.append(item)
        record.count += 1
    if record.timed_out and not judges_time:
        ctx.unverified(
            f"while reading {name} (after {record.count} items): a pass cut short by the budget is "
            "not compared (raise time_budget_s)"
        )
    return record


_FIRST_PASS: SharedKey[Pass] = SharedKey("first pass")


def recorded_first_pass(ctx: Context, name: str) -> Pass:
    """The first pass over ``ctx.obj`` (a dataset or a loader, called ``name`` in messages), recorded
    once and shared by the target's checks: its length when it ends, and its first ``max_items``
    items. An object declared ``infinite=True`` is read for ``max_items`` items only."""

    def record() -> Pass:
        iterator = ctx.call(f"iter({name})", iter, ctx.obj)
        limit = ctx.options.max_items if ctx.options.infinite else None
        # Whether it ends in time is the ends clause's verdict; every other clause requires it.
        return record_pass(ctx, iterator, "it", limit=limit, keep=ctx.options.max_items, judges_time=True)

    return ctx.shared(_FIRST_PASS, record)


def iterator_problem(ctx: Context, iterable: Any, name: str) -> str | None:
    """Why ``iter(iterable)`` is not a proper iterator, or None."""
    iterator = ctx.call(f"iter({name})", iter, iterable)
    if not hasattr(type(iterator), "__next__"):
        return f"iter({name}) returned {describe(iterator)}, which has no __next__; expected an iterator"
    again = ctx.call(f"iter(iter({name}))", iter, iterator)
    if again is not iterator:
        return (
            f"iter(it) is not it for it = iter({name}) (got {describe(again)}); expected an iterator "
            "whose __iter__ returns itself, as the iterator protocol requires"
        )
    return None


def declared_length(ctx: Context, name: str) -> int:
    """``len(ctx.obj)`` for the clauses that compare a declared length with a count. Skips the check
    when the object is unsized (no ``__len__``, or one that raises ``TypeError``, as ``len(DataLoader)``
    over an unsized dataset does); any other exception from ``__len__`` fails it."""
    if getattr(type(ctx.obj), "__len__", None) is None:
        ctx.skip(f"{name} has no __len__")
    length = ctx.attempt(f"len({name})", len, ctx.obj)
    if isinstance(length, TypeError):
        ctx.skip(f"len({name}) raised TypeError ({length}): {name} is unsized")
    if isinstance(length, Exception):
        ctx.fail(
            f"len({name}) raised {type(length).__name__}: {length}; expected an int, or TypeError "
            f"when {name} is unsized",
            reproduce=f"len({name})",
        )
    return length


def first_structure_mismatch(items: list[Any], label: str) -> str | None:
    """A message naming the first item whose structure differs from the first item's, or None."""
    if not items:
        return None
    expected = structure(items[0])
    for index, item in enumerate(items[1:], start=1):
        if structure(item) != expected:
            return (
                f"{label.format(index)} has structure {describe_structure(item)} but "
                f"{label.format(0)} has {describe_structure(items[0])} ({describe(item)} vs "
                f"{describe(items[0])}); expected every sample to share one structure"
            )
    return None


def try_deepcopy(value: Any, what: str = "copy.deepcopy(obj)") -> tuple[Any, Exception | None]:
    """``(copy.deepcopy(value), None)``, or ``(None, error)`` when it cannot be copied. The copy runs
    the object's own code (``__deepcopy__``, ``__reduce_ex__``): a hang in it names ``what``."""
    try:
        with object_call(what):
            return copy.deepcopy(value), None
    except Exception as error:
        return None, error


def world_size_option(ctx: Context) -> int:
    """The target's ``world_size`` for the clauses across ranks; skips when it gives none."""
    world_size = ctx.options.world_size
    if world_size is None:
        ctx.skip(WORLD_SIZE_OFF)
    return world_size
