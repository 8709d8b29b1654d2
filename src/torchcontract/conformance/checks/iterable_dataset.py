"""Checks for :class:`~torchcontract.protocols.IterableDataset` (SPEC.md, "IterableDataset").

Every check restores the dataset afterwards (the engine's snapshot, :mod:`~._preserve`): a dataset that counts
its passes (and shuffles by that count) starts its next pass after ``check()`` as it would have
before. Under ``infinite=True`` no pass is read beyond ``max_items`` items.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from torchcontract.conformance._core.context import Context
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._values import describe, difference, fingerprint, is_iterable_style
from torchcontract.conformance.checks._common import (
    END,
    Pass,
    declared_length,
    first_structure_mismatch,
    iterator_problem,
    next_item,
    record_pass,
    recorded_first_pass,
)
from torchcontract.conformance.checks._workers import (
    MAX_EPOCHS,
    PAIRS,
    SPAWNED,
    WORKERS,
    crossing_problem,
    drain,
    epochs_of,
    in_fresh_interpreter,
    pairs_of,
    randomness_problem,
    require_torch_stream,
    stream_stale_epoch,
    unpickled,
    worker_loader,
)
from torchcontract.protocols import IterableDataset


def first_pass(ctx: Context) -> Pass:
    """The first pass over the dataset: its length (when it ends) and its first items."""
    return recorded_first_pass(ctx, "ds")


@register_check(protocol=IterableDataset, severity="required", since="0.1.0")
def iter_returns_iterator(ctx: Context) -> None:
    """iter(ds) returns an iterator: it has __next__ and iter(it) is it."""
    problem = iterator_problem(ctx, ctx.obj, "ds")
    if problem:
        ctx.fail(problem, reproduce="it = iter(ds); next(it); iter(it) is it")


@register_check(
    protocol=IterableDataset, severity="required", requires=(iter_returns_iterator,), since="0.1.0"
)
def iteration_ends(ctx: Context) -> None:
    """A pass ends within the time budget (for a dataset declared infinite=True, a prefix is drawn)."""
    record = first_pass(ctx)
    if record.timed_out:
        if ctx.options.infinite:
            ctx.fail(
                f"drawing {ctx.options.max_items} items from the infinite stream took longer than the "
                f"time budget ({ctx.time_budget_s:g} s; {record.count} items came)",
                reproduce=f"itertools.islice(ds, {ctx.options.max_items})",
            )
        ctx.fail(
            f"iter(ds) yielded {record.count} items in the time budget ({ctx.time_budget_s:g} s) "
            "without ending; expected a finite pass (declare infinite=True for an endless stream)",
            reproduce="for sample in ds: pass",
        )
    if ctx.options.infinite:
        if record.ended:
            ctx.note(f"declared infinite, but the stream ended after {record.count} items")
        else:
            ctx.note(f"infinite stream: checked its first {record.count} items")


def _not_a_new_pass(ctx: Context, second: int, first: int) -> None:
    ctx.fail(
        f"a second iter(ds) yielded {second} items but the first yielded {first}; "
        "expected each iter(ds) to start a new, whole pass (is __iter__ returning a shared "
        "iterator, or a generator object rather than a new one?)",
        reproduce="len(list(ds)) == len(list(ds))",
    )


@register_check(protocol=IterableDataset, severity="required", requires=(iteration_ends,), since="0.1.0")
def new_iter_starts_new_pass(ctx: Context) -> None:
    """A new iter(ds) starts a new pass: the same number of items (equal items when deterministic)."""
    shared = first_pass(ctx)
    limit = shared.count + 1 if shared.ended else shared.count
    # Both passes are drawn in this check: the restorer puts a pass counter (or an iterator position
    # kept on the dataset) back after each check, so the pass another check recorded is no earlier
    # pass of this one. That pass is compared too, for state the restorer cannot reach (a generator
    # object held by the dataset).
    first = record_pass(
        ctx,
        ctx.call("iter(ds)", iter, ctx.obj),
        "it",
        limit=limit,
        keep=len(shared.prefix),
        budget_fraction=0.4,
        judges_time=True,
    )
    if first.timed_out:
        ctx.unverified(
            "during the first pass: two passes do not fit in one check (a pass takes more than 40%)"
        )
    if shared.ended and first.count != shared.count:
        _not_a_new_pass(ctx, first.count, shared.count)
    iterator = ctx.call("iter(ds)", iter, ctx.obj)
    limit = first.count + 1 if first.ended else first.count
    second = record_pass(ctx, iterator, "it", limit=limit, keep=len(first.prefix))
    if first.ended and second.count != first.count:
        _not_a_new_pass(ctx, second.count, first.count)
    if not first.ended and second.count < first.count:
        ctx.fail(
            f"a second iter(ds) of the infinite stream ended after {second.count} items; expected "
            "an endless stream again",
            reproduce=f"len(list(itertools.islice(ds, {first.count})))",
        )
    # deterministic=False: only the count is compared (a random stream still has a fixed length per
    # pass). ordered=False (a stream that shuffles each pass): the items are compared as a multiset,
    # when both whole passes were kept.
    if ctx.options.deterministic and ctx.options.ordered is False:
        whole = first.ended and first.count == len(first.prefix) and second.count == len(second.prefix)
        if whole and Counter(map(fingerprint, first.prefix)) != Counter(map(fingerprint, second.prefix)):
            ctx.fail(
                "two passes yielded different items (ordered=False: compared in any order); expected "
                "the same items in each pass (or declare the dataset deterministic=False)",
                reproduce="sorted(list(ds)) == sorted(list(ds))",
            )
        return
    if ctx.options.deterministic:
        for position, (one, two) in enumerate(zip(first.prefix, second.prefix, strict=False)):
            found = difference(one, two)
            if found:
                ctx.fail(
                    f"item {position} differs between two passes ({found}); expected the same items "
                    "(declare ordered=False for a stream that shuffles each pass, deterministic=False for "
                    "random items)",
                    reproduce=f"list(ds)[{position}] == list(ds)[{position}]",
                )


@register_check(protocol=IterableDataset, severity="required", requires=(iteration_ends,), since="0.1.0")
def len_matches_item_count(ctx: Context) -> None:
    """If ds has __len__, len(ds) equals the number of items in a pass."""
    length = declared_length(ctx, "ds")
    record = first_pass(ctx)
    if not record.ended:
        ctx.skip("the stream is infinite; len(ds) cannot be compared with a count")
    if length != record.count:
        ctx.fail(
            f"len(ds) == {length} but a pass yielded {record.count} items; expected them equal "
            "(len(DataLoader) is computed from len(ds), and torch's warning compares batches with it, "
            "so with batching it never fires)",
            reproduce="len(ds) == sum(1 for _ in ds)",
        )


@register_check(protocol=IterableDataset, severity="required", requires=(iteration_ends,), since="0.1.0")
def exhaustion_is_sticky(ctx: Context) -> None:
    """After StopIteration, next(it) raises StopIteration again."""
    record = first_pass(ctx)
    if not record.ended:
        ctx.skip("the stream is infinite: its iterators never stop")
    iterator = ctx.call("iter(ds)", iter, ctx.obj)
    exhausted = record_pass(ctx, iterator, "it", limit=record.count + 1, keep=0)
    if not exhausted.ended:
        ctx.skip("a second pass did not end (reported by new_iter_starts_new_pass)")
    for attempt in (1, 2):
        item = next_item(ctx, iterator, f"next(it) after StopIteration (attempt {attempt})")
        if item is not END:
            ctx.fail(
                f"next(it) returned {describe(item)} after the iterator had raised StopIteration; "
                "expected StopIteration again (an exhausted iterator must stay exhausted; a DataLoader "
                "with batch_size=None over ds would restart the pass)",
                reproduce="it = iter(ds); list(it); next(it)",
            )


@register_check(protocol=IterableDataset, severity="required", requires=(iteration_ends,), since="0.1.0")
def items_share_structure(ctx: Context) -> None:
    """Every item of a pass has the same structure (container types, arity, keys, leaf types, dtypes)."""
    record = first_pass(ctx)
    mismatch = first_structure_mismatch(record.prefix, "item {}")
    if mismatch:
        ctx.fail(mismatch, reproduce="list(ds)")
    if record.count > len(record.prefix):
        ctx.note(f"compared the first {len(record.prefix)} of {record.count} items")


# -- worker processes (SPEC.md, "Worker processes"; the mechanism is in _workers.py) -------------------


@register_check(
    protocol=IterableDataset, severity="required", needs=("torch",), requires=(iteration_ends,), since="0.1.0"
)
def items_cross_process_boundary(ctx: Context) -> None:
    """Every item of a pass can travel from a worker process to the main process: it pickles, and
    holds no tensor that requires grad or lives off the CPU."""
    if not is_iterable_style(ctx.obj):
        ctx.skip(
            "torch's DataLoader streams only subclasses of torch.utils.data.IterableDataset (it treats "
            "anything else as map-style), so no item of ds crosses from a worker"
        )
    for position, item in enumerate(first_pass(ctx).prefix):
        problem = crossing_problem(ctx, item, f"list(ds)[{position}]")
        if problem is not None:
            message, reproduce = problem
            ctx.fail(message, reproduce=reproduce)


@register_check(
    protocol=IterableDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(iteration_ends, new_iter_starts_new_pass, items_cross_process_boundary),
    since="0.1.0",
)
def workers_yield_each_item_once(ctx: Context) -> None:
    """With worker processes, the items of one epoch are those of one pass in one process, each once."""
    require_torch_stream(ctx)
    record = first_pass(ctx)
    workers = ctx.options.num_workers
    what = WORKERS.format(n=workers)
    items = drain(ctx, worker_loader(ctx, ctx.obj), what, limit=record.count * workers + 1)
    if len(items) != record.count:
        times = f" ({len(items) / record.count:g} times as many)" if len(items) > record.count > 0 else ""
        ctx.fail(
            f"{what} yielded {len(items)} items{times} but one pass of ds in this process yields "
            f"{record.count}; expected each item once. Every worker iterates its own copy of the "
            "dataset: shard it in __iter__ with torch.utils.data.get_worker_info()",
            reproduce=f"len(list(DataLoader(ds, batch_size=None, num_workers={workers})))",
        )
    if not ctx.options.deterministic or record.count > len(record.prefix):
        return  # only the count can be compared
    expected = Counter(fingerprint(item) for item in record.prefix)
    seen = Counter(fingerprint(item) for item in items)
    if seen != expected:
        ctx.fail(
            f"{what} yielded the right number of items but not the same ones as a pass in this "
            f"process ({sum((seen - expected).values())} differ); expected the same items, each once "
            "(declare deterministic=False for a stream whose items are random)",
            reproduce=f"sorted(DataLoader(ds, batch_size=None, num_workers={workers})) == sorted(ds)",
        )


@register_check(
    protocol=IterableDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(iteration_ends, new_iter_starts_new_pass, items_cross_process_boundary),
    since="0.1.0",
)
def workers_draw_independent_randomness(ctx: Context) -> None:
    """A dataset declared deterministic=False draws different randomness in each worker and epoch."""
    if ctx.options.deterministic:
        ctx.skip("applies to datasets declared deterministic=False")
    require_torch_stream(ctx)
    what = WORKERS.format(n=2)
    dataset, epoch = epochs_of(ctx)
    loader = worker_loader(ctx, dataset, num_workers=2)
    # In-order loading alternates workers: even items come from worker 0, odd ones from worker 1
    # (while both have items; a pairing of two draws of one worker is as good for the bound).
    across: list[tuple[Any, Any]] = []
    over: list[tuple[Any, Any]] = []
    previous: list[Any] | None = None
    epochs = 0
    while epochs < 2 or ((len(across) < PAIRS or len(over) < PAIRS) and epochs < MAX_EPOCHS):
        if ctx.out_of_time():
            break
        epoch(epochs)
        items = drain(ctx, loader, what, limit=2 * PAIRS, partial=True)
        epochs += 1
        if len(items) < 2 and epochs == 1:
            ctx.skip(f"{what} yielded too few items to compare workers")
        across += pairs_of(items[0::2], items[1::2])
        if previous is not None:
            over += pairs_of(previous, items[0::2])
        previous = items[0::2]
    problem = randomness_problem(ctx, across, over, what, epochs)
    if problem:
        ctx.fail(problem, reproduce=f"list(itertools.islice({what}, {2 * PAIRS}))")


@register_check(
    protocol=IterableDataset,
    severity="required",
    needs=("torch", "workers", "fresh_interpreter"),
    requires=(iteration_ends, new_iter_starts_new_pass, items_cross_process_boundary),
    since="0.1.0",
)
def spawn_workers_yield_same_items(ctx: Context) -> None:
    """A worker that rebuilds the dataset from its pickle (spawn, forkserver) yields the same items."""
    require_torch_stream(ctx)
    record = first_pass(ctx)
    what = "DataLoader(ds, num_workers=1, multiprocessing_context='spawn')"
    reproduce = f"list({what})  # in a script guarded by if __name__ == '__main__':"

    def local(position: int) -> tuple[str, Any]:
        if position < len(record.prefix):
            return f"list(ds)[{position}]", record.prefix[position]
        return f"list(ds)[{position}]", None

    fetched = in_fresh_interpreter(
        ctx, indices=None, limit=record.count + 1, reproduce=reproduce, local=local
    )
    count = len(fetched.items)
    if count != record.count:
        ctx.fail(
            f"{SPAWNED}, iter(ds) yielded {count}{'' if fetched.ended else ' or more'} items but a pass "
            f"in this process yields {record.count}; expected the same items (the worker rebuilds the "
            "dataset from its pickle)",
            reproduce=f"len({reproduce})",
        )
    if not ctx.options.deterministic:
        return
    if ctx.options.ordered is False:
        # A stream that shuffles each pass: the fresh interpreter's pass is another pass, compared in
        # any order (as iterable_dataset.new_iter_starts_new_pass compares two), when both are whole.
        if fetched.ended and count == record.count == len(record.prefix):
            items = [unpickled(ctx, blob, f"item {k}") for k, blob in enumerate(fetched.items)]
            if Counter(map(fingerprint, items)) != Counter(map(fingerprint, record.prefix)):
                ctx.fail(
                    f"{SPAWNED}, iter(ds) yielded other items than a pass in this process "
                    "(ordered=False: compared in any order); expected the same items (the worker "
                    "rebuilds the dataset from its pickle; declare deterministic=False for random items)",
                    reproduce=f"sorted(list({what})) == sorted(list(ds))",
                )
        return
    for position, (blob, expected) in enumerate(zip(fetched.items, record.prefix, strict=False)):
        item = unpickled(ctx, blob, f"item {position}")
        found = difference(item, expected)
        if found:
            ctx.fail(
                f"item {position} {SPAWNED} differs from item {position} of a pass in this process "
                f"({found}); expected the same items (declare ordered=False for a stream that shuffles "
                "each pass, deterministic=False for random items)",
                reproduce=f"list({what})[{position}]",
            )


@register_check(
    protocol=IterableDataset,
    severity="recommended",
    needs=("torch", "workers"),
    requires=(workers_yield_each_item_once,),
    since="0.1.0",
)
def set_epoch_reaches_persistent_workers(ctx: Context) -> None:
    """A stream with set_epoch yields the items of the epoch set in this process also through a
    DataLoader's persistent workers (compared in any order: the workers interleave)."""
    if not callable(getattr(ctx.obj, "set_epoch", None)):
        ctx.skip("ds has no set_epoch method")
    if not ctx.options.deterministic:
        ctx.skip("the target declares deterministic=False: the items of two epochs cannot be compared")
    require_torch_stream(ctx)
    # On the dataset itself (restored afterwards): a copy would lose the shared memory a correct
    # dataset keeps its epoch in.
    problem = stream_stale_epoch(ctx, ctx.obj, "ds")
    if problem:
        ctx.fail(problem[0], reproduce=problem[1])
