"""Checks for :class:`~torchcontract.protocols.Loader` (SPEC.md, "Loader")."""

from __future__ import annotations

import operator
import sys
from collections import Counter
from collections.abc import Iterator, Sized
from contextlib import contextmanager
from typing import Any, TypeGuard

from torchcontract.conformance._core.context import Context, SharedKey
from torchcontract.conformance._core.process_group import (
    RankOutcome,
    gather_in_group,
    group_rank_and_size,
    in_process_group,
    index_batches,
    read_epoch,
    run_ranks,
)
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._runtime import fresh
from torchcontract.conformance._runtime.calls import object_call
from torchcontract.conformance._values import (
    NO_SAMPLE,
    describe,
    difference,
    is_iterable_style,
    sample_count,
)
from torchcontract.conformance.checks._batches import (
    accelerator_available,
    overwritten_sample_problem,
    pin_problem,
    round_trip,
    stacked_rows,
)
from torchcontract.conformance.checks._common import (
    END,
    Pass,
    declared_length,
    iterator_problem,
    next_item,
    record_pass,
    try_deepcopy,
    world_size_option,
)
from torchcontract.conformance.checks._preserve import DATA_ARRAY_BYTES, preserved
from torchcontract.conformance.checks._state import restored, working_copy
from torchcontract.conformance.checks._workers import map_stale_epoch, stream_stale_epoch
from torchcontract.protocols import Loader

_FIRST_EPOCH: SharedKey[Pass] = SharedKey("first epoch")
_EXAMPLE_SAMPLE: SharedKey[Any] = SharedKey("example sample")
_PROCESS_GROUP_RUN: SharedKey[list[RankOutcome] | str] = SharedKey("process-group run")


def _loader(ctx: Context) -> tuple[Any, bool]:
    """What the checks iterate: a deep copy of the loader (sharing its map-style dataset, which
    iteration leaves as it is), so that its generator, sampler and epoch state stay as they were;
    ``(loader, False)`` when it cannot be copied (iterate it inside :func:`restored`)."""
    dataset = getattr(ctx.obj, "dataset", None)
    share = () if dataset is None or is_iterable_style(dataset) else (dataset,)
    return working_copy(ctx, "loader", share=share)


@contextmanager
def _iterated(ctx: Context) -> Iterator[Any]:
    """The loader to iterate; the loader itself is restored afterwards when it could not be copied."""
    loader, copied = _loader(ctx)
    if copied:
        yield loader
        return
    with restored(loader):
        yield loader


def first_epoch(ctx: Context) -> Pass:
    """The first epoch: its batch count (when it ends) and its first batches."""

    def record() -> Pass:
        with _iterated(ctx) as loader:
            iterator = ctx.call("iter(loader)", iter, loader)
            limit = ctx.options.max_items if ctx.options.infinite else None
            # Whether it ends in time is loader.epoch_ends's verdict; the other clauses require it.
            return record_pass(ctx, iterator, "it", limit=limit, keep=ctx.options.max_items, judges_time=True)

    return ctx.shared(_FIRST_EPOCH, record)


def _sized_len(ctx: Context, obj: object, name: str) -> int | None:
    """len(obj), or None when obj is unsized (no __len__, or a __len__ raising TypeError)."""
    if not isinstance(obj, Sized):
        return None
    length = ctx.attempt(f"len({name})", len, obj)
    return None if isinstance(length, Exception) else length


def _is_stream(ctx: Context) -> bool:
    dataset = getattr(ctx.obj, "dataset", None)
    if dataset is None:
        return False
    torch_data = sys.modules.get("torch.utils.data")
    if torch_data is not None and isinstance(ctx.obj, torch_data.DataLoader):
        # torch's own rule for its own loader (torch/utils/data/dataloader.py, DataLoader.__init__).
        return isinstance(dataset, torch_data.IterableDataset)
    return is_iterable_style(dataset)


def _example_sample(ctx: Context) -> Any:
    """loader.dataset[0] (to count batches that keep their samples whole), or NO_SAMPLE."""

    def fetch() -> Any:
        dataset = getattr(ctx.obj, "dataset", None)
        if dataset is None or _is_stream(ctx) or not _sized_len(ctx, dataset, "loader.dataset"):
            return NO_SAMPLE
        sample = ctx.attempt("loader.dataset[0]", operator.getitem, dataset, 0)
        return NO_SAMPLE if isinstance(sample, Exception) else sample

    return ctx.shared(_EXAMPLE_SAMPLE, fetch)


@register_check(protocol=Loader, severity="required", since="0.1.0", touches="itself")
def iter_returns_iterator(ctx: Context) -> None:
    """iter(loader) returns an iterator: it has __next__ and iter(it) is it."""
    with _iterated(ctx) as loader:
        problem = iterator_problem(ctx, loader, "loader")
    if problem:
        ctx.fail(problem, reproduce="it = iter(loader); next(it); iter(it) is it")


@register_check(
    protocol=Loader, severity="required", requires=(iter_returns_iterator,), since="0.1.0", touches="itself"
)
def epoch_ends(ctx: Context) -> None:
    """An epoch ends within the time budget (for a loader declared infinite=True, a prefix is drawn)."""
    record = first_epoch(ctx)
    if record.timed_out:
        ctx.fail(
            f"iter(loader) yielded {record.count} batches in the time budget "
            f"({ctx.time_budget_s:g} s) without ending; expected an epoch to end (declare "
            "infinite=True for an endless loader, or raise time_budget_s for a slow one)",
            reproduce="for batch in loader: pass",
        )
    if ctx.options.infinite:
        ctx.note(f"infinite loader: checked its first {record.count} batches")


@register_check(protocol=Loader, severity="required", requires=(epoch_ends,), since="0.1.0", touches="itself")
def exhaustion_is_sticky(ctx: Context) -> None:
    """After StopIteration, next(it) raises StopIteration again."""
    record = first_epoch(ctx)
    if not record.ended:
        ctx.skip("the loader is infinite: its iterators never stop")
    # An epoch of this check's own, its iterator probed right after its end and before anything else
    # touches the loader: with persistent workers, a later iter(loader) resets and reuses the same
    # iterator object, and the state a loader that cannot be copied is rolled back to afterwards
    # may be what its iterators read.
    with _iterated(ctx) as loader:
        iterator = ctx.call("iter(loader)", iter, loader)
        exhausted = record_pass(ctx, iterator, "it", limit=record.count + 1, keep=0)
        if not exhausted.ended:
            ctx.skip(
                f"this epoch did not end after the {record.count} batches of the first "
                "(loader.each_iter_is_new_epoch compares epochs)"
            )
        for attempt in (1, 2):
            item = next_item(ctx, iterator, f"next(it) after StopIteration (attempt {attempt})")
            if item is not END:
                ctx.fail(
                    f"next(it) returned {describe(item)} after the epoch's iterator had raised "
                    "StopIteration; expected StopIteration again",
                    reproduce="it = iter(loader); list(it); next(it)",
                )


@register_check(protocol=Loader, severity="required", requires=(epoch_ends,), since="0.1.0", touches="itself")
def each_iter_is_new_epoch(ctx: Context) -> None:
    """Each iter(loader) starts a whole new epoch, also after the previous one was left half-way."""
    record = first_epoch(ctx)
    with _iterated(ctx) as loader:
        abandoned = ctx.call("iter(loader)", iter, loader)
        if next_item(ctx, abandoned, "next(iter(loader))") is END:
            if record.count:
                ctx.fail(
                    f"a second iter(loader) yielded no batch but the first epoch had {record.count}; "
                    "expected each iter(loader) to start a new epoch",
                    reproduce="list(loader); list(loader)",
                )
            return
        limit = record.count + 1 if record.ended else record.count
        again = record_pass(
            ctx, ctx.call("iter(loader)", iter, loader), "it", limit=limit, keep=len(record.prefix)
        )
    if not ctx.options.deterministic:
        ctx.note("deterministic=False: the epochs' batch counts and batches were not compared")
        return
    if record.ended and again.count != record.count:
        ctx.fail(
            f"after an epoch was abandoned after one batch, the next iter(loader) yielded "
            f"{again.count} batches; the first epoch had {record.count}; expected a whole new epoch "
            "(declare deterministic=False if its epochs have random lengths by design)",
            reproduce="it = iter(loader); next(it); len(list(loader))",
        )
    if _ordered(ctx) and ctx.options.reshuffles_each_pass:
        ctx.note("reshuffles_each_pass=True: the two epochs' batches were not compared in order")
    elif _ordered(ctx):
        for position, (one, two) in enumerate(zip(record.prefix, again.prefix, strict=False)):
            found = difference(one, two)
            if found:
                ctx.fail(
                    f"batch {position} differs between two epochs of an ordered loader ({found}); "
                    "expected the same batches (declare reshuffles_each_pass=True for a seeded order "
                    "that changes every epoch by design, ordered=False for a loader that does not follow "
                    "its dataset's order, deterministic=False for random batches)",
                    reproduce=f"list(loader)[{position}] == list(loader)[{position}]",
                )


@register_check(protocol=Loader, severity="required", requires=(epoch_ends,), since="0.1.0", touches="itself")
def len_matches_batch_count(ctx: Context) -> None:
    """If the loader has __len__, len(loader) equals the number of batches in an epoch (also over a
    sized iterable-style dataset, where torch's len(loader) undercounts with several workers)."""
    length = declared_length(ctx, "loader")
    record = first_epoch(ctx)
    if not record.ended:
        ctx.skip("the loader is infinite")
    if length == record.count:
        return
    why = ""
    workers = getattr(ctx.obj, "num_workers", 0)
    if _is_stream(ctx) and isinstance(workers, int) and workers > 1:
        why = (
            f" (the loader streams an iterable-style dataset with num_workers={workers}: each worker "
            "ends its share on its own partial batch, but len(loader) is ceil(len(dataset) / "
            "batch_size), pytorch#30599; OneCycleLR(total_steps=len(loader)) then raises. Shard the "
            "stream in whole batches (worker k takes batches k, k + num_workers, ...), or batch inside "
            "the dataset and load it with batch_size=None)"
        )
    ctx.fail(
        f"len(loader) == {length} but an epoch yielded {record.count} batches; expected them equal{why}",
        reproduce="len(loader) == sum(1 for _ in loader)",
    )


def _is_size(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _batching(ctx: Context) -> tuple[int, Any, Any] | str:
    """(batch size, drop_last, the sampler whose indices are batched) from the loader's attributes,
    or why unknown. A torch DataLoader built with ``batch_sampler=`` has ``batch_size=None`` and
    ``drop_last=False``: its batch sampler's own ``batch_size``/``drop_last``/``sampler`` count then."""
    loader = ctx.obj
    batch_size, drop_last = getattr(loader, "batch_size", None), getattr(loader, "drop_last", None)
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_size is None and batch_sampler is not None:
        batch_size = getattr(batch_sampler, "batch_size", None)
        drop_last = getattr(batch_sampler, "drop_last", None)
        sampler = getattr(batch_sampler, "sampler", None)
        if not _is_size(batch_size):
            return f"the loader's batch_sampler exposes no integer batch_size (batch_size={batch_size!r})"
    if not _is_size(batch_size):
        return f"the loader exposes no integer batch_size (batch_size={batch_size!r})"
    return batch_size, drop_last, sampler


# What turns the batch-accounting clauses on, for a skip that says why they did not apply.
_SETTINGS_ENABLE = (
    "the clause applies to a loader that exposes its dataset, an integer batch_size and a boolean "
    "drop_last as attributes (torch's DataLoader does; with batch_sampler=, the batch sampler's "
    "batch_size and drop_last)"
)


def _batch_settings(ctx: Context) -> tuple[int, int, bool] | str:
    """(samples per epoch, batch size, drop_last) from the loader's attributes, or why unknown."""
    loader = ctx.obj
    if not hasattr(loader, "dataset"):
        return "the loader exposes no dataset"
    batching = _batching(ctx)
    if isinstance(batching, str):
        return batching
    batch_size, drop_last, sampler = batching
    if not isinstance(drop_last, bool):
        return f"the loader exposes no boolean drop_last (drop_last={drop_last!r})"
    total = _sized_len(ctx, sampler, "loader.sampler")
    if total is None:
        total = _sized_len(ctx, loader.dataset, "loader.dataset")
    if total is None:
        return "neither loader.sampler nor loader.dataset is sized"
    return total, batch_size, drop_last


@register_check(protocol=Loader, severity="required", requires=(epoch_ends,), since="0.1.0", touches="itself")
def batches_cover_dataset(ctx: Context) -> None:
    """An epoch's batches hold every sample once in batches of batch_size (the last may be short)."""
    settings = _batch_settings(ctx)
    if isinstance(settings, str):
        ctx.skip(f"{settings}: {_SETTINGS_ENABLE}")
    total, batch_size, drop_last = settings
    record = first_epoch(ctx)
    if not record.ended:
        ctx.skip("the loader is infinite")
    groups = _index_groups(ctx, record.count)
    counts = _index_counts(groups)
    by_indices = counts is not None
    if counts is None:
        if ctx.options.transforms_samples and not _is_stream(ctx):
            _check_batch_count(ctx, record.count, total, batch_size, drop_last)
            return
        counts = _content_counts(ctx, record)
    stream = _is_stream(ctx)
    if stream and drop_last:
        ctx.skip("iterable-style dataset with drop_last: each worker drops its own partial batch")
    expected_total = (total // batch_size) * batch_size if drop_last else total
    seen = sum(c for c in counts if c is not None)
    # Counted by their content, a batch of a collate_fn that packs or renames is not its samples.
    packing = "" if by_indices else _PACKING_HINT
    if seen != expected_total:
        rule = f"{total} samples, batch_size={batch_size}, drop_last={drop_last}"
        ctx.fail(
            f"an epoch's batches held {seen} samples in all ({record.count} batches of "
            f"{_summary(counts)}); expected {expected_total} ({rule}){packing}",
            reproduce="sum(<samples in batch> for batch in loader)",
        )
    if stream:
        return  # with several workers each ends on its own partial batch
    if _out_of_order(ctx):
        # in_order=False: a batch is handed over when its worker finishes it, so the short batch
        # can arrive anywhere; only the multiset of sizes is fixed.
        short = [(position, count) for position, count in enumerate(counts) if count != batch_size]
        if len(short) > 1:
            ctx.fail(
                f"batches {short[0][0]} and {short[1][0]} of {record.count} hold {short[0][1]} and "
                f"{short[1][1]} samples; expected batch_size={batch_size} in every batch but one "
                f"(in_order=False: the short batch may come at any position){packing}",
                reproduce="[<samples in batch> for batch in loader]",
            )
        return
    for position, count in enumerate(counts[:-1]):
        if count != batch_size:
            ctx.fail(
                f"batch {position} of {record.count} holds {count} samples; expected "
                f"batch_size={batch_size} in every batch but the last{packing}",
                reproduce=f"list(loader)[{position}]",
            )
    if groups is not None:
        ctx.note("the batches' samples were counted by the indices of the loader's sampler")
        _check_rows(ctx, groups, record)


_PACKING_HINT = (
    "; the samples were counted by the batches' content, as the loader exposes no sampler of indices "
    "(loader.batch_sampler or loader.sampler): declare transforms_samples=True for a collate_fn that packs "
    "or renames samples"
)


def _index_groups(ctx: Context, batches: int) -> list[list[int]] | None:
    """The indices of each batch of the first epoch, from the sampler the loader exposes
    (``loader.batch_sampler``'s batches, or one index of ``loader.sampler`` per batch), read again
    on the loader that was iterated, where they describe the epoch (as many batches); None
    otherwise. Indices, not content, as across ranks: torch's fetcher loads exactly these indices,
    and a padding collate (``pad_sequence``'s time-major batches) hides how many rows a batch holds.
    Read again, a shuffling sampler gives the same indices in another order."""
    if _is_stream(ctx):
        return None
    with _iterated(ctx) as loader:
        return ctx.call("list(loader.batch_sampler)", index_batches, loader, batches)


def _index_counts(groups: list[list[int]] | None) -> list[int | None] | None:
    """The samples of each batch of the first epoch, counted by :func:`_index_groups`; None when the
    loader exposes no sampler that describes it."""
    return None if groups is None else [len(group) for group in groups]


# The samples of a batch read to tell whether it stacks them (their shapes): enough to tell a
# padding collate from a stack, bounded for big batches.
_ROWS_SAMPLES = 8


def _check_rows(ctx: Context, groups: list[list[int]], record: Pass) -> None:
    """Counted by indices, a batch's rows are still compared with them where the batch is a stack of
    its samples (:func:`stacked_rows`): a collate_fn that drops or adds rows changes no index. The
    first and the last batch kept (an off-by-one lands on the short batch)."""
    if ctx.options.transforms_samples:
        return
    dataset = ctx.obj.dataset
    kept = min(len(record.prefix), len(groups))
    with preserved(dataset, max_array_bytes=DATA_ARRAY_BYTES):
        for position in sorted({0, kept - 1} & set(range(kept))):
            group, batch = groups[position], record.prefix[position]
            samples = [
                ctx.call(f"loader.dataset[{index}]", operator.getitem, dataset, index)
                for index in group[:_ROWS_SAMPLES]
            ]
            rows = stacked_rows(batch, samples)
            if rows is None or rows == len(group):
                continue
            shown = group if len(group) <= 8 else [*group[:8], "..."]
            ctx.fail(
                f"batch {position} of {record.count} holds {rows} rows (its arrays stack {rows} samples "
                f"of loader.dataset's shapes) but the loader's sampler gave it {len(group)} indices "
                f"({shown}); expected one row per index: the collate_fn dropped or added rows (declare "
                "transforms_samples=True for a collate_fn that packs samples by design)",
                reproduce=(
                    f"list(loader)[{position}] vs loader.collate_fn([loader.dataset[i] for i in {shown}])"
                ),
            )


def _content_counts(ctx: Context, record: Pass) -> list[int | None]:
    """The samples of each batch of the first epoch, counted by its content (SPEC.md, "Conventions":
    a batch's sample count); skips when the epoch was not kept whole or a batch cannot be counted."""
    if record.count > len(record.prefix):
        ctx.skip(
            f"the epoch has more than max_items={ctx.options.max_items} batches: raise max_items, or "
            "expose the loader's sampler (loader.batch_sampler) to count them by its indices"
        )
    example = _example_sample(ctx)
    counts = [sample_count(batch, like=example) for batch in record.prefix]
    if None in counts:
        position = counts.index(None)
        ctx.skip(
            f"cannot count the samples of batch {position}: {describe(record.prefix[position])} (its "
            "array leaves do not share a leading dimension), and the loader exposes no sampler of "
            "indices to count them by (loader.batch_sampler, or loader.sampler)"
        )
    return counts


def _check_batch_count(ctx: Context, count: int, total: int, batch_size: int, drop_last: bool) -> None:
    """Under transforms_samples=True a batch's samples cannot be counted: the number of batches can."""
    expected = total // batch_size if drop_last else -(-total // batch_size)
    if count != expected:
        rule = f"{total} samples, batch_size={batch_size}, drop_last={drop_last}"
        ctx.fail(
            f"an epoch yielded {count} batches; expected {expected} ({rule}; the target declares "
            "transforms_samples=True, so the samples in each batch were not counted, only the batches)",
            reproduce="sum(1 for batch in loader)",
        )
    ctx.note("transforms_samples=True: the batches were counted, not the samples in them")


def _summary(counts: list[int | None]) -> str:
    distinct = sorted({c for c in counts if c is not None})
    return "sizes " + ", ".join(map(str, distinct)) if len(distinct) < 6 else "various sizes"


def _out_of_order(ctx: Context) -> bool:
    """Whether the loader hands batches over as its workers finish them (torch's ``in_order=False``)."""
    return getattr(ctx.obj, "in_order", True) is False


def _ordered(ctx: Context) -> bool:
    """Whether the loader's batches follow its dataset's order (option ``ordered``, else inferred;
    ``in_order=False`` is unordered: a batch's position then depends on the workers' timing)."""
    if ctx.options.ordered is not None:
        return ctx.options.ordered
    loader = ctx.obj
    if _out_of_order(ctx):
        return False
    sampler = getattr(loader, "sampler", None)
    if getattr(loader, "shuffle", False) is True:
        return False
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is not None and getattr(loader, "batch_size", 1) is None:
        # A user's batch_sampler decides the order (torch then sets batch_size=None): torch's
        # BatchSampler over a SequentialSampler keeps it.
        inner = getattr(batch_sampler, "sampler", None)
        return type(batch_sampler).__name__ == "BatchSampler" and type(inner).__name__ == "SequentialSampler"
    if sampler is not None:
        return type(sampler).__name__ == "SequentialSampler"
    return hasattr(loader, "shuffle") and not _is_stream(ctx)


def _declared_count(ctx: Context, start: int, batch_size: int) -> int | None:
    """The samples batch ``start // batch_size`` is made of, from the loader's batch settings (a
    transforming collate_fn's batch cannot tell), or None."""
    settings = _batch_settings(ctx)
    return None if isinstance(settings, str) else max(0, min(batch_size, settings[0] - start))


@register_check(
    protocol=Loader, severity="recommended", requires=(epoch_ends,), since="0.1.0", touches="itself"
)
def batches_match_collate(ctx: Context) -> None:
    """Without a sampler or shuffling, batch k equals collate_fn applied to the k-th run of samples."""
    loader = ctx.obj
    if not _ordered(ctx):
        ctx.skip(
            "the loader is not known to be ordered (inferred from its sampler, shuffle and in_order "
            "attributes): declare ordered=True if its batches follow its dataset's order"
        )
    if not ctx.options.deterministic:
        ctx.skip("the target declares deterministic=False")
    dataset, collate_fn = getattr(loader, "dataset", None), getattr(loader, "collate_fn", None)
    if dataset is None or collate_fn is None or _is_stream(ctx):
        ctx.skip(
            "the loader exposes no indexable dataset and collate_fn: the clause applies to a loader with "
            "loader.dataset (map-style) and loader.collate_fn attributes, as torch's DataLoader has"
        )
    unbatched = getattr(loader, "batch_size", None) is None and getattr(loader, "batch_sampler", None) is None
    batching = None if unbatched else _batching(ctx)
    if isinstance(batching, str):
        ctx.skip(f"{batching}: {_SETTINGS_ENABLE}")
    record = first_epoch(ctx)
    # An ordered loader's sampler gives the same indices when read again: they say which samples
    # each batch holds, whatever its collate_fn makes of them.
    groups = None if batching is None else _index_groups(ctx, record.count)
    expected: Any
    for position, batch in enumerate(record.prefix[:3]):
        if batching is None:  # no batching: collate_fn converts one sample at a time
            what = f"loader.collate_fn(loader.dataset[{position}])"
            sample = ctx.call(f"loader.dataset[{position}]", operator.getitem, dataset, position)
            expected = ctx.call(what, collate_fn, sample)
        else:
            start = position * batching[0]
            count = _declared_count(ctx, start, batching[0]) if ctx.options.transforms_samples else None
            if groups is not None:
                count = len(groups[position])
            count = count or sample_count(batch, like=_example_sample(ctx))
            if not count:
                ctx.skip(
                    f"could not tell how many samples batch {position} holds ({describe(batch)}), so "
                    "not which samples to collate for it (a loader that exposes its sampler as "
                    "loader.batch_sampler tells them; declare transforms_samples=True for a collate_fn "
                    "that packs samples)"
                )
            indices = range(start, start + count)
            samples: Any
            if getattr(dataset, "__getitems__", None):
                # As torch's _MapDatasetFetcher: a dataset with __getitems__ gives a batch's samples
                # in one call (a TensorDict gives them batched), which collate_fn receives.
                fetch = f"loader.dataset.__getitems__(list(range({indices.start}, {indices.stop})))"
                what = f"loader.collate_fn({fetch})"
                samples = ctx.call(fetch, dataset.__getitems__, list(indices))
            else:
                what = (
                    f"loader.collate_fn([loader.dataset[i] for i in range({indices.start}, {indices.stop})])"
                )
                samples = [ctx.call(f"loader.dataset[{i}]", operator.getitem, dataset, i) for i in indices]
            expected = ctx.call(what, collate_fn, samples)
        found = difference(batch, expected)
        if found:
            ctx.fail(
                f"batch {position} differs from {what} ({found}); expected the loader to collate "
                "consecutive samples with its own collate_fn (declare ordered=False for a loader that "
                "does not load its dataset in order, deterministic=False for random samples)",
                reproduce=f"list(loader)[{position}] == {what}",
            )


def _torch_loader(ctx: Context) -> bool:
    torch_data = sys.modules.get("torch.utils.data")
    return torch_data is not None and isinstance(ctx.obj, torch_data.DataLoader)


def _collate_input(ctx: Context) -> tuple[str, Any] | None:
    """What the loader hands its collate_fn for its first batch, computed from a map-style dataset
    (``[loader.dataset[0], loader.dataset[1]]``, or ``loader.dataset[0]`` without batching), with how
    it is shown; None when it cannot be told (a stream, an empty or failing dataset)."""
    loader = ctx.obj
    dataset = getattr(loader, "dataset", None)
    if dataset is None or _is_stream(ctx):
        return None
    length = _sized_len(ctx, dataset, "loader.dataset")
    if not length:
        return None
    batched = getattr(loader, "batch_sampler", None) is not None
    samples = []
    for index in range(min(length, 2) if batched else 1):
        sample = ctx.attempt(f"loader.dataset[{index}]", operator.getitem, dataset, index)
        if isinstance(sample, Exception):
            return None
        samples.append(sample)
    if not batched:
        return "loader.dataset[0]", samples[0]
    return "[" + ", ".join(f"loader.dataset[{i}]" for i in range(len(samples))) + "]", samples


def _copied(value: Any) -> Any:
    """A deep copy of ``value`` for one call (a collate_fn may change its input), or ``value`` itself
    when it cannot be copied."""
    copied, error = try_deepcopy(value, "copy.deepcopy(<the samples>)")
    return value if error is not None else copied


@register_check(
    protocol=Loader,
    severity="required",
    needs=("torch",),
    requires=(iter_returns_iterator,),
    since="0.1.0",
    touches="itself",
)
def worker_functions_pickle(ctx: Context) -> None:
    """With worker processes not explicitly forked, loader.collate_fn and loader.worker_init_fn pickle,
    and the unpickled collate_fn collates as the original."""
    loader = ctx.obj
    if not _torch_loader(ctx):
        ctx.skip("not a torch.utils.data.DataLoader: how it starts worker processes is unknown")
    num_workers = getattr(loader, "num_workers", 0)
    if not isinstance(num_workers, int) or num_workers <= 0:
        ctx.skip("the loader has no worker processes (num_workers=0): nothing is pickled")
    context = getattr(loader, "multiprocessing_context", None)
    if context is not None:
        method = ctx.attempt("loader.multiprocessing_context.get_start_method()", context.get_start_method)
        if method == "fork":
            ctx.skip(
                "multiprocessing_context='fork': forked workers inherit the functions, nothing is pickled"
            )
    received = "a worker process started with spawn or forkserver receives it pickled"
    spawn = (
        f"{received} (the default start method on macOS, on Windows and on Linux from Python 3.14, "
        "which DataLoader follows unless given multiprocessing_context='fork'): define it at module "
        "level (a lambda or a function defined inside another cannot be pickled), or use "
        "functools.partial of a module-level function"
    )
    clones: dict[str, Any] = {}
    for name in ("collate_fn", "worker_init_fn"):
        fn = getattr(loader, name, None)
        if fn is None:
            continue
        clone, problem = round_trip(ctx, fn, f"loader.{name}")
        if problem is not None:
            why, reproduce = problem
            ctx.fail(
                f"{why}; expected loader.{name} to pickle, since with num_workers={num_workers} {spawn}",
                reproduce=reproduce,
            )
        clones[name] = clone
    if "collate_fn" not in clones:
        return
    if not ctx.options.deterministic:
        ctx.note("deterministic=False: the unpickled collate_fn's output was not compared")
        return
    given = _collate_input(ctx)
    if given is None:
        ctx.note("no samples of the dataset to collate (a stream): the unpickled collate_fn was not called")
        return
    shown, samples = given
    expected = ctx.call(f"loader.collate_fn({shown})", loader.collate_fn, _copied(samples))
    clone_call = f"pickle.loads(pickle.dumps(loader.collate_fn))({shown})"
    restored = ctx.call(clone_call, clones["collate_fn"], _copied(samples))
    found = difference(restored, expected)
    if found:
        ctx.fail(
            f"{clone_call} differs from loader.collate_fn({shown}) ({found}); expected the same batch "
            f"(with num_workers={num_workers}, {received}: its __reduce__ or __getstate__ "
            "must keep what it collates with)",
            reproduce=f"{clone_call} == loader.collate_fn({shown})",
        )


@register_check(
    protocol=Loader,
    severity="required",
    needs=("torch",),
    requires=(epoch_ends,),
    since="0.1.0",
    touches="itself",
)
def pin_memory_returns_batch(ctx: Context) -> None:
    """With pin_memory=True, a batch of a custom type with a pin_memory() method gets the pinned batch
    back from it: the same type, equal values, not None."""
    if getattr(ctx.obj, "pin_memory", None) is not True:
        ctx.skip("the loader does not pin memory (pin_memory is not True)")
    batches: list[tuple[str, Any]]
    if _torch_loader(ctx) and accelerator_available():
        # torch pinned the epoch's batches already: pin what collate_fn makes of the first samples.
        given = _collate_input(ctx)
        collate_fn = getattr(ctx.obj, "collate_fn", None)
        if given is None or collate_fn is None:
            ctx.skip("torch pinned the batches already, and there are no dataset samples to collate anew")
        shown, samples = given
        what = f"loader.collate_fn({shown})"
        batches = [(what, ctx.call(what, collate_fn, _copied(samples)))]
    else:
        # Without an accelerator torch does not pin (DataLoader warns and skips it): the batches are
        # as collate_fn made them.
        batches = [(f"list(loader)[{k}]", batch) for k, batch in enumerate(first_epoch(ctx).prefix[:3])]
    for shown, batch in batches:
        problem = pin_problem(ctx, batch, shown)
        if problem is not None:
            ctx.fail(problem[0], reproduce=problem[1])
    if not accelerator_available():
        ctx.note("no accelerator: Tensor.pin_memory was stood in for by Tensor.clone during the calls")


# -- what a DataLoader's workers and fetcher do with the dataset (SPEC.md, "Loader") -----------------


def _map_dataset(ctx: Context) -> tuple[Any, int]:
    """loader.dataset and its length, for a loader over a sized map-style dataset; skips otherwise."""
    dataset = getattr(ctx.obj, "dataset", None)
    if dataset is None or _is_stream(ctx):
        ctx.skip("the clause applies to a loader that exposes a map-style dataset as loader.dataset")
    length = _sized_len(ctx, dataset, "loader.dataset")
    if length is None:
        ctx.skip("loader.dataset is not sized")
    return dataset, length


@register_check(protocol=Loader, severity="required", requires=(epoch_ends,), since="0.1.0", touches="itself")
def samples_survive_later_fetches(ctx: Context) -> None:
    """A sample of loader.dataset keeps its value while the other samples of its batch are fetched
    (torch's fetcher fetches all of a batch's samples before collating them)."""
    dataset, length = _map_dataset(ctx)
    if callable(getattr(dataset, "__getitems__", None)):
        ctx.skip(
            "loader.dataset has __getitems__: torch's fetcher asks it for a batch's samples at once, "
            "not one by one (map_dataset.getitems_matches_getitem compares the two)"
        )
    groups = _index_groups(ctx, first_epoch(ctx).count)
    indices = groups[0][:4] if groups and len(set(groups[0])) > 1 else list(range(min(length, 2)))
    indices = list(dict.fromkeys(indices))
    if len(indices) < 2:
        ctx.skip("loader.dataset has fewer than two samples")
    with preserved(dataset, max_array_bytes=DATA_ARRAY_BYTES):
        problem = overwritten_sample_problem(ctx, dataset, "loader.dataset", indices)
    if problem is not None:
        ctx.fail(problem[0], reproduce=problem[1])


def _workers(ctx: Context) -> int:
    workers = getattr(ctx.obj, "num_workers", 0)
    return workers if isinstance(workers, int) and not isinstance(workers, bool) else 0


@register_check(
    protocol=Loader,
    severity="required",
    needs=("torch",),
    requires=(epoch_ends,),
    since="0.1.0",
    touches="itself",
)
def workers_yield_each_item_once(ctx: Context) -> None:
    """A DataLoader with several workers over an IterableDataset yields as many samples in an epoch as
    one pass of the dataset in this process (each worker must shard the stream)."""
    if not _torch_loader(ctx) or not _is_stream(ctx):
        ctx.skip("applies to a torch.utils.data.DataLoader over a torch.utils.data.IterableDataset")
    workers = _workers(ctx)
    if workers < 2:
        ctx.skip(f"the loader has num_workers={workers}: a single process yields the stream once")
    if ctx.options.infinite:
        ctx.skip("the loader is infinite")
    record = first_epoch(ctx)
    if record.count > len(record.prefix):
        ctx.skip(f"the epoch has more than max_items={ctx.options.max_items} batches: raise max_items")
    dataset = ctx.obj.dataset
    limit = ctx.options.max_items * max(1, getattr(ctx.obj, "batch_size", None) or 1)
    with preserved(dataset, max_array_bytes=DATA_ARRAY_BYTES):
        iterator = ctx.call("iter(loader.dataset)", iter, dataset)
        single = record_pass(ctx, iterator, "it", limit=limit + 1, keep=1)
    if not single.ended:
        ctx.skip(f"a pass of loader.dataset in this process is longer than {limit} items (raise max_items)")
    batched = getattr(ctx.obj, "batch_size", None) is not None or getattr(ctx.obj, "batch_sampler", None)
    like = single.prefix[0] if single.prefix else NO_SAMPLE
    counts = [sample_count(batch, like=like) if batched else 1 for batch in record.prefix]
    if None in counts:
        ctx.skip(
            f"cannot count the samples of batch {counts.index(None)}: "
            f"{describe(record.prefix[counts.index(None)])}"
        )
    loaded = sum(count for count in counts if count is not None)
    if loaded <= single.count:
        return  # fewer: each worker's partial batch under drop_last (loader.batches_cover_dataset counts)
    times = f" ({loaded / single.count:g} times as many)" if single.count else ""
    ctx.fail(
        f"an epoch of the loader (num_workers={workers}) held {loaded} samples{times} but one pass of "
        f"loader.dataset in this process yields {single.count}; expected each item once: each worker "
        "iterates its own copy of the dataset and yields the whole stream: shard it in __iter__ with "
        "torch.utils.data.get_worker_info() (worker k of n takes items k, k + n, ...)",
        reproduce="sum(<samples in batch> for batch in loader) == len(list(loader.dataset))",
    )


@register_check(
    protocol=Loader,
    severity="recommended",
    needs=("torch", "workers"),
    requires=(epoch_ends,),
    since="0.1.0",
    touches="itself",
)
def set_epoch_reaches_persistent_workers(ctx: Context) -> None:
    """A DataLoader with persistent workers over a dataset with set_epoch: the workers see the epoch
    that loader.dataset.set_epoch(e) sets in this process."""
    loader = ctx.obj
    if (
        not _torch_loader(ctx)
        or getattr(loader, "persistent_workers", False) is not True
        or _workers(ctx) < 1
    ):
        ctx.skip("applies to a torch.utils.data.DataLoader with persistent_workers=True and num_workers > 0")
    dataset = loader.dataset
    if not callable(getattr(dataset, "set_epoch", None)):
        sampler = (
            ""
            if not callable(getattr(loader.sampler, "set_epoch", None))
            else (
                " (loader.sampler.set_epoch runs in this process, which draws the indices: it reaches "
                "every epoch)"
            )
        )
        ctx.skip(f"loader.dataset has no set_epoch method{sampler}")
    if not ctx.options.deterministic:
        ctx.skip("the target declares deterministic=False: the samples of two epochs cannot be compared")
    with preserved(dataset, max_array_bytes=DATA_ARRAY_BYTES):
        if _is_stream(ctx):
            problem = stream_stale_epoch(ctx, dataset, "loader.dataset")
        else:
            _, length = _map_dataset(ctx)
            indices = ctx.sample_indices(length)[:8]
            if not indices:
                ctx.skip("loader.dataset is empty")
            problem = map_stale_epoch(ctx, dataset, "loader.dataset", indices)
    if problem is not None:
        ctx.fail(f"the loader has persistent_workers=True: {problem[0]}", reproduce=problem[1])


# -- loaders under a real process group (SPEC.md, "Distributed data") ----------------------------------
# Every rank runs shards(rank, world_size) in a gloo process group on loopback
# (torchcontract.conformance._core.process_group). Inside a process group that already exists (under
# torchrun) the clauses run collectively on it instead: this process is one rank, nothing is spawned,
# and every rank computes the same verdict from the same exchanged outcomes.


def _reproduce(world_size: int) -> str:
    if in_process_group():
        return f"torchrun --nproc-per-node {world_size} -m torchcontract check-distributed MODULE:SHARDS"
    return f"torchcontract.conformance.check_distributed(shards, world_size={world_size})"


def _group_run(ctx: Context) -> tuple[list[RankOutcome], int]:
    world_size = world_size_option(ctx)
    collective = in_process_group()
    if collective:
        group_size = group_rank_and_size()[1]
        if group_size != world_size:
            ctx.skip(
                f"the target declares world_size={world_size}, but the current process group has "
                f"{group_size} ranks: the clauses run on the group as it is"
            )
    if ctx.options.infinite:
        ctx.skip("the target declares infinite=True: the ranks' epochs have no end to count or compare")
    factory = ctx.options.shards
    if factory is None:
        ctx.skip("give shards=<a picklable function (rank, world_size) -> the loader of that rank>")

    def gather() -> list[RankOutcome] | str:
        # Every rank calls this at the same point (the checks run in the same order on every rank);
        # what the loader raises is in the outcomes, and the exchange is bounded by 80% of the budget.
        rank = group_rank_and_size()[0]
        with object_call(f"shards({rank}, {world_size}) on rank {rank} of the current process group"):
            return gather_in_group(factory, epochs=2, timeout_s=ctx.time_budget_s * 0.8)

    def run() -> list[RankOutcome] | str:
        pickled = ctx.call("pickle.dumps(shards)", fresh.pickled, factory)
        try:
            # The fresh interpreter's start is not charged: the ranks get 80% of the budget after it.
            with object_call(
                f"a gloo process group of {world_size} ranks running shards(rank, {world_size})"
            ):
                return run_ranks(pickled, world_size, epochs=2, timeout_s=ctx.time_budget_s * 0.8)
        except fresh.Unavailable as why:
            return str(why)

    outcomes = ctx.shared(_PROCESS_GROUP_RUN, gather if collective else run)
    if isinstance(outcomes, str):
        ctx.skip(outcomes)
    failed = [outcome for outcome in outcomes if outcome.error]
    if failed:
        # A rank that died or hung is the cause; its peers then fail in a collective.
        failed.sort(key=lambda outcome: (outcome.epochs != [] or "Traceback" in (outcome.error or ""),))
        first = failed[0]
        error = (first.error or "").strip()
        others = ", ".join(f"rank {o.rank}: {(o.error or '').strip().splitlines()[-1]}" for o in failed[1:])
        ctx.fail(
            f"rank {first.rank} of {world_size} failed: {error.splitlines()[-1]}"
            + (f"; then {others}" if others else "")
            + (
                "; expected every rank to finish its epochs"
                if collective
                else "; every rank process was stopped"
            ),
            reproduce=_reproduce(world_size),
        )
    return outcomes, world_size


@register_check(
    protocol=Loader, severity="required", needs=("torch", "distributed"), since="0.1.0", touches="itself"
)
def ranks_yield_equal_batch_counts(ctx: Context) -> None:
    """Under a process group, every rank's loader yields the same number of batches each epoch."""
    if ctx.options.uneven_shards:
        world_size_option(ctx)
        ctx.skip(
            "the target declares uneven_shards=True: its ranks get unequal batch counts by design "
            "(evaluation sharding); loader.ranks_cover_dataset checks every sample is on exactly one rank"
        )
    outcomes, world_size = _group_run(ctx)
    for epoch in range(len(outcomes[0].epochs)):
        gathered = outcomes[0].epochs[epoch]["gathered"]
        if len(set(gathered)) > 1:
            ctx.fail(
                f"in epoch {epoch}, the {world_size} ranks yielded {gathered} batches (gathered across "
                "the ranks); expected the same number on every rank: in training, a rank "
                "with an extra batch blocks in its gradient all-reduce until the process-group timeout "
                "(for evaluation sharding without padding, by design, declare uneven_shards=True)",
                reproduce=_reproduce(world_size),
            )


@register_check(
    protocol=Loader,
    severity="required",
    needs=("torch", "distributed"),
    requires=(ranks_yield_equal_batch_counts,),
    since="0.1.0",
    touches="itself",
)
def ranks_cover_dataset(ctx: Context) -> None:
    """Under a process group, the ranks' batches together hold every sample once per epoch (up to
    padding): judged by the indices of the samplers the loaders expose, else by the samples' content."""
    outcomes, world_size = _group_run(ctx)
    factory = ctx.options.shards
    whole = ctx.call("shards(0, 1)", factory, 0, 1) if factory is not None else None
    reference = ctx.call("one epoch of shards(0, 1) (after set_epoch(0))", read_epoch, whole, 0)
    epochs = range(len(outcomes[0].epochs))
    by_indices = reference["indices"] is not None and all(
        outcome.epochs[epoch].get("indices") is not None for outcome in outcomes for epoch in epochs
    )
    if not by_indices:
        _content_comparable(ctx, reference)
    key = "indices" if by_indices else "rows"
    expected: Counter[Any] = Counter(reference[key])
    sampler = getattr(whole, "sampler", None)
    batch_size = getattr(whole, "batch_size", None)
    allowed_missing = world_size - 1 if getattr(sampler, "drop_last", False) else 0
    if getattr(whole, "drop_last", False) and isinstance(batch_size, int):
        allowed_missing += world_size * (batch_size - 1)
    allowed_extra, why = world_size - 1, "up to the padding that makes the ranks equal"
    if ctx.options.uneven_shards:
        allowed_missing, allowed_extra = 0, 0
        why = "on exactly one rank: the target declares uneven_shards=True (no padding)"
    elif ctx.options.max_padding is not None:
        allowed_extra = ctx.options.max_padding
        why = f"up to the declared max_padding={allowed_extra} repeats"
    else:
        why += " (declare max_padding=k for more, or uneven_shards=True for none)"
    for epoch in epochs:
        seen: Counter[Any] = Counter()
        for outcome in outcomes:
            seen.update(outcome.epochs[epoch][key])
        missing, extra = expected - seen, seen - expected
        if sum(missing.values()) <= allowed_missing and sum(extra.values()) <= allowed_extra:
            continue
        if by_indices:
            shown = sorted(missing)[:5]
            ctx.fail(
                f"in epoch {epoch}, the {world_size} ranks' samplers drew {sum(seen.values())} indices "
                f"(loader.batch_sampler or loader.sampler, read after set_epoch({epoch})), of which "
                f"{sum(extra.values())} beyond one copy of the dataset (the indices of shards(0, 1)), and "
                f"missed {sum(missing.values())} of its {sum(expected.values())}"
                + (f" (first missed: {shown})" if shown else "")
                + f"; expected every index once per epoch, {why}",
                reproduce=_reproduce(world_size),
            )
        ctx.fail(
            f"in epoch {epoch}, the {world_size} ranks' batches held {sum(seen.values())} samples, "
            f"of which {sum(extra.values())} beyond one copy of the dataset, and missed "
            f"{sum(missing.values())} of its {sum(expected.values())} samples; expected every "
            f"sample once per epoch, {why}. Judged by the samples' content, as the loaders expose no "
            "sampler whose indices describe their epochs (loader.batch_sampler or loader.sampler)",
            reproduce=_reproduce(world_size),
        )
    if by_indices:
        ctx.note("judged by the indices of the loaders' samplers (loader.batch_sampler or loader.sampler)")


def _content_comparable(ctx: Context, reference: dict[str, Any]) -> None:
    """Skip when the ranks' coverage cannot be judged by the samples' content either."""
    how = "the loaders expose no sampler whose indices describe their epochs, and "
    if not ctx.options.deterministic:
        ctx.skip(
            f"{how}the target declares deterministic=False: the ranks' samples need not equal those of "
            "shards(0, 1) (expose the sampler as loader.sampler or loader.batch_sampler to judge by indices)"
        )
    if ctx.options.transforms_samples:
        ctx.skip(
            f"{how}the target declares transforms_samples=True: its batches cannot be split into samples "
            "to compare (expose the sampler as loader.sampler or loader.batch_sampler to judge by indices)"
        )
    if reference["unsplit"]:
        ctx.skip(
            f"{how}the batches of shards(0, 1) cannot be split into samples (their leaves disagree on the "
            "leading dimension)"
        )
