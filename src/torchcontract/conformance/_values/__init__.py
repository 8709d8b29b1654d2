"""What the checks need to know about samples, batches and outputs: equality, structure, counts, reprs.

torch is never imported here: a value can only be a tensor if torch is already in ``sys.modules``.

Every function here takes any value a dataset, loader or module may legally produce and never raises
on it: odd mappings, objects with identity ``==``, cycles, and unusual tensors (nested, quantized,
sparse, meta) are all handled. They all look inside values through one traversal,
:func:`~.tree.flatten`, whose module states the rules (what a container is, the mapping keys and
types, objects, cycles, depth); the modules beside this one build on it:

- :mod:`.tree`: the traversal (a tree spec and its leaves), ``unflatten``;
- :mod:`.arrays`: arrays and tensors as leaves (dtype, layout, values);
- :mod:`.describe`: values and structures in words, and the structure summaries;
- :mod:`.equality`: equality, differences with their paths, tolerances, fingerprints;
- :mod:`.convert`: moving and converting the tensors inside a value (it builds on this module).

This module is the one the checks import; it adds sample counts and the mutation helpers. The values
layer sits just above :mod:`.._runtime.calls` (what is the object's time, what is torchcontract's own
work), the only module of the suite it imports.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from torchcontract._kinds import is_iterable_style
from torchcontract.conformance._runtime.calls import ours
from torchcontract.conformance._values.arrays import (
    NotComparable,
    as_numpy,
    components,
    is_array,
    is_meta,
    is_nested,
    is_quantized,
    is_tensor,
    shape,
    tensor_module,
)
from torchcontract.conformance._values.describe import (
    converted_skeleton,
    describe,
    describe_structure,
    skeleton,
    structure,
)
from torchcontract.conformance._values.equality import (
    Comparison,
    close_difference,
    compare,
    difference,
    fingerprint,
)
from torchcontract.conformance._values.tree import (
    BUILTIN_ATOMS,
    MAX_DEPTH,
    TreeSpec,
    flatten,
    leaf_paths,
    mapping_items,
    unflatten,
)

__all__ = [
    "MAX_DEPTH",
    "NO_SAMPLE",
    "Comparison",
    "NotComparable",
    "TreeSpec",
    "as_numpy",
    "close_difference",
    "compare",
    "describe",
    "describe_structure",
    "difference",
    "fingerprint",
    "flatten",
    "holds_sample",
    "is_array",
    "is_iterable_style",
    "is_tensor",
    "leaves",
    "mapping_items",
    "mutable_leaves",
    "restore_leaves",
    "sample_count",
    "shape",
    "snapshot_leaves",
    "structure",
    "tensor_module",
    "unflatten",
]


@ours
def leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every non-container leaf of a sample, with its path (``[0]['image']``); each container is
    entered once per path (a cycle ends), at most :data:`MAX_DEPTH` deep. Plain dicts (with atom
    keys), lists and tuples are walked directly, in the order :func:`~.tree.flatten` gives (a
    mapping's keys sorted by repr); any other container through it."""
    return list(_leaves(value, path, 0, set()))


def _leaves(value: Any, path: str, depth: int, active: set[int]) -> Iterator[tuple[str, Any]]:
    kind = type(value)
    if kind is dict or kind is list or kind is tuple:
        if id(value) in active or depth > MAX_DEPTH:
            return  # a cycle, or too deep: flatten gives no leaves there either
        if kind is dict:
            if not set(map(type, value)) <= BUILTIN_ATOMS:
                yield from _flattened_leaves(value, path, depth)
                return
            children: list[tuple[object, Any]] = [(repr(key), item) for key, item in dict.items(value)]
            children.sort(key=lambda pair: str(pair[0]))
        else:
            children = list(enumerate(value))
        active.add(id(value))
        try:
            for key, item in children:
                if type(item) in BUILTIN_ATOMS:  # most leaves: no generator of their own
                    yield f"{path}[{key}]", item
                else:
                    yield from _leaves(item, f"{path}[{key}]", depth + 1, active)
        finally:
            active.discard(id(value))
        return
    if kind in BUILTIN_ATOMS or is_array(value):
        yield path, value
        return
    yield from _flattened_leaves(value, path, depth)


def _flattened_leaves(value: Any, path: str, depth: int) -> Iterator[tuple[str, Any]]:
    for where, spec in leaf_paths(flatten(value, depth=depth)[0], path):
        yield where, spec.value


# ----------------------------------------------------------------------------------------------------
# sample counts

# "No example sample given" for :func:`sample_count` (None is a valid sample).
NO_SAMPLE: Any = object()


@ours
def holds_sample(item: Any, sample: Any) -> bool:
    """Whether ``item`` is ``sample`` kept whole by a collate function: with its containers, keys and
    arity, and its arrays of as many dimensions (not stacked into a batch), as it is or as torch's
    ``default_convert`` leaves it (tuples as lists, NumPy values as tensors). List lengths and
    shapes do not count (SPEC.md, "Conventions"): ``item`` may be another sample than ``sample``."""
    found = skeleton(item)
    return found == skeleton(sample) or found == converted_skeleton(sample)


def _unstacked_count(batch: Any, sample: Any, depth: int) -> int | None:
    """The number of samples in a batch that keeps them whole, given one sample: a list of samples
    (``collate_fn=lambda b: b``, or ``default_convert``, which turns tuple samples into lists), or a
    tuple/dict of fields each holding its per-sample values (``tuple(zip(*samples))``). None when the
    batch has neither form."""
    if isinstance(batch, (list, tuple)) and batch:
        expected = {skeleton(sample), converted_skeleton(sample)}
        if all(skeleton(item) in expected for item in batch):
            return len(batch)
    fields: list[tuple[Any, Any]] = []
    if isinstance(sample, (list, tuple)) and isinstance(batch, (list, tuple)) and len(batch) == len(sample):
        fields = list(zip(batch, sample, strict=True))
    elif isinstance(sample, Mapping) and isinstance(batch, Mapping):
        batch_items, sample_items = mapping_items(batch), mapping_items(sample)
        if batch_items is not None and sample_items is not None:
            batch_fields = dict(batch_items)
            if set(batch_fields) == {key for key, _ in sample_items}:
                fields = [(batch_fields[key], item) for key, item in sample_items]
    if fields and depth < MAX_DEPTH:
        counts = {_sample_count(field_batch, field_sample, depth + 1) for field_batch, field_sample in fields}
        if len(counts) == 1:
            return counts.pop()
    return None


@ours
def sample_count(batch: object, *, like: Any = NO_SAMPLE) -> int | None:
    """The number of samples in a batch: the leading dimension shared by its array and tensor leaves,
    else the length of a list batch. None when that is ambiguous (leaves disagree) or unknown.

    ``like``, one sample of the batch, lets a batch that keeps its samples whole count too: a list of
    samples holds its length, not the samples' own leading dimension.
    """
    try:
        return _sample_count(batch, like, 0)
    except Exception:  # never on the values above; a last guard for our own code
        return None


def _leading_dim(leaf: Any) -> int | None:
    if is_nested(leaf):
        parts = components(leaf)
        return None if parts is None else len(parts)
    dims = shape(leaf)
    if not dims:
        return None
    try:
        return int(dims[0])
    except Exception:
        return None


def _sample_count(batch: object, like: Any, depth: int) -> int | None:
    if like is not NO_SAMPLE:
        count = _unstacked_count(batch, like, depth)
        if count is not None:
            return count
    dims = {dim for _, leaf in leaves(batch) if is_array(leaf) and (dim := _leading_dim(leaf)) is not None}
    if len(dims) == 1:
        return dims.pop()
    if not dims and isinstance(batch, list):
        return len(batch)
    return None


# ----------------------------------------------------------------------------------------------------
# mutation helpers: checks that must modify a value restore it exactly afterwards


def mutable_leaves(value: Any) -> Iterator[Any]:
    """The leaves a check may modify in place and restore: writable, non-empty ndarrays of a numeric
    or bool dtype, and dense (strided), non-quantized, non-inference tensors with data."""
    torch = tensor_module()
    for _, leaf in leaves(value):
        if isinstance(leaf, np.ndarray):
            if leaf.flags.writeable and leaf.size and leaf.dtype.kind in "biufc":
                yield leaf
        elif is_tensor(leaf):
            try:
                usable = (
                    not is_nested(leaf)
                    and not is_quantized(leaf)
                    and not is_meta(leaf)
                    and leaf.layout == torch.strided
                    and bool(leaf.numel())
                    and not leaf.is_inference()
                )
            except Exception:
                usable = False
            if usable:
                yield leaf


def snapshot_leaves(value: Any) -> list[tuple[Any, Any]]:
    """(leaf, copy of its contents) for every leaf of :func:`mutable_leaves`."""
    return [
        (leaf, leaf.copy() if isinstance(leaf, np.ndarray) else leaf.detach().clone())
        for leaf in mutable_leaves(value)
    ]


def restore_leaves(saved: list[tuple[Any, Any]]) -> None:
    for leaf, contents in saved:
        if isinstance(leaf, np.ndarray):
            np.copyto(leaf, contents)
        else:
            torch = tensor_module()
            with torch.no_grad():
                leaf.copy_(contents)
