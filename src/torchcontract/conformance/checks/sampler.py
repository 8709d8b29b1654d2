"""Checks for :class:`~torchcontract.protocols.Sampler` (SPEC.md, "Sampler").

A sampler's state (its generator) advances as it is iterated, so the checks iterate deep copies
and leave the object itself untouched where it can be copied.
"""

from __future__ import annotations

import numbers
import operator
import sys
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from torchcontract.conformance._core.context import (
    Context,
    SharedKey,
    global_rng_states,
    restore_global_rng_states,
)
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._values import describe, difference, is_array
from torchcontract.conformance.checks._common import (
    Pass,
    declared_length,
    record_pass,
    try_deepcopy,
    world_size_option,
)
from torchcontract.conformance.checks._state import restored
from torchcontract.protocols import Sampler

# Far more than any real epoch; a bound so that an endless sampler cannot exhaust memory.
_MAX_RECORDED = 10_000_000
_EPOCH: SharedKey[Pass] = SharedKey("one pass")
_ITEMS: SharedKey[Items] = SharedKey("classified items")


@contextmanager
def _iterable_copy(ctx: Context) -> Iterator[Any]:
    """A fresh deep copy of the sampler to iterate; the sampler itself, restored afterwards, when it
    cannot be copied."""
    copied, _ = try_deepcopy(ctx.obj)
    if copied is not None:
        yield copied
        return
    with restored(ctx.obj):
        yield ctx.obj


def _epoch(ctx: Context) -> Pass:
    """One pass over a copy of the sampler, every item kept (up to a bound)."""

    def record() -> Pass:
        limit = ctx.options.max_items if ctx.options.infinite else _MAX_RECORDED
        with _iterable_copy(ctx) as sampler:
            iterator = ctx.call("iter(sampler)", iter, sampler)
            # Whether it ends in time is sampler.iteration_ends's verdict; the others require it.
            return record_pass(ctx, iterator, "it", limit=limit, keep=limit, judges_time=True)

    return ctx.shared(_EPOCH, record)


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


def replacement(ctx: Context) -> bool:
    """Whether the sampler draws with replacement: option replacement, else its attribute (or its
    sampler's, for a batch sampler)."""
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


def _is_non_integer_number(value: Any) -> bool:
    """A number that is no index (a float, a bool, a complex): never a key a sampler means."""
    return isinstance(value, (bool, numbers.Number, np.number)) and not _is_index(value)


def _batch_elements(item: Any) -> list[Any] | None:
    """The elements of a batch sampler's item (a list, or a 1-d array or tensor), else None."""
    if isinstance(item, list):
        return item
    if is_array(item) and len(item.shape) == 1:
        elements: list[Any] = item.tolist()
        return elements
    return None


@dataclass
class Items:
    """What a pass of a sampler yielded: ``kind`` is ``"indices"`` (ints), ``"batches"`` (lists or
    1-d arrays of ints) or ``"keys"`` (anything else: the keys of a dataset indexed by strings,
    ``(index, scale)`` pairs, ...); ``flat`` every index or key, batches flattened; ``sizes`` the
    length of each batch (for a batch sampler)."""

    kind: str
    flat: list[Any]
    sizes: list[int]
    example: Any = None


def _scalar(item: Any) -> Any:
    return item.item() if is_array(item) and len(item.shape) == 0 else item


def classify_items(ctx: Context, items: list[Any], label: str) -> Items:
    """Read a pass: fails for an item that is a non-integer number (or a batch holding one), or a
    mix of indices and batches; a pass holding anything else than indices and batches of indices
    is one of keys."""
    kinds: set[str] = set()
    flat: list[Any] = []
    sizes: list[int] = []
    example: Any = None
    for position, raw in enumerate(items):
        item = _scalar(raw)
        elements = _batch_elements(item)
        values = [item] if elements is None else [_scalar(e) for e in elements]
        bad = next((value for value in values if _is_non_integer_number(value)), None)
        if bad is not None or (elements is None and _is_non_integer_number(item)):
            ctx.fail(
                f"item {position} of iter({label}) is {describe(raw)}; expected an int index "
                "(or, for a batch sampler, a list of int indices)",
                reproduce=f"list({label})[{position}]",
            )
        if all(_is_index(value) for value in values):
            kind = "indices" if elements is None else "batches"
            values = [operator.index(value) for value in values]
        else:
            kind = "keys"
            if example is None:
                example = raw
        if kind != "keys" and kinds - {"keys", kind}:
            ctx.fail(
                f"item {position} of iter({label}) is {describe(raw)} but item 0 was "
                f"{describe(items[0])}; expected all ints or all lists of ints",
                reproduce=f"list({label})[{position}]",
            )
        kinds.add(kind)
        flat.extend(values)
        if elements is not None:
            sizes.append(len(values))
    if "keys" in kinds:
        return Items("keys", flat, sizes, example)
    return Items("batches" if "batches" in kinds else "indices", flat, sizes)


def _items(ctx: Context) -> Items:
    """Every index (or key) of the epoch, batches flattened."""
    return ctx.shared(_ITEMS, lambda: classify_items(ctx, _epoch(ctx).prefix, "sampler"))


@register_check(protocol=Sampler, severity="required", since="0.1.0", touches="itself")
def iteration_ends(ctx: Context) -> None:
    """A pass over the sampler ends within the time budget (unless declared infinite=True)."""
    record = _epoch(ctx)
    if record.timed_out or (not record.ended and not ctx.options.infinite):
        ctx.fail(
            f"iter(sampler) yielded {record.count} items without ending within the time budget "
            f"({ctx.time_budget_s:g} s); expected a finite pass (declare infinite=True otherwise)",
            reproduce="for index in sampler: pass",
        )


@register_check(
    protocol=Sampler, severity="required", requires=(iteration_ends,), since="0.1.0", touches="itself"
)
def yields_indices_in_range(ctx: Context) -> None:
    """Items are int indices (or lists of them) in range(len(data_source)) when that is known."""
    indices = _items(ctx)
    if indices.kind == "keys":
        ctx.skip(
            f"the sampler yields keys, not int indices (e.g. {describe(indices.example)}): whether a key "
            "is in its data source cannot be judged"
        )
    length = data_source_len(ctx)
    if length is None:
        ctx.note("the data source's length is unknown (pass data_source_len=N): types checked only")
        return
    for value in indices.flat:
        if not 0 <= value < length:
            ctx.fail(
                f"iter(sampler) yielded index {value}, outside range({length}) of its data source; "
                "expected 0 <= index < len(data_source) (if the data source is not what the sampler "
                f"exposes, of length {length}, give its length with data_source_len=N)",
                reproduce=f"[i for i in sampler if not 0 <= i < {length}]",
            )


@register_check(
    protocol=Sampler, severity="required", requires=(iteration_ends,), since="0.1.0", touches="itself"
)
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


@register_check(
    protocol=Sampler, severity="required", requires=(iteration_ends,), since="0.1.0", touches="itself"
)
def each_iter_is_new_pass(ctx: Context) -> None:
    """Each iter(sampler) starts a whole new pass, with as many items as the first."""
    record = _epoch(ctx)
    if not record.ended:
        ctx.skip("the sampler is infinite")
    if not ctx.options.deterministic:
        ctx.skip("the target declares deterministic=False: its passes need not have equal lengths")
    limit = record.count + 1
    with _iterable_copy(ctx) as sampler:
        first = record_pass(ctx, ctx.call("iter(sampler)", iter, sampler), "it", limit=limit, keep=0)
        second = record_pass(ctx, ctx.call("iter(sampler)", iter, sampler), "it", limit=limit, keep=0)
    if second.count != first.count:
        ctx.fail(
            f"a second iter(sampler) yielded {second.count} items but the first yielded {first.count}; "
            "expected each iter(sampler) to start a whole new pass (DataLoader calls iter(sampler) "
            "every epoch: a sampler that is its own iterator, or a generator, leaves every epoch after "
            "the first empty; declare deterministic=False if its passes have random lengths by design)",
            reproduce="len(list(sampler)) == len(list(sampler))",
        )


@register_check(
    protocol=Sampler,
    severity="required",
    requires=(iteration_ends, yields_indices_in_range),
    since="0.1.0",
    touches="itself",
)
def each_index_once(ctx: Context) -> None:
    """A sampler without replacement yields each index at most once per pass (a pass longer than its
    data source, once per whole block of len(data_source) indices)."""
    if replacement(ctx):
        ctx.skip("the sampler draws with replacement")
    items = _items(ctx)
    flat = items.flat
    if items.kind == "keys" and not all(isinstance(key, Hashable) for key in flat):
        ctx.skip("the sampler yields unhashable keys: repeats cannot be counted")
    length = data_source_len(ctx)
    if ctx.options.infinite:
        # An endless sampler (epoch after epoch, as detectron2's TrainingSampler) repeats indices
        # across epochs: only the first epoch's worth can be checked, and only with its length.
        if length is None:
            ctx.skip("the sampler is infinite and its data source's length is unknown (pass data_source_len)")
        flat = flat[:length]
        ctx.note(f"infinite sampler: checked its first {len(flat)} indices, one epoch's worth")
    if length and len(flat) > length and items.kind != "keys":
        # RandomSampler(replacement=False, num_samples > n) yields whole permutations back to back.
        blocks = [flat[start : start + length] for start in range(0, len(flat), length)]
        ctx.note(f"a pass of {len(flat)} indices over {length}: checked as {len(blocks)} blocks of {length}")
    else:
        blocks = [flat]
    padding = ctx.options.max_padding
    counts = [Counter(block) for block in blocks]
    extra = sum(n - 1 for counted in counts for n in counted.values() if n > 1)
    if extra and padding is not None and extra <= padding:
        ctx.note(f"{extra} repeated indices, within the declared max_padding={padding}")
        return
    for number, counted in enumerate(counts):
        repeated = [index for index, n in counted.items() if n > 1]
        if not repeated:
            continue
        where = "in one pass" if len(blocks) == 1 else f"in block {number} of {length} indices of one pass"
        bound = f", {extra} repeats in all, beyond the declared max_padding={padding}" if padding else ""
        ctx.fail(
            f"iter(sampler) yielded index {describe(repeated[0])} more than once {where} "
            f"({len(repeated)} indices repeated{bound}); expected each index once"
            + (
                " per block of len(data_source) (a longer pass repeats whole permutations)"
                if len(blocks) > 1
                else ""
            )
            + _oversampling_hint(counted, repeated),
            reproduce=f"collections.Counter(sampler)[{repeated[0]!r}]",
        )


def _oversampling_hint(counted: Counter[Any], repeated: list[Any]) -> str:
    """The declaration to suggest: replacement=True, said plainly when the repeats look deliberate
    (an index drawn three times or more, or a tenth of the indices repeated: class balancing, M per
    class), not like one stray duplicate."""
    most = max(counted[index] for index in repeated)
    if most >= 3 or (len(repeated) >= 2 and len(repeated) * 10 >= len(counted)):
        return (
            f"; the repeats look like deliberate oversampling ({len(repeated)} of {len(counted)} "
            f"distinct indices repeated, one {most} times): if the sampler draws with replacement or "
            "oversamples by design (class balancing, M samples per class), declare replacement=True"
        )
    return (
        " (declare replacement=True if the sampler draws with replacement, or max_padding=k for padding "
        "it documents)"
    )


@register_check(
    protocol=Sampler, severity="recommended", requires=(iteration_ends,), since="0.1.0", touches="itself"
)
def same_state_same_order(ctx: Context) -> None:
    """Two copies of the sampler in the same state (same seed, generator and global RNG) yield the
    same order."""
    if not ctx.options.deterministic:
        ctx.skip("the target declares deterministic=False: two copies need not yield the same order")
    states = global_rng_states()
    first, error = try_deepcopy(ctx.obj)
    second, _ = try_deepcopy(ctx.obj)
    if error is not None:
        ctx.skip(f"the sampler cannot be deep-copied ({type(error).__name__}: {error})")
    limit = len(_epoch(ctx).prefix) + 1
    one = record_pass(ctx, ctx.call("iter(copy_1)", iter, first), "copy_1", limit=limit, keep=limit)
    restore_global_rng_states(states)
    two = record_pass(ctx, ctx.call("iter(copy_2)", iter, second), "copy_2", limit=limit, keep=limit)
    if ctx.options.reshuffles_each_pass:
        # The order may follow from state the copies share (an epoch counter advanced by iter()):
        # only the indices drawn are compared, each counted.
        first_counts, second_counts = _drawn(ctx, one.prefix, "copy_1"), _drawn(ctx, two.prefix, "copy_2")
        if first_counts != second_counts:
            only = sorted(map(repr, (first_counts - second_counts) + (second_counts - first_counts)))[:5]
            ctx.fail(
                f"two deep copies of the sampler drew different indices (not only a different order: "
                f"{', '.join(only)} in one pass but not as often in the other); the target declares "
                "reshuffles_each_pass=True, so the order may change but expected every pass to draw "
                "the same indices",
                reproduce=(
                    "s1, s2 = copy.deepcopy(sampler), copy.deepcopy(sampler); "
                    "collections.Counter(s1) == collections.Counter(s2)"
                ),
            )
        ctx.note("reshuffles_each_pass=True: the two copies' passes were compared as multisets, not in order")
        return
    found = difference(one.prefix, two.prefix)
    if found:
        ctx.fail(
            f"two deep copies of the sampler, iterated from the same global RNG state, gave "
            f"different orders ({found}); expected the order to follow from the sampler's seed or "
            "generator state (so a run can be reproduced); declare reshuffles_each_pass=True if the "
            "order changes by design while the indices drawn do not, deterministic=False if the draws "
            "are random",
            reproduce="s1, s2 = copy.deepcopy(sampler), copy.deepcopy(sampler); list(s1) == list(s2)",
        )


def _drawn(ctx: Context, items: list[Any], label: str) -> Counter[object]:
    """How often a pass drew each index (batches flattened; keys by their description)."""
    read = classify_items(ctx, items, label)
    if read.kind == "keys":
        return Counter(describe(key, limit=10_000) for key in read.flat)
    return Counter(read.flat)


@register_check(
    protocol=Sampler,
    severity="recommended",
    requires=(yields_indices_in_range,),
    since="0.1.0",
    touches="itself",
)
def yields_python_ints(ctx: Context) -> None:
    """Indices are Python ints, as torch's samplers yield (NumPy integers break isinstance(i, int))."""
    items = _items(ctx)
    if items.kind == "keys":
        ctx.skip(f"the sampler yields keys, not int indices (e.g. {describe(items.example)})")
    for position, item in enumerate(_epoch(ctx).prefix):
        if is_array(item) and len(item.shape) == 1:
            ctx.fail(
                f"item {position} of iter(sampler) is {describe(item)}, an array: indexing the dataset "
                "with its elements passes NumPy (or tensor) integers; expected a list of Python ints "
                "(a dataset may check isinstance(index, int))",
                reproduce=f"type(list(list(sampler)[{position}])[0])",
            )
        for value in item if isinstance(item, list) else [item]:
            if type(value) is not int:
                ctx.fail(
                    f"item {position} of iter(sampler) holds {describe(value)} of type "
                    f"{type(value).__name__}; expected a Python int (a dataset may check "
                    "isinstance(index, int))",
                    reproduce=f"type(list(sampler)[{position}])",
                )


# -- sharding across ranks (SPEC.md, "Distributed data") ----------------------------------------------
# They run when the target gives world_size (pytest: --conformance-world-size N) and build every rank's
# sampler in this process with shards(rank, world_size).


_SAMPLER_ATTRIBUTES = ("dataset", "num_replicas", "rank", "shuffle", "seed", "drop_last")


def _torch_distributed_sampler() -> type[Any] | None:
    """torch's ``DistributedSampler``, whose constructor is known, when torch's data utilities are loaded
    (a sampler of that class can only exist then); None otherwise."""
    kind = getattr(sys.modules.get("torch.utils.data"), "DistributedSampler", None)
    return kind if isinstance(kind, type) else None


def _sampler_factory(ctx: Context) -> Callable[[int, int], Any]:
    """``shards`` option, else one built from the attributes of torch's DistributedSampler (exactly
    that class: a subclass's constructor, or any other class's, may take other arguments, or more)."""
    if ctx.options.shards is not None:
        return ctx.options.shards
    sampler = ctx.obj
    kind = type(sampler)
    torch_kind = _torch_distributed_sampler()
    if kind is not torch_kind or not all(hasattr(sampler, name) for name in _SAMPLER_ATTRIBUTES):
        which = "" if kind is not torch_kind else " (it lacks DistributedSampler's attributes)"
        ctx.skip(
            f"the rank samplers are rebuilt only for torch's DistributedSampler itself, not "
            f"{kind.__qualname__}{which}: give shards=lambda rank, world_size: <the sampler of that "
            "rank> to check sharding"
        )

    def same_sampler_for(rank: int, world_size: int) -> Any:
        return kind(
            sampler.dataset,
            num_replicas=world_size,
            rank=rank,
            shuffle=sampler.shuffle,
            seed=sampler.seed,
            drop_last=sampler.drop_last,
        )

    return same_sampler_for


def _applies(ctx: Context, *, needs_finite: bool = True, covers: bool = False, repeats: bool = False) -> None:
    """Skip a sharding clause that relies on something the target declared away."""
    if needs_finite and ctx.options.infinite:
        ctx.skip("the target declares infinite=True: its shards have no end to count or compare")
    if covers and ctx.options.replacement:
        ctx.skip(
            "the target declares replacement=True: shards drawn with replacement need not cover the data"
        )
    if repeats and not ctx.options.deterministic:
        ctx.skip("the target declares deterministic=False: two builds of the shards need not agree")


def _build(ctx: Context, world_size: int) -> list[Any]:
    factory = _sampler_factory(ctx)
    return [
        ctx.call(f"shards({rank}, {world_size})", factory, rank, world_size) for rank in range(world_size)
    ]


def _read(ctx: Context, sampler: Any, label: str) -> Items:
    record = record_pass(
        ctx, ctx.call(f"iter({label})", iter, sampler), label, limit=_MAX_RECORDED, keep=_MAX_RECORDED
    )
    if not record.ended:
        ctx.fail(
            f"{label} yielded more than {_MAX_RECORDED:,} indices without ending; expected a finite "
            "pass (declare infinite=True otherwise)",
            reproduce=f"list({label})",
        )
    return classify_items(ctx, record.prefix, label)


def _passes(ctx: Context, epoch: int | None = None, samplers: list[Any] | None = None) -> list[Items]:
    """Every rank's pass (after ``set_epoch(epoch)`` when given)."""
    world_size = world_size_option(ctx)
    if samplers is None:
        samplers = _build(ctx, world_size)
    passes = []
    for rank, sampler in enumerate(samplers):
        label = f"shards({rank}, {world_size})"
        if epoch is not None:
            ctx.call(f"{label}.set_epoch({epoch})", sampler.set_epoch, epoch)
        passes.append(_read(ctx, sampler, label))
    if any(items.kind == "keys" for items in passes):
        ctx.skip("the rank samplers yield keys, not int indices: their coverage cannot be judged")
    return passes


def _shards(ctx: Context, epoch: int | None = None, samplers: list[Any] | None = None) -> list[list[int]]:
    return [items.flat for items in _passes(ctx, epoch, samplers)]


def _allowed_drops(ctx: Context, world_size: int) -> tuple[bool, int]:
    """(whether the sharding drops the tail, how many more indices a batch sampler's drop_last may
    drop): for a batch sampler, drop_last is its own and the sharding's is its sampler's."""
    sampler = ctx.obj
    batch_size = getattr(sampler, "batch_size", None)
    inner = getattr(sampler, "sampler", None)
    if isinstance(batch_size, int) and not isinstance(batch_size, bool) and inner is not None:
        dropped = world_size * (batch_size - 1) if getattr(sampler, "drop_last", False) is True else 0
        return getattr(inner, "drop_last", False) is True, dropped
    return getattr(sampler, "drop_last", False) is True, 0


def _padding(ctx: Context, world_size: int, drop_last: bool) -> tuple[int, str]:
    """How many indices may repeat across the ranks, and why (for messages): the declared
    max_padding, none under uneven_shards=True, else the world_size - 1 of DistributedSampler's
    padding (none when it drops the tail instead)."""
    if ctx.options.uneven_shards:
        return 0, "the target declares uneven_shards=True: every index on exactly one rank, no padding"
    if ctx.options.max_padding is not None:
        return ctx.options.max_padding, f"at most the declared max_padding={ctx.options.max_padding} repeats"
    allowed = 0 if drop_last else world_size - 1
    return allowed, f"at most {allowed} repeats of padding to make the shards equal"


def _coverage_problem(ctx: Context, shards: list[list[int]], length: int, what: str) -> str | None:
    """Why the shards (one per rank) do not cover range(length) once, up to what the sampler's
    drop_last may drop (:func:`_allowed_drops`; nothing under uneven_shards=True) and the padding
    :func:`_padding` allows, or None."""
    world_size = len(shards)
    drop_last, dropped = _allowed_drops(ctx, world_size)
    if ctx.options.uneven_shards:
        drop_last, dropped = False, 0
    allowed_repeats, why = _padding(ctx, world_size, drop_last)
    counts = Counter(index for shard in shards for index in shard)
    missing = [index for index in range(length) if index not in counts]
    repeats = sum(n - 1 for n in counts.values() if n > 1)
    allowed_missing = world_size - 1 if drop_last else 0
    allowed_missing += dropped
    if len(missing) > allowed_missing:
        return (
            f"{what}: {len(missing)} of {length} indices are on no rank (first: {missing[:5]}); expected "
            f"every index on some rank{' (drop_last may drop fewer than world_size)' if drop_last else ''}"
        )
    if repeats > allowed_repeats:
        shared = [index for index, n in counts.items() if n > 1][:5]
        return (
            f"{what}: {repeats} indices are repeated across ranks (e.g. {shared}); expected disjoint shards "
            f"({why}; declare max_padding=k for more padding by design, replacement=True for shards drawn "
            "with replacement)"
        )
    return None


@register_check(
    protocol=Sampler,
    severity="required",
    needs=("world_size",),
    requires=(iteration_ends,),
    since="0.1.0",
    touches="itself",
)
def shards_have_equal_length(ctx: Context) -> None:
    """With world_size ranks, every rank's sampler yields the same number of indices (of batches, for a
    batch sampler)."""
    world_size_option(ctx)
    _applies(ctx)
    if ctx.options.uneven_shards:
        ctx.skip(
            "the target declares uneven_shards=True: its ranks get unequal lengths by design (evaluation "
            "sharding, no padding); sampler.shards_cover_dataset checks every index is on exactly one rank"
        )
    passes = _passes(ctx)
    world_size = len(passes)
    batched = any(items.kind == "batches" for items in passes)
    lengths = [len(items.sizes) if batched else len(items.flat) for items in passes]
    if len(set(lengths)) > 1:
        unit = "batches" if batched else "indices"
        why = (
            " (a batch sampler: DDP runs one step per batch, so the batch counts must agree)"
            if batched
            else ""
        )
        ctx.fail(
            f"with world_size={world_size}, the ranks yield {lengths} {unit}{why}; expected the same number "
            "on every rank (each step runs collectives across all ranks: a rank that runs out first "
            "leaves the others waiting, and DDP hangs); for evaluation sharding without padding, by "
            "design, declare uneven_shards=True",
            reproduce=f"[len(list(shards(rank, {world_size}))) for rank in range({world_size})]",
        )


@register_check(
    protocol=Sampler,
    severity="required",
    needs=("world_size",),
    requires=(iteration_ends,),
    since="0.1.0",
    touches="itself",
)
def shards_cover_dataset(ctx: Context) -> None:
    """Together the ranks cover every index once, up to the padding (or dropping) that makes them equal."""
    world_size_option(ctx)
    _applies(ctx, covers=True)
    if replacement(ctx):
        ctx.skip("the sampler draws with replacement: its shards need not cover the data")
    length = data_source_len(ctx)
    if length is None:
        ctx.skip("the data source's length is unknown (pass data_source_len=N)")
    shards = _shards(ctx)
    problem = _coverage_problem(ctx, shards, length, f"with world_size={len(shards)}")
    if problem:
        ctx.fail(problem, reproduce=f"[list(shards(rank, {len(shards)})) for rank in range({len(shards)})]")


@register_check(
    protocol=Sampler,
    severity="required",
    needs=("world_size",),
    requires=(shards_cover_dataset,),
    since="0.1.0",
    touches="itself",
)
def set_epoch_reshuffles_every_rank_alike(ctx: Context) -> None:
    """A shuffling sampler's set_epoch(e) changes the order, and every rank shards the same permutation."""
    world_size = world_size_option(ctx)
    _applies(ctx)
    if ctx.options.ordered:
        ctx.skip("the target declares ordered=True: it does not shuffle")
    samplers = _build(ctx, world_size)
    if not callable(getattr(samplers[0], "set_epoch", None)):
        ctx.skip("the sampler has no set_epoch")
    if getattr(ctx.obj, "shuffle", True) is False:
        ctx.skip("the sampler does not shuffle")
    first = _shards(ctx, 0, samplers)
    second = _shards(ctx, 1, samplers)
    if first == second:
        ctx.fail(
            "after set_epoch(1) every rank yields the same order as after set_epoch(0); expected a new "
            "permutation each epoch (seeded from seed + epoch), or every epoch repeats the first "
            "(declare ordered=True for a sampler that does not shuffle)",
            reproduce="s = shards(0, world_size); s.set_epoch(0); a = list(s); s.set_epoch(1); a == list(s)",
        )
    length = data_source_len(ctx)
    if length is not None and not ctx.options.replacement and not replacement(ctx):
        problem = _coverage_problem(ctx, second, length, "after set_epoch(1)")
        if problem:
            ctx.fail(
                f"{problem}; the ranks must draw the same permutation for the same epoch",
                reproduce="[list(s) for s in rank_samplers]  # after s.set_epoch(1) on each",
            )


@register_check(
    protocol=Sampler,
    severity="required",
    needs=("world_size",),
    requires=(shards_cover_dataset,),
    since="0.1.0",
    touches="itself",
)
def same_seed_same_shards(ctx: Context) -> None:
    """Building the rank samplers again (same seed) gives the same shards: ranks and restarts agree."""
    world_size = world_size_option(ctx)
    _applies(ctx, repeats=True)

    def build() -> list[list[int]]:
        samplers = _build(ctx, world_size)
        epoch = 0 if callable(getattr(samplers[0], "set_epoch", None)) else None
        return _shards(ctx, epoch, samplers)

    if build() != build():
        ctx.fail(
            "building the rank samplers twice gave different shards; expected the order to follow from "
            "the seed (every rank builds its own sampler, in its own process: without a shared seed they "
            "shard different permutations); declare deterministic=False if the shards are random by design",
            reproduce="list(shards(0, world_size)) == list(shards(0, world_size))",
        )
