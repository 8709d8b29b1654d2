"""Checks that load through torch's DataLoader with worker processes (SPEC.md, "Worker processes").

They run in the calling thread (forking a process that runs other threads is unsafe) and bound every
wait with DataLoader's ``timeout``. Samples cross the process boundary untouched (an identity
``collate_fn``), so they compare with the samples of the calling process.
"""

from __future__ import annotations

import copy
import multiprocessing
import operator
from collections import Counter
from collections.abc import Callable
from typing import Any

from torchcontract.conformance._engine import Context
from torchcontract.conformance._registry import register_check
from torchcontract.conformance._values import describe, difference, fingerprint
from torchcontract.conformance.checks._common import END, next_item
from torchcontract.conformance.checks.iterable_dataset import ENDS as ITERABLE_ENDS
from torchcontract.conformance.checks.iterable_dataset import NEW_PASS, first_pass
from torchcontract.conformance.checks.map_dataset import GETITEM, PAST_END
from torchcontract.protocols import IterableDataset, MapDataset

__all__ = ["identity"]


def identity(sample: Any) -> Any:
    """The collate_fn of these checks: samples arrive as the dataset produced them."""
    return sample


def fresh_process_context() -> Any:
    """A start method whose workers receive the dataset pickled, in an interpreter that did not fork
    from this one: ``forkserver`` where it exists (Python 3.14's default on Linux; its server imports
    torch once, so each worker starts in milliseconds), else ``spawn``."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # '__main__' as spawn does: classes defined in the main script can be unpickled in workers.
    context.set_forkserver_preload(["__main__", "torch"])
    return context


def _loader(
    ctx: Context,
    dataset: Any,
    *,
    sampler: Any = None,
    num_workers: int | None = None,
    context: Any = None,
) -> Any:
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_size=None,
        sampler=sampler,
        num_workers=ctx.options.num_workers if num_workers is None else num_workers,
        collate_fn=identity,
        timeout=ctx.time_budget_s,
        multiprocessing_context=context,
    )


def _drain(ctx: Context, loader: Any, what: str, limit: int) -> list[Any]:
    """Up to ``limit`` items of one epoch of ``loader``, as many as the time budget allows; its
    workers are shut down afterwards."""
    iterator = ctx.call(f"iter({what})", iter, loader)
    items: list[Any] = []
    try:
        while len(items) < limit and not ctx.out_of_time():
            item = next_item(ctx, iterator, f"next(iter({what})) (item {len(items)})")
            if item is END:
                break
            items.append(item)
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
    return items


def _torch_stream(ctx: Context) -> None:
    """Skip unless the dataset is one that torch's DataLoader streams."""
    from torch.utils.data import IterableDataset as TorchIterableDataset

    if not isinstance(ctx.obj, TorchIterableDataset):
        ctx.skip(
            "torch's DataLoader streams only subclasses of torch.utils.data.IterableDataset (it treats "
            "anything else as map-style)"
        )
    if ctx.options.infinite:
        ctx.skip("the stream is infinite")


def _length(ctx: Context) -> int:
    return ctx.shared("len", lambda: int(ctx.call("len(ds)", len, ctx.obj)))


WORKERS = "DataLoader(ds, num_workers={n})"
PICKLE = "map_dataset.pickle_round_trip"


@register_check(
    "iterable_dataset.workers_yield_each_item_once",
    protocol=IterableDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(ITERABLE_ENDS, NEW_PASS),
)
def workers_yield_each_item_once(ctx: Context) -> None:
    """With worker processes, the items of one epoch are those of one pass in one process, each once."""
    _torch_stream(ctx)
    record = first_pass(ctx)
    workers = ctx.options.num_workers
    what = WORKERS.format(n=workers)
    items = _drain(ctx, _loader(ctx, ctx.obj), what, limit=record.count * workers + 1)
    if len(items) < record.count and ctx.out_of_time():
        ctx.skip(f"the time budget ran out after {len(items)} of {record.count} items through {what}")
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
            f"process ({sum((seen - expected).values())} differ); expected the same items, each once",
            reproduce=f"sorted(DataLoader(ds, batch_size=None, num_workers={workers})) == sorted(ds)",
        )


def _epochs(ctx: Context) -> tuple[Any, Callable[[int], None]]:
    """The dataset to load, and how to start an epoch: a dataset with ``set_epoch`` (a seeded shuffle,
    as in HuggingFace's IterableDataset or torch's DistributedSampler) gets ``set_epoch(epoch)`` first,
    as training loops call it; on a deep copy, so that the object's own epoch is left alone."""
    if not callable(getattr(ctx.obj, "set_epoch", None)):
        return ctx.obj, lambda epoch: None
    dataset = ctx.call("copy.deepcopy(ds)", copy.deepcopy, ctx.obj)
    return dataset, lambda epoch: ctx.call(f"ds.set_epoch({epoch})", dataset.set_epoch, epoch)


def _randomness_problem(ctx: Context, first: list[Any], second: list[Any], what: str) -> str | None:
    """Why two epochs of per-worker draws show shared random state, or None."""
    if len(first) < 2 or not second:
        ctx.skip(f"{what} yielded too few items to compare workers")
    if difference(first[0], first[1]) is None:
        return (
            f"workers 0 and 1 of {what} drew identical samples ({describe(first[0])}); expected "
            "independent random draws. A random generator created in __init__ (such as "
            "np.random.default_rng()) is copied into every worker: seed it per worker from "
            "torch.utils.data.get_worker_info().seed, or use torch's or NumPy's global RNG, which "
            "torch reseeds in each worker"
        )
    if difference(first[0], second[0]) is None:
        return (
            f"worker 0 of {what} drew the same sample in two epochs ({describe(first[0])}); expected "
            "new random draws each epoch. Workers restart each epoch from a copy of the dataset, so "
            "a generator stored in it restarts from the same state: seed it per worker and epoch "
            "from torch.utils.data.get_worker_info().seed (or from seed + epoch, with a set_epoch "
            "method that training loops call)"
        )
    return None


@register_check(
    "iterable_dataset.workers_draw_independent_randomness",
    protocol=IterableDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(ITERABLE_ENDS, NEW_PASS),
)
def iterable_workers_draw_independent_randomness(ctx: Context) -> None:
    """A dataset declared deterministic=False draws different randomness in each worker and epoch."""
    if ctx.options.deterministic:
        ctx.skip("applies to datasets declared deterministic=False")
    _torch_stream(ctx)
    what = WORKERS.format(n=2)
    dataset, epoch = _epochs(ctx)
    loader = _loader(ctx, dataset, num_workers=2)
    # In-order loading alternates workers: items 0 and 1 come from workers 0 and 1.
    epoch(0)
    first = _drain(ctx, loader, what, limit=2)
    epoch(1)
    second = _drain(ctx, loader, what, limit=1)
    problem = _randomness_problem(ctx, first, second, what)
    if problem:
        ctx.fail(problem, reproduce=f"list(itertools.islice({what}, 2))")


@register_check(
    "map_dataset.workers_draw_independent_randomness",
    protocol=MapDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(GETITEM,),
)
def map_workers_draw_independent_randomness(ctx: Context) -> None:
    """A dataset declared deterministic=False draws different randomness in each worker and epoch."""
    if ctx.options.deterministic:
        ctx.skip("applies to datasets declared deterministic=False")
    if _length(ctx) == 0:
        ctx.skip("ds is empty")
    what = "DataLoader(ds, sampler=[0, 0, 0, 0], num_workers=2)"
    # Index 0 four times: tasks go to the workers in turn, so items 0 and 1 come from workers 0
    # and 1 drawing for the same sample.
    dataset, epoch = _epochs(ctx)
    loader = _loader(ctx, dataset, sampler=[0, 0, 0, 0], num_workers=2)
    epoch(0)
    first = _drain(ctx, loader, what, limit=4)
    epoch(1)
    second = _drain(ctx, loader, what, limit=1)
    problem = _randomness_problem(ctx, first, second, what)
    if problem:
        ctx.fail(problem, reproduce=f"list({what.replace('ds,', 'ds, batch_size=None,')})")


@register_check(
    "map_dataset.worker_errors_keep_their_type",
    protocol=MapDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(PAST_END,),
)
def worker_errors_keep_their_type(ctx: Context) -> None:
    """An exception raised by the dataset in a worker reaches the caller with its original type."""
    length = _length(ctx)
    local = ctx.attempt(f"ds[{length}]", operator.getitem, ctx.obj, length)
    if not isinstance(local, Exception):
        ctx.skip(f"ds[{length}] does not raise")
    what = f"DataLoader(ds, sampler=[{length}], num_workers=2)"
    iterator = ctx.call(f"iter({what})", iter, _loader(ctx, ctx.obj, sampler=[length], num_workers=2))
    try:
        outcome = ctx.attempt(f"next(iter({what}))", next, iterator)
    finally:
        iterator._shutdown_workers()
    if not isinstance(outcome, Exception):
        ctx.fail(
            f"in a worker, ds[{length}] returned {describe(outcome)} but in this process it raises "
            f"{type(local).__name__}; expected the same behaviour in workers",
            reproduce=f"list({what})",
        )
    if type(outcome) is not type(local):
        ctx.fail(
            f"ds[{length}] raises {type(local).__name__} in this process, but through {what} the caller "
            f"got {type(outcome).__name__}: {str(outcome).splitlines()[0]}; expected the original type "
            "(torch rebuilds it in the main process as exc_type(message): an exception class whose "
            "__init__ needs other arguments turns into RuntimeError, and `except` clauses miss it)",
            reproduce=f"list({what})",
        )


@register_check(
    "map_dataset.spawn_workers_yield_same_samples",
    protocol=MapDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(PICKLE,),
)
def spawn_workers_yield_same_samples(ctx: Context) -> None:
    """A worker that rebuilds the dataset from its pickle (spawn, forkserver) yields the same samples."""
    indices = ctx.sample_indices(_length(ctx))[:8]
    context = fresh_process_context()
    what = f"DataLoader(ds, num_workers=1, multiprocessing_context={context.get_start_method()!r})"
    loader = _loader(ctx, ctx.obj, sampler=indices, num_workers=1, context=context)
    items = _drain(ctx, loader, what, limit=len(indices) + 1)
    if len(items) != len(indices):
        ctx.fail(
            f"{what} with sampler={indices} yielded {len(items)} samples; expected {len(indices)}",
            reproduce=f"list({what})",
        )
    for index, item in zip(indices, items, strict=True):
        expected = ctx.call(f"ds[{index}]", operator.getitem, ctx.obj, index)
        found = difference(item, expected) if ctx.options.deterministic else None
        if found:
            ctx.fail(
                f"in a worker started with {context.get_start_method()}, ds[{index}] differs from "
                f"ds[{index}] in this process ({found}); expected the same sample (the worker rebuilds "
                "the dataset from its pickle and re-imports its module: state set at run time in the "
                "main process is lost)",
                reproduce=f"list({what})",
            )


@register_check(
    "iterable_dataset.spawn_workers_yield_same_items",
    protocol=IterableDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(ITERABLE_ENDS, NEW_PASS),
)
def spawn_workers_yield_same_items(ctx: Context) -> None:
    """A worker that rebuilds the dataset from its pickle (spawn, forkserver) yields the same items."""
    _torch_stream(ctx)
    record = first_pass(ctx)
    context = fresh_process_context()
    what = f"DataLoader(ds, num_workers=1, multiprocessing_context={context.get_start_method()!r})"
    loader = _loader(ctx, ctx.obj, num_workers=1, context=context)
    items = _drain(ctx, loader, what, limit=record.count + 1)
    if len(items) != record.count:
        ctx.fail(
            f"{what} yielded {len(items)} items but a pass in this process yields {record.count}; "
            "expected the same items (the worker rebuilds the dataset from its pickle)",
            reproduce=f"len(list({what}))",
        )
    if not ctx.options.deterministic:
        return
    for position, (item, expected) in enumerate(zip(items, record.prefix, strict=False)):
        found = difference(item, expected)
        if found:
            ctx.fail(
                f"item {position} from a worker started with {context.get_start_method()} differs from "
                f"item {position} of a pass in this process ({found}); expected the same items",
                reproduce=f"list({what})[{position}]",
            )
