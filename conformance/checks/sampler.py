"""Checks for :class:`~torchcontract.protocols.Sampler` (SPEC.md, "Sampler").

A sampler's state (its generator) advances as it is iterated, so the checks iterate deep copies
and leave the object itself untouched where it can be copied.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Sized
from dataclasses import dataclass
from typing import Any

from torchcontract.conformance._engine import (
    Context,
    global_rng_states,
    restore_global_rng_states,
)
from torchcontract.conformance._registry import register_check
from torchcontract.conformance._values import describe, difference
from torchcontract.conformance.checks._common import Pass, declared_length, record_pass, try_deepcopy
from torchcontract.protocols import Sampler

ENDS = "sampler.iteration_ends"
IN_RANGE = "sampler.yields_indices_in_range"
# Far more than any real epoch; a bound so that an endless sampler cannot exhaust memory.
_MAX_RECORDED = 10_000_000


def _working_copy(ctx: Context) -> Any:
    copied, _ = try_deepcopy(ctx.obj)
    return ctx.obj if copied is None else copied


def _epoch(ctx: Context) -> Pass:
    """One pass over a copy of the sampler, every item kept (up to a bound)."""

    def record() -> Pass:
        sampler = _working_copy(ctx)
        limit = ctx.options.max_items if ctx.options.infinite else _MAX_RECORDED
        iterator = ctx.call("iter(sampler)", iter, sampler)
        return record_pass(ctx, iterator, "it", limit=limit, keep=limit)

    return ctx.shared("epoch", record)


def data_source_len(ctx: Context) -> int | None:
    """The length of the sampler's data source: option data_source_len, else from its attributes."""
    if ctx.options.data_source_len is not None:
        return ctx.options.data_source_len
    sampler = ctx.obj
    for _ in range(4):  # BatchSampler -> its sampler -> its data source
        for attribute in ("data_source", "dataset", "weights"):
            source = getattr(sampler, attribute, None)
            if isinstance(source, Sized):
                length = ctx.attempt(f"len(sampler.{attribute})", len, source)
                if isinstance(length, int):
                    return length
        sampler = getattr(sampler, "sampler", None)
        if sampler is None:
            break
    return None


def _replacement(ctx: Context) -> bool:
    if ctx.options.replacement is not None:
        return ctx.options.replacement
    replacement = getattr(ctx.obj, "replacement", None)
    if replacement is None:
        replacement = getattr(getattr(ctx.obj, "sampler", None), "replacement", False)
    return bool(replacement)


def _is_index(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


@dataclass
class _Indices:
    flat: list[int]
    batched: bool


def _indices(ctx: Context) -> _Indices:
    """Every index of the epoch, flattened (a batch sampler yields lists of indices)."""
    items = _epoch(ctx).prefix
    batched = bool(items) and isinstance(items[0], (list, tuple))
    flat: list[int] = []
    for position, item in enumerate(items):
        group = item if batched else [item]
        if batched and not isinstance(item, (list, tuple)):
            ctx.fail(
                f"item {position} of iter(sampler) is {describe(item)} but item 0 was a list; "
                "expected all ints or all lists of ints",
                reproduce=f"list(sampler)[{position}]",
            )
        for value in group:
            if not _is_index(value):
                ctx.fail(
                    f"item {position} of iter(sampler) is {describe(item)}; expected an int index "
                    "(or, for a batch sampler, a list of int indices)",
                    reproduce=f"list(sampler)[{position}]",
                )
            flat.append(operator.index(value))
    return _Indices(flat, batched)


@register_check(ENDS, protocol=Sampler, severity="required")
def iteration_ends(ctx: Context) -> None:
    """A pass over the sampler ends within the time budget (unless declared infinite=True)."""
    record = _epoch(ctx)
    if record.timed_out or (not record.ended and not ctx.options.infinite):
        ctx.fail(
            f"iter(sampler) yielded {record.count} items without ending within the time budget "
            f"({ctx.time_budget_s:g} s); expected a finite pass (declare infinite=True otherwise)",
            reproduce="for index in sampler: pass",
        )


@register_check(IN_RANGE, protocol=Sampler, severity="required", requires=(ENDS,))
def yields_indices_in_range(ctx: Context) -> None:
    """Items are int indices (or lists of them) in range(len(data_source)) when that is known."""
    indices = _indices(ctx)
    length = data_source_len(ctx)
    if length is None:
        ctx.note("the data source's length is unknown (pass data_source_len=N): types checked only")
        return
    for value in indices.flat:
        if not 0 <= value < length:
            ctx.fail(
                f"iter(sampler) yielded index {value}, outside range({length}) of its data source; "
                "expected 0 <= index < len(data_source)",
                reproduce=f"[i for i in sampler if not 0 <= i < {length}]",
            )


@register_check("sampler.len_matches_count", protocol=Sampler, severity="required", requires=(ENDS,))
def len_matches_count(ctx: Context) -> None:
    """If the sampler has __len__, len(sampler) equals the number of items in a pass."""
    length = declared_length(ctx, "sampler")
    record = _epoch(ctx)
    if not record.ended:
        ctx.skip("the sampler is infinite")
    if length != record.count:
        ctx.fail(
            f"len(sampler) == {length} but a pass yielded {record.count} items; expected them equal "
            "(len(DataLoader) is computed from it)",
            reproduce="len(sampler) == sum(1 for _ in sampler)",
        )


@register_check("sampler.each_iter_is_new_pass", protocol=Sampler, severity="required", requires=(ENDS,))
def each_iter_is_new_pass(ctx: Context) -> None:
    """Each iter(sampler) starts a whole new pass, with as many items as the first."""
    record = _epoch(ctx)
    if not record.ended:
        ctx.skip("the sampler is infinite")
    sampler = _working_copy(ctx)
    limit = record.count + 1
    first = record_pass(ctx, ctx.call("iter(sampler)", iter, sampler), "it", limit=limit, keep=0)
    second = record_pass(ctx, ctx.call("iter(sampler)", iter, sampler), "it", limit=limit, keep=0)
    if second.count != first.count:
        ctx.fail(
            f"a second iter(sampler) yielded {second.count} items but the first yielded {first.count}; "
            "expected each iter(sampler) to start a whole new pass (DataLoader calls iter(sampler) "
            "every epoch: a sampler that is its own iterator, or a generator, leaves every epoch after "
            "the first empty)",
            reproduce="len(list(sampler)) == len(list(sampler))",
        )


@register_check("sampler.each_index_once", protocol=Sampler, severity="required", requires=(ENDS, IN_RANGE))
def each_index_once(ctx: Context) -> None:
    """A sampler without replacement yields each index at most once per pass."""
    if _replacement(ctx):
        ctx.skip("the sampler draws with replacement")
    flat = _indices(ctx).flat
    if ctx.options.infinite:
        # An endless sampler (epoch after epoch, as detectron2's TrainingSampler) repeats indices
        # across epochs: only the first epoch's worth can be checked, and only with its length.
        length = data_source_len(ctx)
        if length is None:
            ctx.skip("the sampler is infinite and its data source's length is unknown (pass data_source_len)")
        flat = flat[:length]
        ctx.note(f"infinite sampler: checked its first {len(flat)} indices, one epoch's worth")
    repeated = [index for index, n in Counter(flat).items() if n > 1]
    if repeated:
        ctx.fail(
            f"iter(sampler) yielded index {repeated[0]} more than once in one pass "
            f"({len(repeated)} indices repeated); expected each index once (declare "
            "replacement=True if the sampler draws with replacement)",
            reproduce=f"collections.Counter(sampler)[{repeated[0]}]",
        )


@register_check("sampler.same_state_same_order", protocol=Sampler, severity="required", requires=(ENDS,))
def same_state_same_order(ctx: Context) -> None:
    """Two copies of the sampler in the same state (same seed, generator and global RNG) yield the
    same order."""
    states = global_rng_states()
    first, error = try_deepcopy(ctx.obj)
    second, _ = try_deepcopy(ctx.obj)
    if error is not None:
        ctx.skip(f"the sampler cannot be deep-copied ({type(error).__name__}: {error})")
    limit = len(_epoch(ctx).prefix) + 1
    one = record_pass(ctx, ctx.call("iter(copy_1)", iter, first), "copy_1", limit=limit, keep=limit)
    restore_global_rng_states(states)
    two = record_pass(ctx, ctx.call("iter(copy_2)", iter, second), "copy_2", limit=limit, keep=limit)
    found = difference(one.prefix, two.prefix)
    if found:
        ctx.fail(
            f"two deep copies of the sampler, iterated from the same global RNG state, gave "
            f"different orders ({found}); expected the order to follow from the sampler's seed or "
            "generator state (so a run can be reproduced)",
            reproduce="s1, s2 = copy.deepcopy(sampler), copy.deepcopy(sampler); list(s1) == list(s2)",
        )


@register_check("sampler.yields_python_ints", protocol=Sampler, severity="recommended", requires=(IN_RANGE,))
def yields_python_ints(ctx: Context) -> None:
    """Indices are Python ints, as torch's samplers yield (NumPy integers break isinstance(i, int))."""
    for position, item in enumerate(_epoch(ctx).prefix):
        for value in item if isinstance(item, (list, tuple)) else [item]:
            if type(value) is not int:
                ctx.fail(
                    f"item {position} of iter(sampler) holds {describe(value)} of type "
                    f"{type(value).__name__}; expected a Python int (a dataset may check "
                    "isinstance(index, int))",
                    reproduce=f"type(list(sampler)[{position}])",
                )
