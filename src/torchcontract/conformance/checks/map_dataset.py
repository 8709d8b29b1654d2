"""Checks for :class:`~torchcontract.protocols.MapDataset` (SPEC.md, "MapDataset").

Every check restores the dataset afterwards (the engine's snapshot, :mod:`~._preserve`): a cache filled by
``ds[i]``, a counter or a generator stored on the dataset is put back. No check writes into a sample.

Under ``deterministic=False`` the clauses that compare two samples skip or compare only what stays
deterministic (counts, lengths, structure); each says which.
"""

from __future__ import annotations

import functools
import operator
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from torchcontract.conformance._core.context import Context, SharedKey
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._values import (
    compare,
    describe,
    difference,
    is_array,
    is_tensor,
    leaves,
    tensor_module,
)
from torchcontract.conformance._values import shape as array_shape
from torchcontract.conformance.checks._batches import overwritten_sample_problem
from torchcontract.conformance.checks._common import END, first_structure_mismatch, next_item
from torchcontract.conformance.checks._workers import (
    MANY_OBJECTS,
    PAIRS,
    SPAWNED,
    ComparedInWorker,
    crossing_problem,
    drain,
    epochs_of,
    fork_context,
    in_fresh_interpreter,
    map_stale_epoch,
    open_handles,
    pairs_of,
    python_objects_held,
    randomness_problem,
    require_map_style,
    shut_down_workers,
    unpickled,
    worker_loader,
)
from torchcontract.protocols import MapDataset

# The sparse layouts whose batches torch's collate_tensor_fn refuses (collate.py).
_SPARSE_LAYOUTS = ("sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc")
_LEN: SharedKey[int] = SharedKey("len(ds)")


def _length(ctx: Context) -> int:
    return ctx.shared(_LEN, lambda: int(ctx.call("len(ds)", len, ctx.obj)))


def _get(ctx: Context, index: Any, shown: str | None = None) -> Any:
    shown = repr(index) if shown is None else shown
    return ctx.call(f"ds[{shown}]", operator.getitem, ctx.obj, index)


@register_check(protocol=MapDataset, severity="required", since="0.1.0")
def len_is_non_negative_int(ctx: Context) -> None:
    """len(ds) returns a non-negative int."""
    ds = ctx.obj
    outcome = ctx.attempt("len(ds)", len, ds)
    if isinstance(outcome, Exception):
        raw = ctx.attempt("type(ds).__len__(ds)", lambda: type(ds).__len__(ds))
        returned = "" if isinstance(raw, Exception) else f" (__len__ returned {describe(raw)})"
        ctx.fail(
            f"len(ds) raised {type(outcome).__name__}: {outcome}{returned}; expected a non-negative "
            "int (DataLoader's samplers and len(DataLoader) call it)",
            reproduce="len(ds)",
        )


@register_check(protocol=MapDataset, severity="required", requires=(len_is_non_negative_int,), since="0.1.0")
def getitem_in_range_succeeds(ctx: Context) -> None:
    """ds[i] returns a sample for the first, the last and a sample of indices in between."""
    length = _length(ctx)
    indices = ctx.sample_indices(length)
    for index in indices:
        outcome = ctx.attempt(f"ds[{index}]", operator.getitem, ctx.obj, index)
        if isinstance(outcome, Exception):
            ctx.fail(
                f"ds[{index}] raised {type(outcome).__name__}: {outcome} but len(ds) == {length}; "
                "expected a sample for every 0 <= index < len(ds) (DataLoader's samplers draw them "
                f"all: an off-by-one __len__ fails at the end of the first epoch). If ds[{index}] is a "
                f"corrupt sample by design, declare error_index={index}",
                reproduce=f"ds[{index}]  # len(ds) == {length}",
            )
    if len(indices) < length:
        ctx.note(f"checked {len(indices)} of {length} indices (thorough=True checks all)")


@register_check(protocol=MapDataset, severity="required", requires=(len_is_non_negative_int,), since="0.1.0")
def index_past_end_raises_index_error(ctx: Context) -> None:
    """ds[len(ds)] raises IndexError, so that Python's iteration protocol ends; a dataset with its own
    __iter__ may raise another error there, but not return a sample."""
    length = _length(ctx)
    outcome = ctx.attempt(f"ds[{length}]", operator.getitem, ctx.obj, length)
    if isinstance(outcome, IndexError):
        return
    if getattr(type(ctx.obj), "__iter__", None) is not None:
        # Iteration uses the dataset's own __iter__, not the legacy protocol; nothing in torch indexes
        # past the end (the samplers draw from range(len(ds)), Subset passes its indices through,
        # ConcatDataset bisects its cumulative sizes), so another error breaks nothing: a note.
        if isinstance(outcome, Exception):
            ctx.note(
                f"ds[{length}] raised {type(outcome).__name__}, not IndexError (harmless with its own "
                "__iter__; Python sequences raise IndexError)"
            )
            return
        ctx.fail(
            f"ds[{length}] returned {describe(outcome)} but len(ds) == {length}; expected an error "
            "(IndexError, as Python sequences raise): a sample at len(ds) means __len__ undercounts, "
            "and DataLoader's samplers only draw indices from range(len(ds)), so it is silently never "
            "loaded; or the index wraps round and hides off-by-one errors in index arithmetic",
            reproduce=f"ds[len(ds)]  # len(ds) == {length}",
        )
    consequence = "Python's legacy iteration (for sample in ds) only stops on IndexError, so it would not end"
    if isinstance(outcome, Exception):
        ctx.fail(
            f"ds[{length}] raised {type(outcome).__name__}: {outcome} but len(ds) == {length}; "
            f"expected IndexError ({consequence})",
            reproduce=f"ds[len(ds)]  # len(ds) == {length}",
        )
    ctx.fail(
        f"ds[{length}] returned {describe(outcome)} but len(ds) == {length}; expected IndexError "
        f"({consequence})",
        reproduce=f"ds[len(ds)]  # len(ds) == {length}",
    )


@register_check(
    protocol=MapDataset, severity="required", requires=(getitem_in_range_succeeds,), since="0.1.0"
)
def getitem_is_deterministic(ctx: Context) -> None:
    """The same index twice gives equal samples (unless the target declares deterministic=False)."""
    if not ctx.options.deterministic:
        # The clause is the declaration itself: a random dataset has nothing to compare.
        ctx.skip("the target declares deterministic=False")
    not_compared: list[str] = []
    for index in ctx.sample_indices(_length(ctx)):
        first, second = _get(ctx, index), _get(ctx, index)
        comparison = compare(first, second)
        not_compared.extend(f"ds[{index}]: {part}" for part in comparison.not_compared)
        found = comparison.difference
        if found:
            ctx.fail(
                f"ds[{index}] returned different samples on two calls ({found}); expected equal "
                "samples, or declare the dataset deterministic=False",
                reproduce=f"ds[{index}] == ds[{index}]",
            )
    if not_compared:
        ctx.note(f"could not compare {not_compared[0]} (counted as equal)")


@register_check(
    protocol=MapDataset,
    severity="recommended",
    requires=(getitem_in_range_succeeds, index_past_end_raises_index_error, getitem_is_deterministic),
    since="0.1.0",
)
def iteration_matches_indexing(ctx: Context) -> None:
    """Iterating ds (its own __iter__ or Python's legacy protocol) yields len(ds) items equal to ds[i]."""
    ds, length = ctx.obj, _length(ctx)
    error_index = ctx.options.error_index
    if error_index is not None and error_index < length:
        ctx.skip(
            f"the target declares that ds[{error_index}] raises (error_index), so iterating ds stops there"
        )
    own_iter = getattr(type(ds), "__iter__", None) is not None
    iterator = ctx.call("iter(ds)", iter, ds)
    checked = length if ctx.options.thorough or length <= ctx.options.max_items else ctx.options.max_items
    for position in range(checked + 1):
        if ctx.out_of_time():
            # A slow dataset is not a broken one: the clause is about which items come, not how fast
            # (a call that never returns is the engine's to report). Past max_items only a prefix is
            # compared anyway, and a shorter one is as sound; but where the count is part of the
            # verdict, an iteration cut short says nothing of it.
            if checked == length:
                ctx.unverified(
                    f"after {position} of {length} items of iter(ds), which agreed with ds[i]: the count "
                    "was not reached (raise time_budget_s)"
                )
            ctx.note(
                f"the time budget ({ctx.time_budget_s:g} s) ran out after {position} of {length} items: "
                "only those were compared (raise time_budget_s to compare more)"
            )
            return
        item = next_item(ctx, iterator, f"next(iter(ds)) (item {position})")
        if position == checked:
            if checked == length and item is not END:
                ctx.fail(
                    f"iterating ds yielded more than len(ds) == {length} items (item {length} is "
                    f"{describe(item)}); expected exactly len(ds) items",
                    reproduce="sum(1 for _ in ds) == len(ds)",
                )
            break
        if item is END:
            ctx.fail(
                f"iterating ds stopped after {position} items but len(ds) == {length}; expected "
                "exactly len(ds) items",
                reproduce="sum(1 for _ in ds) == len(ds)",
            )
        # deterministic=False: the count is still compared (a random dataset has a fixed length),
        # the items not (ds[k] draws anew).
        if ctx.options.deterministic:
            found = difference(item, _get(ctx, position))
            if found:
                ctx.fail(
                    f"item {position} of iter(ds) differs from ds[{position}] ({found}); expected "
                    "iteration to yield ds[0], ds[1], ... in order (declare deterministic=False for "
                    "random samples)",
                    reproduce=f"list(ds)[{position}] == ds[{position}]",
                )
    if checked < length:
        how = "its own __iter__" if own_iter else "Python's legacy protocol"
        ctx.note(f"iterated the first {checked} of {length} items through {how} (thorough=True: all)")


@register_check(
    protocol=MapDataset,
    severity="required",
    requires=(getitem_in_range_succeeds, getitem_is_deterministic),
    since="0.1.0",
)
def pickle_round_trip(ctx: Context) -> None:
    """pickle.loads(pickle.dumps(ds)) gives an equal dataset (worker processes started with spawn)."""
    ds, length = ctx.obj, _length(ctx)
    blob = ctx.call("pickle.dumps(ds)", pickle.dumps, ds, protocol=pickle.HIGHEST_PROTOCOL)
    clone = ctx.call("pickle.loads(pickle.dumps(ds))", pickle.loads, blob)
    clone_length = ctx.call("len(pickle.loads(pickle.dumps(ds)))", len, clone)
    if clone_length != length:
        ctx.fail(
            f"the unpickled dataset has len {clone_length} but ds has {length}; expected an equal dataset",
            reproduce="len(pickle.loads(pickle.dumps(ds))) == len(ds)",
        )
    if not ctx.options.deterministic:
        # Only the length stays comparable: the clone draws anew (from its own copy of a generator
        # stored on the dataset, or from the global RNGs), in an order the two cannot share.
        return
    for index in ctx.sample_indices(length):
        restored = ctx.call(f"clone[{index}]", operator.getitem, clone, index)
        found = difference(restored, _get(ctx, index))
        if found:
            ctx.fail(
                f"after a pickle round trip, clone[{index}] differs from ds[{index}] ({found}); "
                "expected an equal dataset (declare deterministic=False for random samples)",
                reproduce=f"pickle.loads(pickle.dumps(ds))[{index}] == ds[{index}]",
            )


@register_check(
    protocol=MapDataset, severity="required", requires=(getitem_in_range_succeeds,), since="0.1.0"
)
def samples_share_structure(ctx: Context) -> None:
    """Every sample has the same structure: container types, tuple arity, dict keys, leaf types, dtypes."""
    indices = ctx.sample_indices(_length(ctx))
    samples = [_get(ctx, index) for index in indices]
    mismatch = first_structure_mismatch(samples, "ds[{}]")
    if mismatch:
        # Report real indices, not positions in the sample.
        for position, index in reversed(list(enumerate(indices))):
            mismatch = mismatch.replace(f"ds[{position}]", f"ds[{index}]")
        ctx.fail(mismatch, reproduce="a batch of these samples cannot be collated")


@register_check(
    protocol=MapDataset,
    severity="recommended",
    needs=("torch",),
    requires=(samples_share_structure,),
    since="0.1.0",
)
def samples_collate(ctx: Context) -> None:
    """The sampled samples collate into one batch with torch's default_collate (or the declared
    collate_fn), as a DataLoader with a batch_size collates them."""
    require_map_style(ctx)
    collate, name = ctx.options.collate_fn, "collate_fn"
    if collate is None:
        from torch.utils.data import default_collate

        collate, name = default_collate, "torch.utils.data.default_collate"
    indices = ctx.sample_indices(_length(ctx))
    if len(indices) < 2:
        ctx.skip("ds has fewer than two samples to collate")
    samples = [_get(ctx, index) for index in indices]
    shown = f"[ds[i] for i in {indices}]"
    batch = ctx.attempt(f"{name}({shown})", collate, samples)
    if not isinstance(batch, Exception):
        return
    first_line = (str(batch).strip().splitlines() or [""])[0]
    if ctx.options.collate_fn is None:
        obstacle, remedy = _collate_obstacle(samples, indices) or (None, _PAD)
    else:
        # What a collate_fn of the user's own takes is its own: default_collate's rules name no obstacle
        # (it may pad, or refuse what default_collate takes), and declaring it again is no remedy.
        obstacle, remedy = None, _DECLARED
    ctx.fail(
        f"{name}({shown}) raised {type(batch).__name__}: {first_line}"
        + (f" ({obstacle})" if obstacle else "")
        + "; expected the samples to collate into a batch (a DataLoader with batch_size raises there, "
        f"at the first batch that holds such samples, which can be epochs in): {remedy}",
        reproduce=f"{name}({shown})",
    )


# What to do about each obstacle: padding is no remedy for a None.
_PAD = (
    "pad or crop to one shape in __getitem__, or load with a collate_fn that pads "
    "(torch.nn.utils.rnn.pad_sequence) and declare it with collate_fn="
)
_CONVERT = (
    "return a value default_collate takes there from __getitem__ (a tensor, an array or a number; "
    "leave out a field that has no value), or load with a collate_fn that handles it and declare it "
    "with collate_fn="
)
_DECLARED = (
    "make the declared collate_fn take these samples (its error above says where), or return from "
    "__getitem__ what it takes"
)


def _collate_obstacle(samples: list[Any], indices: list[int]) -> tuple[str, str] | None:
    """The first leaf path at which the samples cannot be stacked (shapes that differ), or whose
    value default_collate does not take, with what to do about it; None when neither is found."""
    paths: dict[str, list[tuple[int, Any]]] = {}
    for index, sample in zip(indices, samples, strict=True):
        for path, leaf in leaves(sample):
            paths.setdefault(path, []).append((index, leaf))
    for path, found in paths.items():
        shapes = [(index, array_shape(leaf)) for index, leaf in found if is_array(leaf)]
        distinct = {shape for _, shape in shapes}
        if len(distinct) > 1:
            (first, first_shape), other = shapes[0], next(s for s in shapes if s[1] != shapes[0][1])
            return f"ds[{first}]{path} has shape {first_shape} but ds[{other[0]}]{path} has {other[1]}", _PAD
    for path, found in paths.items():
        index, leaf = found[0]
        if not _default_collate_takes(leaf):
            refused = f"ds[{index}]{path} is {describe(leaf)}, which default_collate does not take"
            return f"{refused}: it takes {_COLLATE_TAKES}", _CONVERT
    return None


# What _default_collate_takes accepts, in a message.
_COLLATE_TAKES = (
    "dense tensors, NumPy arrays and scalars of numbers or booleans, Python numbers, strings and bytes, "
    "in mappings, tuples and lists"
)


def _default_collate_takes(leaf: Any) -> bool:
    """Whether torch's default_collate takes ``leaf``, decided as it decides
    (``utils/data/_utils/collate.py``, ``default_collate_fn_map``, looked up by type then by isinstance
    in its order): a tensor goes to ``torch.stack``, which it refuses for nested and sparse tensors; a
    NumPy array goes to ``torch.as_tensor``, refused for strings, bytes and objects
    (``np_str_obj_array_pattern``) and failing for the dtypes torch has none for (datetime, structured,
    longdouble); a NumPy bool or number goes to ``torch.as_tensor`` too (``collate_numpy_scalar_fn``);
    ``np.str_`` and ``np.bytes_`` are ``str`` and ``bytes``, kept as lists like them; a Python int
    (bool too), float, str or bytes is taken. Anything else (None, complex, a PIL image, a dataclass)
    raises TypeError."""
    torch = tensor_module()
    if is_tensor(leaf):
        sparse = {getattr(torch, name, None) for name in _SPARSE_LAYOUTS} - {None}
        return not (bool(getattr(leaf, "is_nested", False)) or leaf.layout in sparse)
    if isinstance(leaf, (np.ndarray, np.generic)) and not isinstance(leaf, (np.str_, np.bytes_)):
        return _torch_converts(leaf.dtype)
    return isinstance(leaf, (int, float, str, bytes))


@functools.cache
def _torch_converts(dtype: np.dtype[Any]) -> bool:
    """Whether ``torch.as_tensor`` takes NumPy data of ``dtype``: asked of torch on an empty array, so
    that the answer is torch's own for this platform and version (it takes uint64 but not ulonglong,
    float64 but not longdouble) and not a list of ours to keep in step."""
    torch = tensor_module()
    if torch is None or dtype.kind in "SUO":  # default_collate refuses these before converting
        return False
    try:
        torch.as_tensor(np.empty(0, dtype=dtype))
    except Exception:  # TypeError "can't convert np.ndarray of type ...", whatever torch raises
        return False
    return True


@register_check(
    protocol=MapDataset,
    severity="required",
    requires=(getitem_in_range_succeeds, getitem_is_deterministic),
    since="0.1.0",
)
def getitems_matches_getitem(ctx: Context) -> None:
    """If ds.__getitems__ exists (and is not None), it returns one sample per index, equal to ds[i]."""
    ds, length = ctx.obj, _length(ctx)
    getitems = getattr(ds, "__getitems__", None)
    if not getitems:
        ctx.skip("ds has no __getitems__ (DataLoader then calls ds[i] for each index)")
    if length == 0:
        ctx.skip("ds is empty")
    sampled = ctx.sample_indices(length)[:8]
    # Repeated indices occur (samplers with replacement); reversed order catches sorting.
    indices = [*reversed(sampled), sampled[0]]
    batch = ctx.call(f"ds.__getitems__({indices})", getitems, list(indices))
    if not isinstance(batch, Sequence) or isinstance(batch, (str, bytes)):
        ctx.fail(
            f"ds.__getitems__({indices}) returned {describe(batch)}; expected a list of "
            f"{len(indices)} samples (DataLoader passes it to collate_fn, which expects one)",
            reproduce=f"ds.__getitems__({indices})",
        )
    count = ctx.call("len(ds.__getitems__(...))", len, batch)
    if count != len(indices):
        ctx.fail(
            f"ds.__getitems__({indices}) returned {count} samples; expected {len(indices)}, one per "
            "index in order",
            reproduce=f"len(ds.__getitems__({indices}))",
        )
    for position, index in enumerate(indices):
        item = ctx.call(f"ds.__getitems__({indices})[{position}]", operator.getitem, batch, position)
        expected = _get(ctx, index)
        # deterministic=False: compare structure only (two draws differ in value).
        found = difference(item, expected) if ctx.options.deterministic else None
        if found is None and not ctx.options.deterministic:
            found = first_structure_mismatch([expected, item], "sample {}")
        if found:
            ctx.fail(
                f"ds.__getitems__({indices})[{position}] differs from ds[{index}] ({found}); "
                "expected [ds[i] for i in indices]",
                reproduce=f"ds.__getitems__({indices})[{position}] == ds[{index}]",
            )


@register_check(
    protocol=MapDataset,
    severity="recommended",
    requires=(getitem_in_range_succeeds, getitem_is_deterministic),
    since="0.1.0",
)
def negative_index_mirrors_python(ctx: Context) -> None:
    """ds[-1] either equals ds[len(ds) - 1], like a Python sequence, or raises IndexError or TypeError."""
    length = _length(ctx)
    if length == 0:
        ctx.skip("ds is empty")
    outcome = ctx.attempt("ds[-1]", operator.getitem, ctx.obj, -1)
    if isinstance(outcome, (IndexError, TypeError)):
        return
    if isinstance(outcome, Exception):
        ctx.fail(
            f"ds[-1] raised {type(outcome).__name__}: {outcome}; expected ds[len(ds) - 1] or "
            "IndexError/TypeError",
            reproduce="ds[-1]",
        )
    if ctx.options.deterministic:  # deterministic=False: only which indices raise is compared
        found = difference(outcome, _get(ctx, length - 1))
        if found:
            ctx.fail(
                f"ds[-1] returned a sample that differs from ds[{length - 1}] ({found}); expected "
                "negative indices to count from the end, or IndexError/TypeError (declare "
                "deterministic=False for random samples)",
                reproduce=f"ds[-1] == ds[{length - 1}]",
            )
    beyond = ctx.attempt(f"ds[{-length - 1}]", operator.getitem, ctx.obj, -length - 1)
    if not isinstance(beyond, (IndexError, TypeError)):
        ctx.fail(
            f"ds[{-length - 1}] (before the first sample) gave {describe(beyond)}; expected "
            "IndexError, as a Python sequence raises",
            reproduce=f"ds[-len(ds) - 1]  # len(ds) == {length}",
        )


def _modifiable_leaves(value: Any) -> list[tuple[str, Any]]:
    """(path, leaf) for the array and tensor leaves that code could modify in place."""
    return [(path, leaf) for path, leaf in leaves(value) if _modifiable(leaf)]


def _modifiable(leaf: Any) -> bool:
    if isinstance(leaf, np.ndarray):
        return bool(leaf.flags.writeable and leaf.size)
    # An inference tensor refuses in-place updates outside inference mode.
    return is_tensor(leaf) and _span(leaf) is not None and not leaf.is_inference()


def _span(leaf: Any) -> tuple[str, int, int] | None:
    """(device, first byte, one past the last byte) of the memory an array or tensor leaf covers."""
    try:
        if isinstance(leaf, np.ndarray):
            if not leaf.size:
                return None
            byte_bounds = getattr(np, "byte_bounds", None) or np.lib.array_utils.byte_bounds
            low, high = byte_bounds(leaf)
            return "cpu", int(low), int(high)
        if is_tensor(leaf) and leaf.layout == tensor_module().strided and leaf.numel() and not leaf.is_meta:
            extent = sum(
                (size - 1) * abs(stride) for size, stride in zip(leaf.shape, leaf.stride(), strict=True)
            )
            start = int(leaf.data_ptr())
            return str(leaf.device), start, start + (extent + 1) * leaf.element_size()
    except Exception:  # a tensor without storage (a subclass, a functional tensor): not compared
        return None
    return None


def _shared_leaf(first: Any, second: Any) -> tuple[str, str] | None:
    """(path in first, path in second) of a modifiable leaf of ``first`` whose memory overlaps a leaf
    of ``second``, or None."""
    spans = [(path, _span(leaf)) for path, leaf in leaves(second)]
    for path, leaf in _modifiable_leaves(first):
        mine = _span(leaf)
        if mine is None:
            continue
        for other_path, other in spans:
            if other is not None and other[0] == mine[0] and other[1] < mine[2] and mine[1] < other[2]:
                return path, other_path
    return None


@register_check(
    protocol=MapDataset, severity="recommended", requires=(getitem_in_range_succeeds,), since="0.1.0"
)
def samples_are_independent_copies(ctx: Context) -> None:
    """Two calls ds[i] return samples that share no modifiable memory, so modifying one in place
    cannot change the dataset."""
    # Compared by memory address, never by writing into the sample: a sample may be a view of
    # memory the check does not own (a read-only memory map, wrapped with torch.from_numpy, crashes
    # the process when written). Two live objects that were allocated separately never overlap, so
    # a correct dataset cannot fail, whatever its randomness (no deterministic=False skip needed).
    length = _length(ctx)
    if length == 0:
        ctx.skip("ds is empty")
    index = length - 1
    sample = _get(ctx, index)
    again = _get(ctx, index)
    shared = _shared_leaf(sample, again)
    if shared:
        path, other_path = shared
        ctx.fail(
            f"sample = ds[{index}] and a second ds[{index}] share memory (sample{path} overlaps "
            f"sample{other_path} of the second call): ds[i] returns memory the dataset keeps (a view of "
            f"its storage, or a buffer it reuses), so once sample is modified in place ds[{index}] "
            "changed too; expected each call to return independent data (an in-place transform or "
            "training step then corrupts the dataset; over a read-only memory map, writing crashes)",
            reproduce=f"a, b = ds[{index}], ds[{index}]; np.shares_memory(a{path}, b{other_path})",
        )


@register_check(
    protocol=MapDataset, severity="required", requires=(getitem_in_range_succeeds,), since="0.1.0"
)
def samples_survive_later_fetches(ctx: Context) -> None:
    """A sample keeps its value when other indices are fetched after it (a DataLoader fetches all of a
    batch's samples before collating them)."""
    indices = ctx.sample_indices(_length(ctx))[:4]
    if len(indices) < 2:
        ctx.skip("ds has fewer than two samples")
    problem = overwritten_sample_problem(ctx, ctx.obj, "ds", indices)
    if problem is not None:
        ctx.fail(problem[0], reproduce=problem[1])


@register_check(
    protocol=MapDataset,
    severity="recommended",
    requires=(getitem_in_range_succeeds, getitem_is_deterministic),
    since="0.1.0",
)
def accepts_numpy_integer_index(ctx: Context) -> None:
    """ds[np.int64(i)] returns ds[i] (indices often come from NumPy arrays)."""
    length = _length(ctx)
    if length == 0:
        ctx.skip("ds is empty")
    index = length - 1
    sample = _get(ctx, np.int64(index), shown=f"np.int64({index})")
    if ctx.options.deterministic:  # deterministic=False: that ds[np.int64(i)] returns is enough
        # A NumPy index may give NumPy scalars where a Python index gives Python numbers.
        found = difference(sample, _get(ctx, index), loose_scalars=True)
        if found:
            ctx.fail(
                f"ds[np.int64({index})] differs from ds[{index}] ({found}); expected the same sample "
                "(declare deterministic=False for random samples)",
                reproduce=f"ds[np.int64({index})] == ds[{index}]",
            )


# -- worker processes (SPEC.md, "Worker processes"; the mechanism is in _workers.py) -------------------


@register_check(
    protocol=MapDataset, severity="required", requires=(getitem_in_range_succeeds,), since="0.1.0"
)
def samples_cross_process_boundary(ctx: Context) -> None:
    """Every sample can travel from a worker process to the main process: it pickles, and holds no
    tensor that requires grad or lives off the CPU."""
    require_map_style(ctx)
    for index in ctx.sample_indices(_length(ctx)):
        problem = crossing_problem(ctx, _get(ctx, index), f"ds[{index}]")
        if problem is not None:
            message, reproduce = problem
            ctx.fail(message, reproduce=reproduce)


@register_check(
    protocol=MapDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(getitem_in_range_succeeds, samples_cross_process_boundary),
    since="0.1.0",
)
def workers_draw_independent_randomness(ctx: Context) -> None:
    """A dataset declared deterministic=False draws different randomness in each worker and epoch."""
    if ctx.options.deterministic:
        ctx.skip("applies to datasets declared deterministic=False")
    require_map_style(ctx)
    if _length(ctx) == 0:
        ctx.skip("ds is empty")
    what = f"DataLoader(ds, sampler=[0] * {2 * PAIRS}, num_workers=2)"
    # Index 0 again and again: tasks go to the workers in turn, so even items come from worker 0
    # and odd ones from worker 1, drawing for the same sample.
    dataset, epoch = epochs_of(ctx)
    loader = worker_loader(ctx, dataset, sampler=[0] * (2 * PAIRS), num_workers=2)
    epoch(0)
    first = drain(ctx, loader, what, limit=2 * PAIRS, partial=True)
    epoch(1)
    second = drain(ctx, loader, what, limit=2 * PAIRS, partial=True)
    across = pairs_of(first[0::2], first[1::2]) + pairs_of(second[0::2], second[1::2])
    problem = randomness_problem(ctx, across, pairs_of(first[0::2], second[0::2]), what, 2)
    if problem:
        ctx.fail(problem, reproduce=f"list({what.replace('ds,', 'ds, batch_size=None,')})")


@register_check(
    protocol=MapDataset,
    severity="recommended",
    needs=("torch", "workers"),
    requires=(index_past_end_raises_index_error,),
    since="0.1.0",
)
def worker_errors_keep_their_type(ctx: Context) -> None:
    """An exception raised by the dataset in a worker reaches the caller with its original type."""
    require_map_style(ctx)
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
    loader = worker_loader(ctx, ctx.obj, sampler=[index], num_workers=2)
    iterator = ctx.call_starting_processes(f"iter({what})", iter, loader)
    try:
        outcome = ctx.attempt(f"next(iter({what}))", next, iterator)
    finally:
        shut_down_workers(ctx, iterator)
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


@register_check(
    protocol=MapDataset,
    severity="required",
    needs=("torch", "workers", "fresh_interpreter"),
    requires=(pickle_round_trip, samples_cross_process_boundary),
    since="0.1.0",
)
def spawn_workers_yield_same_samples(ctx: Context) -> None:
    """A worker that rebuilds the dataset from its pickle (spawn, forkserver) yields the same samples."""
    require_map_style(ctx)
    indices = ctx.sample_indices(_length(ctx))[:8]
    what = f"DataLoader(ds, sampler={indices}, num_workers=1, multiprocessing_context='spawn')"
    reproduce = f"list({what})  # in a script guarded by if __name__ == '__main__':"

    def local(position: int) -> tuple[str, Any]:
        index = indices[position]
        return f"ds[{index}]", ctx.call(f"ds[{index}]", operator.getitem, ctx.obj, index)

    fetched = in_fresh_interpreter(ctx, indices=indices, limit=len(indices), reproduce=reproduce, local=local)
    if len(fetched.items) != len(indices):
        ctx.fail(
            f"{SPAWNED}, ds gave {len(fetched.items)} samples for the indices {indices}; expected "
            f"{len(indices)}",
            reproduce=reproduce,
        )
    for index, blob in zip(indices, fetched.items, strict=True):
        item = unpickled(ctx, blob, f"ds[{index}]")
        expected = ctx.call(f"ds[{index}]", operator.getitem, ctx.obj, index)
        found = difference(item, expected) if ctx.options.deterministic else None
        if found:
            ctx.fail(
                f"{SPAWNED}, ds[{index}] differs from ds[{index}] in this process ({found}); expected "
                "the same sample (the worker rebuilds the dataset from its pickle and re-imports its "
                "module: state set at run time in the main process is lost)",
                reproduce=reproduce,
            )


# Consecutive indices that fork_workers_yield_same_samples loads, each by both workers: four, so that
# neither worker can finish its share before the other starts (DataLoader keeps at most
# prefetch_factor * num_workers = 4 tasks out, in order: a worker finishes at most 3 of its tasks before
# the other's first is done), and no more (every sample crosses a process boundary twice).
FORK_RUN = 4


@register_check(
    protocol=MapDataset,
    severity="required",
    needs=("torch", "workers"),
    requires=(getitem_is_deterministic, samples_survive_later_fetches, samples_cross_process_boundary),
    since="0.1.0",
)
def fork_workers_yield_same_samples(ctx: Context) -> None:
    """Forked workers (the default start method on Linux) that load the same indices at the same time
    yield the samples this process gives: no handle opened in __init__ is shared between them."""
    if not ctx.options.deterministic:
        ctx.skip("the target declares deterministic=False: workers' samples cannot be compared")
    require_map_style(ctx)
    if fork_context() is None:
        ctx.skip("workers are not forked on this platform (spawn_workers_yield_same_samples applies)")
    length, error_index = _length(ctx), ctx.options.error_index
    start = 0 if error_index is None or error_index >= FORK_RUN else error_index + 1
    run = list(range(start, min(start + FORK_RUN, length)))
    if not run:
        ctx.skip("ds has no index to load")
    # In order, as a sequential sampler reads them: the workers fork after this process read them.
    expected = {index: _get(ctx, index) for index in run}
    sampler = [index for index in run for _ in (0, 1)]
    shown = f"[{run[0]}, {run[0]}, {run[1]}, {run[1]}, ...]" if len(run) > 1 else str(sampler)
    what = f"DataLoader(ds, sampler={shown}, num_workers=2)"
    handles = open_handles(ctx.obj, "ds")
    held = (
        f" (ds holds {', '.join(handles)}, opened in this process and inherited by every forked worker)"
        if handles
        else ""
    )
    fix = (
        "a file, SQLite, HDF5 or LMDB handle opened in __init__ is shared by every forked worker: its "
        f"offset or lock moves under the others' feet{held}. Open it lazily in each process (on the "
        "first __getitem__ of a process, keyed by os.getpid(), or in worker_init_fn), or read with "
        "os.pread / a memory map"
    )
    compared = ComparedInWorker(ctx.obj, expected)
    loader = worker_loader(ctx, compared, sampler=sampler, num_workers=2, context=fork_context())
    iterator = ctx.call_starting_processes(f"iter({what})", iter, loader)
    items: list[Any] = []
    try:
        while len(items) < len(sampler) and not ctx.out_of_time():
            outcome = ctx.attempt(f"next(iter({what})) (item {len(items)})", next, iterator)
            if isinstance(outcome, StopIteration):
                break
            if isinstance(outcome, Exception):
                index = sampler[len(items)]
                last_line = (str(outcome).strip().splitlines() or [""])[-1]
                ctx.fail(
                    f"through {what} (forked workers, each index loaded by both), ds[{index}] raised "
                    f"{type(outcome).__name__}: {last_line} but in this process it returns a sample; "
                    f"expected the same samples: {fix}",
                    reproduce=f"list({what})",
                )
            items.append(outcome)
    finally:
        shut_down_workers(ctx, iterator)
    if len(items) < len(sampler):
        if ctx.out_of_time():
            ctx.unverified(
                f"while reading {what} (after {len(items)} items): an epoch cut short is not compared"
            )
        ctx.fail(
            f"{what} yielded {len(items)} samples for {len(sampler)} indices; expected one per index",
            reproduce=f"len(list({what}))",
        )
    for position, found in enumerate(items):
        index = sampler[position]
        if found:
            ctx.fail(
                f"through {what} (forked workers, each index loaded by both), ds[{index}] (item {position}) "
                f"differs from ds[{index}] in this process ({found}); expected the same samples: {fix}",
                reproduce=f"list({what})[{position}] == ds[{index}]",
            )


@register_check(
    protocol=MapDataset,
    severity="recommended",
    needs=("torch", "workers"),
    requires=(getitem_is_deterministic, samples_cross_process_boundary),
    since="0.1.0",
)
def set_epoch_reaches_persistent_workers(ctx: Context) -> None:
    """A dataset with set_epoch gives the samples of the epoch set in this process also through a
    DataLoader's persistent workers."""
    if not callable(getattr(ctx.obj, "set_epoch", None)):
        ctx.skip("ds has no set_epoch method")
    if not ctx.options.deterministic:
        ctx.skip("the target declares deterministic=False: the samples of two epochs cannot be compared")
    require_map_style(ctx)
    indices = ctx.sample_indices(_length(ctx))[:8]
    if not indices:
        ctx.skip("ds is empty")
    problem = map_stale_epoch(ctx, ctx.obj, "ds", indices)
    if problem:
        ctx.fail(problem[0], reproduce=problem[1])


@register_check(
    protocol=MapDataset,
    severity="recommended",
    requires=(len_is_non_negative_int,),
    since="0.1.0",
    touches="copies",
)
def holds_few_python_objects(ctx: Context) -> None:
    """The dataset keeps its per-sample data in few large buffers, not in a million Python objects
    or more, which every forked worker copies as it reads them."""
    require_map_style(ctx)
    count, biggest, whole = python_objects_held(ctx, ctx.obj, MANY_OBJECTS)
    if count > MANY_OBJECTS:
        where = f", most under ds.{biggest}" if biggest else ""
        ctx.fail(
            f"ds holds more than {MANY_OBJECTS:,} Python objects (reached from its attributes{where}); "
            "expected per-sample data in a few large buffers: a DataLoader worker forked from this "
            "process shares the dataset's memory until it reads an object, and reading updates the "
            "object's reference count, which copies its memory page into the worker, so each worker's "
            "memory grows towards a full copy during an epoch (pytorch#13246). Keep such data in NumPy "
            "arrays (np.array(paths) rather than a list of str), tensors or Arrow tables",
            reproduce=f"len(ds.{biggest})" if biggest else "vars(ds)",
        )
    if not whole:
        ctx.unverified(f"after counting {count:,} Python objects held by ds")
