"""The mechanism of the worker-process clauses (SPEC.md, "Worker processes"): loaders over the
dataset with worker processes, draining an epoch, comparing random draws, and rebuilding the dataset
from its pickle in torchcontract's fresh interpreter. The clauses themselves are in their protocol's
module (``map_dataset.py``, ``iterable_dataset.py``).

They run in the calling thread (forking a process that runs other threads is unsafe) and bound every
wait with DataLoader's ``timeout``. Samples cross the process boundary untouched (an identity
``collate_fn``), so they compare with the samples of the calling process.

The DataLoader workers are forked (``fork`` on Linux, whatever Python's default start method), so
they never re-run the user's main script. The ``spawn`` clauses rebuild the dataset from its pickle
in torchcontract's own fresh interpreter (:mod:`torchcontract.conformance._runtime.fresh`, which
explains why not multiprocessing's ``spawn``/``forkserver``): the main script is never executed,
and the global multiprocessing configuration is left exactly as found.

The clauses also call the dataset in this process (``len(ds)``, ``ds[i]`` to compare with a worker's
sample, a pass of ``iter(ds)``), so each restores it afterwards (the engine's snapshot, :mod:`~._preserve`): a
cache filled here or a pass counter is put back.
"""

from __future__ import annotations

import copy
import inspect
import io
import multiprocessing
import operator
import pickle
import sqlite3
import sys
import types
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from torchcontract.conformance._core.context import Context
from torchcontract.conformance._runtime import fresh
from torchcontract.conformance._values import (
    describe,
    difference,
    fingerprint,
    is_iterable_style,
    is_tensor,
    leaves,
)
from torchcontract.conformance.checks._common import END, next_item, record_pass


def identity(sample: Any) -> Any:
    """The collate_fn of these checks: samples arrive as the dataset produced them."""
    return sample


def fork_context() -> Any:
    """``fork`` on Linux, so that workers never re-run the main script (Python 3.14 defaults to
    ``forkserver``, which does); elsewhere the platform's default (macOS: fork is unsafe there)."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return None


def worker_loader(
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
        multiprocessing_context=fork_context() if context is None else context,
    )


def shut_down_workers(ctx: Context, iterator: Any) -> None:
    """Stop the worker processes of a torch iterator that is left before its end (they would wait for
    the collector): torch's code run for the object, so an object call, bounded like every other."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if callable(shutdown):
        ctx.attempt("it._shutdown_workers()", shutdown)


def _read_epoch(
    ctx: Context, iterator: Any, what: str, limit: int, epoch: int | None = None
) -> tuple[list[Any], bool]:
    """Up to ``limit`` items of ``iterator``, an epoch of ``what`` (numbered ``epoch`` when given),
    while the time budget lasts, and whether the epoch ended."""
    numbered = "" if epoch is None else f"epoch {epoch}, "
    items: list[Any] = []
    while len(items) < limit and not ctx.out_of_time():
        item = next_item(ctx, iterator, f"next(iter({what})) ({numbered}item {len(items)})")
        if item is END:
            return items, True
        items.append(item)
    return items, False


def drain(ctx: Context, loader: Any, what: str, limit: int, *, partial: bool = False) -> list[Any]:
    """Up to ``limit`` items of one epoch of ``loader`` (its workers are shut down afterwards). An
    epoch cut short by the time budget ends the check as unverified, unless ``partial`` (the caller
    compares only pairs of the items that came, which a cut leaves sound)."""
    iterator = ctx.call_starting_processes(f"iter({what})", iter, loader)
    try:
        items, ended = _read_epoch(ctx, iterator, what, limit)
    finally:
        shut_down_workers(ctx, iterator)
    if not ended and len(items) < limit and not partial:
        ctx.unverified(f"while reading {what} (after {len(items)} items): an epoch cut short is not compared")
    return items


def persistent_epochs(
    ctx: Context, dataset: Any, what: str, *, epochs: int, sampler: Any = None, limit: int, name: str = "ds"
) -> list[list[Any]]:
    """The items of ``epochs`` consecutive epochs of one ``DataLoader(dataset,
    persistent_workers=True)`` with two workers, ``dataset.set_epoch(e)`` called in this process
    before epoch ``e`` (as training loops call it); each epoch is read to its end (up to ``limit``
    items), so that the next ``iter()`` resumes the same workers. They are shut down at the end."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        dataset,
        batch_size=None,
        sampler=sampler,
        num_workers=2,
        persistent_workers=True,
        collate_fn=identity,
        timeout=ctx.time_budget_s,
        multiprocessing_context=fork_context(),
    )
    read: list[list[Any]] = []
    iterator = None
    try:
        for epoch in range(epochs):
            ctx.call(f"{name}.set_epoch({epoch})", dataset.set_epoch, epoch)
            iterator = ctx.call_starting_processes(f"iter({what}) (epoch {epoch})", iter, loader)
            items, ended = _read_epoch(ctx, iterator, what, limit, epoch)
            if not ended and len(items) < limit:
                ctx.unverified(
                    f"while reading epoch {epoch} of {what} (after {len(items)} items): an epoch cut "
                    "short is not compared"
                )
            read.append(items)
    finally:
        shut_down_workers(ctx, iterator)
    return read


def _same_items(first: list[Any], second: list[Any]) -> bool:
    return len(first) == len(second) and all(
        difference(a, b) is None for a, b in zip(first, second, strict=True)
    )


def stale_epoch_problem(
    epoch_items: list[Any], stale_items: list[Any], got: list[Any], what: str, name: str = "ds"
) -> str | None:
    """Why ``got`` (what persistent workers gave after ``set_epoch(1)``) is not ``epoch_items`` (what
    this process gives after it), naming the stale epoch when ``got`` is epoch 0's; None if equal."""
    if _same_items(got, epoch_items):
        return None
    return stale_epoch_message(what, stale=_same_items(got, stale_items), name=name)


def stale_epoch_message(what: str, *, stale: bool, name: str = "ds") -> str:
    """The failure of the persistent-worker clauses: after ``set_epoch(1)``, ``what`` yielded epoch
    0's items again (``stale``) or items of neither epoch."""
    seen = "the items of epoch 0 again" if stale else "items that differ from both epochs"
    return (
        f"after {name}.set_epoch(1), {what} yielded {seen}, while in this process {name} gives other "
        "items in epoch 1; expected the workers to see the epoch: persistent workers keep the copy of the "
        "dataset they were started with, so every epoch repeats the first one's order or augmentation: "
        "an epoch stored in a plain attribute by set_epoch never reaches them (pytorch#97326; HF "
        "datasets#6673). Keep it in shared memory (a tensor made with .share_memory_(), a "
        "multiprocessing.Value), take it from a sampler's set_epoch (the main process draws the "
        "indices), or load without persistent_workers"
    )


def map_stale_epoch(ctx: Context, dataset: Any, name: str, indices: list[int]) -> tuple[str, str] | None:
    """Why ``DataLoader(dataset, sampler=indices, num_workers=2, persistent_workers=True)`` misses the
    epoch that ``dataset.set_epoch(1)`` sets in this process, with the reproducer; None when its
    workers see it. Run on ``dataset`` itself (a copy would lose the shared memory a correct dataset
    keeps its epoch in): the caller restores it. Skips when the samples do not change with the epoch."""
    by_epoch = []
    for epoch in (0, 1):
        ctx.call(f"{name}.set_epoch({epoch})", dataset.set_epoch, epoch)
        by_epoch.append([ctx.call(f"{name}[{index}]", operator.getitem, dataset, index) for index in indices])
    if all(difference(a, b) is None for a, b in zip(*by_epoch, strict=True)):
        ctx.skip(f"{name}[i] for i in {indices} is the same after set_epoch(0) and set_epoch(1)")
    what = f"DataLoader({name}, sampler={indices}, num_workers=2, persistent_workers=True)"
    _, got = persistent_epochs(
        ctx, dataset, what, epochs=2, sampler=indices, limit=len(indices) + 1, name=name
    )
    problem = stale_epoch_problem(by_epoch[1], by_epoch[0], got, what, name)
    if problem is None:
        return None
    return problem, f"list({what}) after {name}.set_epoch(1), its workers started in epoch 0"


def stream_stale_epoch(ctx: Context, dataset: Any, name: str) -> tuple[str, str] | None:
    """:func:`map_stale_epoch` for a stream: two whole passes (up to ``max_items`` items each) of
    ``dataset`` in this process after ``set_epoch(0)`` and ``set_epoch(1)``, compared in any order with
    what persistent workers yield in epoch 1 (the workers interleave)."""
    limit = ctx.options.max_items
    by_epoch: list[list[Any]] = []
    for epoch in (0, 1):
        ctx.call(f"{name}.set_epoch({epoch})", dataset.set_epoch, epoch)
        record = record_pass(
            ctx, ctx.call(f"iter({name})", iter, dataset), "it", limit=limit + 1, keep=limit + 1
        )
        if record.count > limit:
            ctx.skip(
                f"a pass of {name} is longer than max_items={limit}: two whole epochs cannot be compared"
            )
        by_epoch.append(record.prefix)
    counted = [Counter(map(fingerprint, items)) for items in by_epoch]
    if counted[0] == counted[1]:
        ctx.skip(f"a pass of {name} yields the same items after set_epoch(0) and set_epoch(1)")
    what = f"DataLoader({name}, num_workers=2, persistent_workers=True)"
    _, got = persistent_epochs(ctx, dataset, what, epochs=2, limit=2 * limit + 1, name=name)
    seen = Counter(map(fingerprint, got))
    if seen == counted[1]:
        return None
    return (
        stale_epoch_message(what, stale=seen == counted[0], name=name),
        f"sorted({what}) after {name}.set_epoch(1), its workers started in epoch 0",
    )


# Above this many Python objects reachable from a dataset, forked workers copy a significant amount
# of memory on read (a million small objects: some 50 MB per worker, growing through the epoch).
MANY_OBJECTS = 1_000_000
_ATOMS = (str, bytes, int, float, complex, bool, type(None))
_NOT_DATA = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def python_objects_held(ctx: Context, obj: Any, limit: int) -> tuple[int, str | None, bool]:
    """(how many Python objects are reachable from ``obj``'s attributes, counted up to ``limit + 1``;
    the attribute under which most were found; whether the walk ended before the time budget). The
    walk reads instance ``__dict__``s, containers and object arrays, never calls the object's code,
    and does not enter classes, modules or functions."""
    roots = _attributes(obj)
    seen: set[int] = {id(obj)}
    count, biggest, biggest_count = 0, None, 0
    for name, root in roots:
        before = count
        stack = [root]
        while stack and count <= limit:
            value = stack.pop()
            if id(value) in seen or isinstance(value, _NOT_DATA):
                continue
            seen.add(id(value))
            count += 1
            if count % 65536 == 0 and ctx.out_of_time():
                return count, biggest, False
            if isinstance(value, _ATOMS):
                continue
            if isinstance(value, (list, tuple, set, frozenset)):
                stack.extend(value)
            elif isinstance(value, dict):
                stack.extend(value.keys())
                stack.extend(value.values())
            elif isinstance(value, np.ndarray):
                if value.dtype == object:
                    stack.extend(value.ravel()[: limit + 1 - count].tolist())
            elif not is_tensor(value):
                stack.extend(attribute for _, attribute in _attributes(value))
        if count - before > biggest_count:
            biggest, biggest_count = name, count - before
        if count > limit:
            break
    return count, biggest, True


def _attributes(value: Any) -> list[tuple[str, Any]]:
    """An object's instance attributes, read without running its code (no ``__getattr__``)."""
    try:
        attributes = object.__getattribute__(value, "__dict__")
    except Exception:
        return []
    return list(attributes.items()) if isinstance(attributes, dict) else []


class ComparedInWorker:
    """What forked workers load instead of ``dataset``: ``self[i]`` is ``dataset[i]`` computed in the
    worker, compared there with ``expected[i]`` (read in this process before the fork, which the worker
    inherits), and only the difference (None when equal) crosses back: a big sample is never pickled.
    Only for forked workers (it holds the dataset and the samples as they are, and does not pickle)."""

    def __init__(self, dataset: Any, expected: dict[int, Any]) -> None:
        self.dataset, self.expected = dataset, expected

    def __len__(self) -> int:
        return len(self.expected)

    def __getitem__(self, index: int) -> str | None:
        return difference(self.dataset[index], self.expected[index])

    def __reduce__(self) -> Any:
        raise TypeError("ComparedInWorker is only loaded by forked workers")


def _is_handle(value: Any) -> bool:
    """Whether ``value`` holds an operating-system handle that a forked process shares with its parent
    (a file object, an SQLite connection, anything with a ``fileno()``: HDF5 and LMDB handles, sockets).
    Looked up statically, so that no code of the object runs."""
    if isinstance(value, (io.IOBase, sqlite3.Connection)):
        return True
    if isinstance(value, type):
        return False
    try:
        return callable(inspect.getattr_static(value, "fileno", None))
    except Exception:
        return False


def open_handles(obj: Any, name: str, *, depth: int = 2) -> list[str]:
    """The attributes of ``obj`` (shown as ``name``), and of the objects in them down to ``depth``
    levels, that hold an open handle (:func:`_is_handle`): ``["ds.file (BufferedReader)"]``. Read from
    instance ``__dict__``s, lists, tuples and dicts, never through the object's code."""
    found: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[str, Any, int]] = [(name, obj, 0)]
    while stack and len(found) < 3:
        path, value, level = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if level and _is_handle(value):
            found.append(f"{path} ({type(value).__name__})")
            continue
        if level >= depth or isinstance(value, (*_ATOMS, *_NOT_DATA, np.ndarray)) or is_tensor(value):
            continue
        children: list[tuple[str, Any]] = []
        if isinstance(value, dict):
            children = [(f"{path}[{key!r}]", item) for key, item in list(dict.items(value))[:64]]
        elif isinstance(value, (list, tuple)):
            children = [(f"{path}[{index}]", item) for index, item in enumerate(list(value)[:64])]
        else:
            children = [(f"{path}.{attribute}", item) for attribute, item in _attributes(value)]
        stack.extend((child_path, child, level + 1) for child_path, child in reversed(children))
    return found


def require_torch_stream(ctx: Context) -> None:
    """Skip unless the dataset is one that torch's DataLoader streams."""
    from torch.utils.data import IterableDataset as TorchIterableDataset

    if not isinstance(ctx.obj, TorchIterableDataset):
        ctx.skip(
            "torch's DataLoader streams only subclasses of torch.utils.data.IterableDataset (it treats "
            "anything else as map-style)"
        )
    if ctx.options.infinite:
        ctx.skip("the stream is infinite")


def require_map_style(ctx: Context) -> None:
    """Skip when torch's DataLoader would stream the dataset (one rule: ``is_iterable_style``)."""
    if is_iterable_style(ctx.obj):
        ctx.skip(
            "torch's DataLoader streams ds (it is a torch.utils.data.IterableDataset, so DataLoader "
            "iterates it and never calls ds[i]): the map-style worker clauses do not apply"
        )


WORKERS = "DataLoader(ds, num_workers={n})"


def epochs_of(ctx: Context) -> tuple[Any, Callable[[int], None]]:
    """The dataset to load, and how to start an epoch: a dataset with ``set_epoch`` (a seeded shuffle,
    as in HuggingFace's IterableDataset or torch's DistributedSampler) gets ``set_epoch(epoch)`` first,
    as training loops call it; on a deep copy, so that the object's own epoch is left alone. When the
    copy raises, on the dataset itself: its callers may change the object (``touches="object"``), so
    the engine puts its epoch back after the check."""
    if not callable(getattr(ctx.obj, "set_epoch", None)):
        return ctx.obj, lambda epoch: None
    # The copy is torchcontract's means, not the clause: a dataset that cannot be copied here (state
    # tied to the thread that built it, as fsspec's filesystem cache in HuggingFace's IterableDataset)
    # is no failure of it. A hang in the copy is still one (attempt returns exceptions only).
    dataset: Any = ctx.attempt("copy.deepcopy(ds)", copy.deepcopy, ctx.obj)
    if isinstance(dataset, Exception):
        error, dataset = dataset, ctx.obj
        lines = str(error).strip().splitlines()
        ctx.note(
            f"copy.deepcopy(ds) raised {type(error).__name__}: {lines[0] if lines else ''}; "
            "ds.set_epoch was called on ds itself, and its epoch put back after the check"
        )
    return dataset, lambda epoch: ctx.call(f"ds.set_epoch({epoch})", dataset.set_epoch, epoch)


# How many pairs of draws the randomness clauses compare before they call shared random state a
# bug. For a correct dataset whose draws have at least 2 equally likely outcomes (more generally, no
# outcome more likely than 1/2), two independent draws are equal with probability at most 1/2, so
# all PAIRS pairs are equal with probability at most 2**-32 ~ 2.3e-10 < 1e-9: the false-alarm bound.
# A generator copied into every worker makes every pair equal, so the bug is still found.
PAIRS = 32


# A stream with few items per worker is loaded for more epochs, up to this many, to get PAIRS pairs.
MAX_EPOCHS = 40


def pairs_of(first: list[Any], second: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(first, second, strict=False))


def all_identical(pairs: list[tuple[Any, Any]]) -> bool:
    return bool(pairs) and all(difference(a, b) is None for a, b in pairs)


def randomness_problem(
    ctx: Context, across: list[tuple[Any, Any]], over: list[tuple[Any, Any]], what: str, epochs: int
) -> str | None:
    """Why the pairs of draws (of workers 0 and 1 (``across``), of worker 0 in consecutive epochs
    (``over``)) show shared random state, or None. Every pair equal is the evidence; fewer than
    :data:`PAIRS` equal pairs are not enough for a verdict (a skip)."""
    if not across:
        ctx.skip(f"{what} yielded too few items to compare workers")
    for pairs, label in ((across, "workers 0 and 1"), (over, "worker 0 in consecutive epochs")):
        if all_identical(pairs) and len(pairs) < PAIRS:
            why = (
                f"only {len(pairs)} items of {label} could be compared, all identical: {PAIRS} are "
                "needed for a verdict with a false-alarm probability below 1e-9"
            )
            if ctx.out_of_time():
                ctx.unverified(f"before enough draws were compared ({why})")
            ctx.skip(why)
    if all_identical(across):
        return (
            f"workers 0 and 1 of {what} drew identical samples: the {len(across)} items of workers 0 "
            f"and 1 compared{over_epochs(epochs)} were identical (first: {describe(across[0][0])}); expected "
            "independent random draws. A random generator created in __init__ (such as "
            "np.random.default_rng()) is copied into every worker: seed it per worker from "
            "torch.utils.data.get_worker_info().seed, or use torch's or NumPy's global RNG, which "
            "torch reseeds in each worker"
        )
    if all_identical(over):
        return (
            f"worker 0 of {what} drew the same samples in consecutive epochs: the {len(over)} items of "
            f"worker 0 compared between epochs{over_epochs(epochs)} were identical (first: "
            f"{describe(over[0][0])}); expected new random draws each epoch. Workers restart each epoch "
            "from a copy of the dataset, so a generator stored in it restarts from the same state: "
            "seed it per worker and epoch from torch.utils.data.get_worker_info().seed (or from seed "
            "+ epoch, with a set_epoch method that training loops call)"
        )
    return None


def over_epochs(epochs: int) -> str:
    return f" (over {epochs} epochs)" if epochs > 2 else ""


SPAWNED = "in a fresh interpreter (as in a DataLoader worker started with spawn or forkserver)"


def crossing_problem(ctx: Context, sample: Any, shown: str) -> tuple[str, str] | None:
    """Why ``sample`` (shown as ``shown``, e.g. ``ds[3]``) cannot travel from a DataLoader worker to the
    main process, with the expression that reproduces it; None when it can. Pickled with plain
    ``pickle`` (multiprocessing's ``ForkingPickler`` would move a tensor's storage into shared memory,
    changing the caller's sample); the two refusals that torch's reductions add are checked on the
    leaves: a tensor that requires grad, and a tensor on an accelerator."""
    for path, leaf in leaves(sample):
        if not is_tensor(leaf):
            continue
        where = f"{shown}{path}"
        if getattr(leaf, "requires_grad", False) is True:
            return (
                (
                    f"{where} is a tensor that requires grad; expected samples without autograd history "
                    "(default_collate stacks the samples of a batch with torch.stack(out=...), which "
                    "autograd refuses, and with batch_size=None torch refuses to send a non-leaf tensor "
                    "that requires grad from a worker: build samples under torch.no_grad(), or detach them)"
                ),
                f"{where}.requires_grad",
            )
        device = getattr(getattr(leaf, "device", None), "type", "cpu")
        # torch sends a meta tensor as its shape and dtype; an accelerator tensor cannot be made in a
        # forked worker at all.
        if device not in ("cpu", "meta"):
            return (
                (
                    f"{where} is a tensor on {leaf.device}; expected CPU tensors (a forked worker cannot use "
                    "CUDA, 'Cannot re-initialize CUDA in forked subprocess'; move batches to the device in "
                    "the training loop, with pin_memory=True for fast copies)"
                ),
                f"{where}.device",
            )
    pickled = ctx.attempt(f"pickle.dumps({shown})", pickle.dumps, sample)
    if not isinstance(pickled, Exception):
        return None
    part = unpicklable_part(ctx, sample, shown)
    return (
        (
            f"{part} could not be pickled ({type(pickled).__name__}: {pickled}); expected samples that "
            "pickle (a DataLoader worker sends every sample to the main process pickled, whatever its start "
            "method; torch's DataLoader then waits forever for the lost sample, its timeout being 0 by "
            "default: pytorch#142884)"
        ),
        f"pickle.dumps({part})",
    )


def unpicklable_part(ctx: Context, sample: Any, shown: str) -> str:
    """The path of the first leaf of ``sample`` that does not pickle (``ds[3]['transform']``), or
    ``shown`` itself when every leaf pickles on its own."""
    for path, leaf in leaves(sample):
        if isinstance(ctx.attempt(f"pickle.dumps({shown}{path})", pickle.dumps, leaf), Exception):
            return f"{shown}{path}"
    return shown


def in_fresh_interpreter(
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
            sample = unpicklable_part(ctx, value, shown)
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


def unpickled(ctx: Context, blob: bytes, what: str) -> Any:
    return ctx.call(f"pickle.loads(<{what} from the fresh interpreter>)", pickle.loads, blob)
