"""Checks that load through torch's DataLoader with worker processes (SPEC.md, "Worker processes").

They run in the calling thread (forking a process that runs other threads is unsafe) and bound every
wait with DataLoader's ``timeout``. Samples cross the process boundary untouched (an identity
``collate_fn``), so they compare with the samples of the calling process.

The DataLoader workers are forked (``fork`` on Linux, whatever Python's default start method), so
they never re-run the user's main script. The ``spawn`` clauses rebuild the dataset from its pickle
in torchcontract's own fresh interpreter (:mod:`torchcontract.conformance._fresh_interpreter`, which
explains why not multiprocessing's ``spawn``/``forkserver``): the main script is never executed,
and the global multiprocessing configuration is left exactly as found.

They also call the dataset in this process (``len(ds)``, ``ds[i]`` to compare with a worker's sample,
a pass of ``iter(ds)``), so each restores it afterwards (:func:`~._preserve.preserving`): a cache
filled here or a pass counter is put back.
"""

from __future__ import annotations

import copy
import multiprocessing
import operator
import pickle
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from torchcontract.conformance import _fresh_interpreter as fresh
from torchcontract.conformance._engine import Context
from torchcontract.conformance._registry import register_check
from torchcontract.conformance._values import describe, difference, fingerprint, is_iterable_style, leaves
from torchcontract.conformance.checks._common import END, next_item
from torchcontract.conformance.checks._preserve import preserving
from torchcontract.conformance.checks.iterable_dataset import ENDS as ITERABLE_ENDS
from torchcontract.conformance.checks.iterable_dataset import NEW_PASS, first_pass
from torchcontract.conformance.checks.map_dataset import GETITEM, PAST_END
from torchcontract.protocols import IterableDataset, MapDataset

__all__ = ["identity"]


def identity(sample: Any) -> Any:
    """The collate_fn of these checks: samples arrive as the dataset produced them."""
    return sample


def _fork_context() -> Any:
    """``fork`` on Linux, so that workers never re-run the main script (Python 3.14 defaults to
    ``forkserver``, which does); elsewhere the platform's default (macOS: fork is unsafe there)."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return None


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
        multiprocessing_context=_fork_context() if context is None else context,
    )


def _drain(ctx: Context, loader: Any, what: str, limit: int) -> list[Any]:
    """Up to ``limit`` items of one epoch of ``loader``, as many as the time budget allows; its
    workers are shut down afterwards."""
    iterator = ctx.call_starting_processes(f"iter({what})", iter, loader)
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


def _map_style(ctx: Context) -> None:
    """Skip when torch's DataLoader would stream the dataset (one rule: ``is_iterable_style``)."""
    if is_iterable_style(ctx.obj):
        ctx.skip(
            "torch's DataLoader streams ds (it is a torch.utils.data.IterableDataset, so DataLoader "
            "iterates it and never calls ds[i]): the map-style worker clauses do not apply"
        )


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
@preserving(data=True)
def workers_yield_each_item_once(ctx: Context) -> None:
    """With worker processes, the items of one epoch are those of one pass in one process, each once."""
    _torch_stream(ctx)
    record = first_pass(ctx)
    workers = ctx.options.num_workers
    what = WORKERS.format(n=workers)
    items = _drain(ctx, _loader(ctx, ctx.obj), what, limit=record.count * workers + 1)
    if len(items) < record.count and ctx.out_of_time():
        ctx.unverified(f"after {len(items)} of {record.count} items through {what}")
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


# How many pairs of draws the randomness clauses compare before they call shared random state a
# bug. For a correct dataset whose draws have at least 2 equally likely outcomes (more generally, no
# outcome more likely than 1/2), two independent draws are equal with probability at most 1/2, so
# all PAIRS pairs are equal with probability at most 2**-32 ~ 2.3e-10 < 1e-9: the false-alarm bound.
# A generator copied into every worker makes every pair equal, so the bug is still found.
PAIRS = 32
# A stream with few items per worker is loaded for more epochs, up to this many, to get PAIRS pairs.
MAX_EPOCHS = 40


def _pairs(first: list[Any], second: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(first, second, strict=False))


def _all_identical(pairs: list[tuple[Any, Any]]) -> bool:
    return bool(pairs) and all(difference(a, b) is None for a, b in pairs)


def _randomness_problem(
    ctx: Context, across: list[tuple[Any, Any]], over: list[tuple[Any, Any]], what: str, epochs: int
) -> str | None:
    """Why the pairs of draws (of workers 0 and 1 (``across``), of worker 0 in consecutive epochs
    (``over``)) show shared random state, or None. Every pair equal is the evidence; fewer than
    :data:`PAIRS` equal pairs are not enough for a verdict (a skip)."""
    if not across:
        ctx.skip(f"{what} yielded too few items to compare workers")
    for pairs, label in ((across, "workers 0 and 1"), (over, "worker 0 in consecutive epochs")):
        if _all_identical(pairs) and len(pairs) < PAIRS:
            why = (
                f"only {len(pairs)} items of {label} could be compared, all identical: {PAIRS} are "
                "needed for a verdict with a false-alarm probability below 1e-9"
            )
            if ctx.out_of_time():
                ctx.unverified(f"before enough draws were compared ({why})")
            ctx.skip(why)
    if _all_identical(across):
        return (
            f"workers 0 and 1 of {what} drew identical samples: the {len(across)} items of workers 0 "
            f"and 1 compared{_over(epochs)} were identical (first: {describe(across[0][0])}); expected "
            "independent random draws. A random generator created in __init__ (such as "
            "np.random.default_rng()) is copied into every worker: seed it per worker from "
            "torch.utils.data.get_worker_info().seed, or use torch's or NumPy's global RNG, which "
            "torch reseeds in each worker"
        )
    if _all_identical(over):
        return (
            f"worker 0 of {what} drew the same samples in consecutive epochs: the {len(over)} items of "
            f"worker 0 compared between epochs{_over(epochs)} were identical (first: "
            f"{describe(over[0][0])}); expected new random draws each epoch. Workers restart each epoch "
            "from a copy of the dataset, so a generator stored in it restarts from the same state: "
            "seed it per worker and epoch from torch.utils.data.get_worker_info().seed (or from seed "
            "+ epoch, with a set_epoch method that training loops call)"
        )
    return None


def _over(epochs: int) -> str:
    return f" (over {epochs} epochs)" if epochs > 2 else ""


@register_check(
    "iterable_dataset.workers_draw_independent_randomness",
    protocol=IterableDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(ITERABLE_ENDS, NEW_PASS),
)
@preserving(data=True)
def iterable_workers_draw_independent_randomness(ctx: Context) -> None:
    """A dataset declared deterministic=False draws different randomness in each worker and epoch."""
    if ctx.options.deterministic:
        ctx.skip("applies to datasets declared deterministic=False")
    _torch_stream(ctx)
    what = WORKERS.format(n=2)
    dataset, epoch = _epochs(ctx)
    loader = _loader(ctx, dataset, num_workers=2)
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
        items = _drain(ctx, loader, what, limit=2 * PAIRS)
        epochs += 1
        if len(items) < 2 and epochs == 1:
            ctx.skip(f"{what} yielded too few items to compare workers")
        across += _pairs(items[0::2], items[1::2])
        if previous is not None:
            over += _pairs(previous, items[0::2])
        previous = items[0::2]
    problem = _randomness_problem(ctx, across, over, what, epochs)
    if problem:
        ctx.fail(problem, reproduce=f"list(itertools.islice({what}, {2 * PAIRS}))")


@register_check(
    "map_dataset.workers_draw_independent_randomness",
    protocol=MapDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(GETITEM,),
)
@preserving(data=True)
def map_workers_draw_independent_randomness(ctx: Context) -> None:
    """A dataset declared deterministic=False draws different randomness in each worker and epoch."""
    if ctx.options.deterministic:
        ctx.skip("applies to datasets declared deterministic=False")
    _map_style(ctx)
    if _length(ctx) == 0:
        ctx.skip("ds is empty")
    what = f"DataLoader(ds, sampler=[0] * {2 * PAIRS}, num_workers=2)"
    # Index 0 again and again: tasks go to the workers in turn, so even items come from worker 0
    # and odd ones from worker 1, drawing for the same sample.
    dataset, epoch = _epochs(ctx)
    loader = _loader(ctx, dataset, sampler=[0] * (2 * PAIRS), num_workers=2)
    epoch(0)
    first = _drain(ctx, loader, what, limit=2 * PAIRS)
    epoch(1)
    second = _drain(ctx, loader, what, limit=2 * PAIRS)
    across = _pairs(first[0::2], first[1::2]) + _pairs(second[0::2], second[1::2])
    problem = _randomness_problem(ctx, across, _pairs(first[0::2], second[0::2]), what, 2)
    if problem:
        ctx.fail(problem, reproduce=f"list({what.replace('ds,', 'ds, batch_size=None,')})")


@register_check(
    "map_dataset.worker_errors_keep_their_type",
    protocol=MapDataset,
    severity="recommended",
    needs=("torch", "workers"),
    requires=(PAST_END,),
)
@preserving(data=True)
def worker_errors_keep_their_type(ctx: Context) -> None:
    """An exception raised by the dataset in a worker reaches the caller with its original type."""
    _map_style(ctx)
    declared = ctx.options.error_index
    index = _length(ctx) if declared is None else declared
    local = ctx.attempt(f"ds[{index}]", operator.getitem, ctx.obj, index)
    if not isinstance(local, Exception):
        if declared is not None:
            ctx.fail(
                f"ds[{index}] returned {describe(local)} in this process; expected it to raise "
                f"(the target declares error_index={index})",
                reproduce=f"ds[{index}]",
            )
        ctx.skip(f"ds[{index}] does not raise (name an index that does with error_index=)")
    what = f"DataLoader(ds, sampler=[{index}], num_workers=2)"
    loader = _loader(ctx, ctx.obj, sampler=[index], num_workers=2)
    iterator = ctx.call_starting_processes(f"iter({what})", iter, loader)
    try:
        outcome = ctx.attempt(f"next(iter({what}))", next, iterator)
    finally:
        iterator._shutdown_workers()
    if not isinstance(outcome, Exception):
        ctx.fail(
            f"in a worker, ds[{index}] returned {describe(outcome)} but in this process it raises "
            f"{type(local).__name__}; expected the same behaviour in workers",
            reproduce=f"list({what})",
        )
    if type(outcome) is not type(local):
        ctx.fail(
            f"ds[{index}] raises {type(local).__name__} in this process, but through {what} the caller "
            f"got {type(outcome).__name__}: {str(outcome).splitlines()[0]}; expected the original type "
            "(torch rebuilds it in the main process as exc_type(message): an exception class whose "
            "__init__ needs other arguments turns into RuntimeError, and `except` clauses miss it)",
            reproduce=f"list({what})",
        )


SPAWNED = "in a fresh interpreter (as in a DataLoader worker started with spawn or forkserver)"


def _unpicklable_part(ctx: Context, sample: Any, shown: str) -> str:
    """The path of the first leaf of ``sample`` that does not pickle (``ds[3]['transform']``), or
    ``shown`` itself when every leaf pickles on its own."""
    for path, leaf in leaves(sample):
        if isinstance(ctx.attempt(f"pickle.dumps({shown}{path})", pickle.dumps, leaf), Exception):
            return f"{shown}{path}"
    return shown


def _in_fresh_interpreter(
    ctx: Context,
    *,
    indices: list[int] | None,
    limit: int,
    reproduce: str,
    local: Callable[[int], tuple[str, Any]] | None = None,
) -> Any:
    """Rebuild ds from its pickle in torchcontract's fresh interpreter and compute ``ds[i]`` for
    ``indices`` (or the first ``limit`` items of ``iter(ds)``); skips when that cannot be done
    faithfully, fails when the object raises or runs out of its time budget there. ``local(k)``
    gives the k-th sample (how it is shown, and its value) in this process, to name the part of a
    sample that could not be pickled back."""
    data = ctx.call("pickle.dumps(ds)", fresh.pickled, ctx.obj)
    try:
        # The interpreter's start (once per process) is torchcontract's cost, not the object's.
        fetched = fresh.fetch(data, indices=indices, limit=limit, time_left=ctx.time_left())
    except fresh.Unavailable as why:
        ctx.skip(str(why))
    except fresh.TimedOut as hang:
        ctx.fail(
            f"the time budget of {ctx.time_budget_s:g} s ran out while waiting for {hang.waiting_for} "
            f"in a fresh interpreter; expected it to return in time (in this process it does: state "
            "set at run time here, such as a warm cache, is lost in a worker that rebuilds ds from "
            "its pickle)",
            reproduce=reproduce,
        )
    raised = fetched.raised
    if raised is not None and raised.what.startswith("pickling "):
        sample = raised.what.removeprefix("pickling ").removesuffix(" back to the main process")
        if local is not None:
            shown, value = local(len(fetched.items))
            sample = _unpicklable_part(ctx, value, shown)
        ctx.fail(
            f"{SPAWNED}, {sample} could not be pickled to be sent back to the main process "
            f"({raised.type_name}: {raised.message}); expected samples that pickle (a DataLoader worker, "
            "whatever its start method, sends every batch to the main process pickled: a lambda, a "
            "local function or an open file in a sample cannot cross)",
            reproduce=f"pickle.dumps({sample})",
        )
    if raised is not None:
        where = f" ({raised.where})" if raised.where else ""
        ctx.fail(
            f"{SPAWNED}, {raised.what} raised {raised.type_name}: {raised.message}{where}; expected it to "
            "succeed as in this process (the worker rebuilds the dataset from its pickle and re-imports "
            "its module: state set at run time in the main process is lost)",
            reproduce=reproduce,
        )
    return fetched


def _unpickled(ctx: Context, blob: bytes, what: str) -> Any:
    return ctx.call(f"pickle.loads(<{what} from the fresh interpreter>)", pickle.loads, blob)


@register_check(
    "map_dataset.spawn_workers_yield_same_samples",
    protocol=MapDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(PICKLE,),
)
@preserving(data=True)
def spawn_workers_yield_same_samples(ctx: Context) -> None:
    """A worker that rebuilds the dataset from its pickle (spawn, forkserver) yields the same samples."""
    _map_style(ctx)
    indices = ctx.sample_indices(_length(ctx))[:8]
    what = f"DataLoader(ds, sampler={indices}, num_workers=1, multiprocessing_context='spawn')"
    reproduce = f"list({what})  # in a script guarded by if __name__ == '__main__':"

    def local(position: int) -> tuple[str, Any]:
        index = indices[position]
        return f"ds[{index}]", ctx.call(f"ds[{index}]", operator.getitem, ctx.obj, index)

    fetched = _in_fresh_interpreter(
        ctx, indices=indices, limit=len(indices), reproduce=reproduce, local=local
    )
    if len(fetched.items) != len(indices):
        ctx.fail(
            f"{SPAWNED}, ds gave {len(fetched.items)} samples for the indices {indices}; expected "
            f"{len(indices)}",
            reproduce=reproduce,
        )
    for index, blob in zip(indices, fetched.items, strict=True):
        item = _unpickled(ctx, blob, f"ds[{index}]")
        expected = ctx.call(f"ds[{index}]", operator.getitem, ctx.obj, index)
        found = difference(item, expected) if ctx.options.deterministic else None
        if found:
            ctx.fail(
                f"{SPAWNED}, ds[{index}] differs from ds[{index}] in this process ({found}); expected "
                "the same sample (the worker rebuilds the dataset from its pickle and re-imports its "
                "module: state set at run time in the main process is lost)",
                reproduce=reproduce,
            )


@register_check(
    "iterable_dataset.spawn_workers_yield_same_items",
    protocol=IterableDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(ITERABLE_ENDS, NEW_PASS),
)
@preserving(data=True)
def spawn_workers_yield_same_items(ctx: Context) -> None:
    """A worker that rebuilds the dataset from its pickle (spawn, forkserver) yields the same items."""
    _torch_stream(ctx)
    record = first_pass(ctx)
    what = "DataLoader(ds, num_workers=1, multiprocessing_context='spawn')"
    reproduce = f"list({what})  # in a script guarded by if __name__ == '__main__':"

    def local(position: int) -> tuple[str, Any]:
        if position < len(record.prefix):
            return f"list(ds)[{position}]", record.prefix[position]
        return f"list(ds)[{position}]", None

    fetched = _in_fresh_interpreter(
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
            items = [_unpickled(ctx, blob, f"item {k}") for k, blob in enumerate(fetched.items)]
            if Counter(map(fingerprint, items)) != Counter(map(fingerprint, record.prefix)):
                ctx.fail(
                    f"{SPAWNED}, iter(ds) yielded other items than a pass in this process "
                    "(ordered=False: compared in any order); expected the same items (the worker "
                    "rebuilds the dataset from its pickle)",
                    reproduce=f"sorted(list({what})) == sorted(list(ds))",
                )
        return
    for position, (blob, expected) in enumerate(zip(fetched.items, record.prefix, strict=False)):
        item = _unpickled(ctx, blob, f"item {position}")
        found = difference(item, expected)
        if found:
            ctx.fail(
                f"item {position} {SPAWNED} differs from item {position} of a pass in this process "
                f"({found}); expected the same items",
                reproduce=f"list({what})[{position}]",
            )
