"""Checks for :class:`~torchcontract.protocols.CollateFn` (SPEC.md, "CollateFn").

The target's ``example_inputs`` is a list of samples; the checks collate it and parts of it. They
pass deep copies, so a collate function that modifies its input cannot change the example, and every
check restores the collate function afterwards (the engine's snapshot, :mod:`~._preserve`: an instance that
counts its batches, a closure that grows a vocabulary). Only one clause compares two batches, so the
``deterministic`` declaration applies only to the pickle round trip, which compares the unpickled
collate function's batch with the original's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from torchcontract.conformance._core.context import Context
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._values import (
    describe,
    difference,
    holds_sample,
    is_array,
    mapping_items,
    sample_count,
)
from torchcontract.conformance.checks._batches import accelerator_available, pin_problem, round_trip
from torchcontract.protocols import CollateFn


def _collate(ctx: Context, samples: list[Any], label: str) -> Any:
    return ctx.call(f"collate({label})", ctx.obj, copy.deepcopy(samples))


def _sublists(samples: list[Any]) -> list[tuple[str, list[Any]]]:
    """The whole list, one sample, and all but one (a collate that ignores len(samples) shows)."""
    parts = [("samples", samples), ("samples[:1]", samples[:1])]
    if len(samples) > 2:
        parts.append((f"samples[:{len(samples) - 1}]", samples[:-1]))
    return parts


@register_check(protocol=CollateFn, severity="required", needs=("example_inputs",), since="0.1.0")
def batch_has_one_row_per_sample(ctx: Context) -> None:
    """collate(samples) holds len(samples) samples: the leading dimension of its arrays/tensors.
    Under transforms_samples=True only that it collates any number of samples (the whole list, one,
    all but one): a DataLoader's last batch is short."""
    transforms = ctx.options.transforms_samples
    for label, samples in _sublists(ctx.example_inputs):
        batch = _collate(ctx, samples, label)
        if transforms:
            continue
        count = sample_count(batch, like=samples[0])
        if count is None:
            ctx.skip(
                f"cannot count the samples in collate({label}) = {describe(batch)}: its array leaves "
                "do not share a leading dimension (declare transforms_samples=True for a collate that "
                "packs samples: then only that it collates any number of them is checked)"
            )
        if count != len(samples):
            ctx.fail(
                f"collate({label}) holds {count} samples ({describe(batch)}) but was given "
                f"{len(samples)}; expected one row per sample along the leading dimension (declare "
                "transforms_samples=True for a collate that packs samples into rows)",
                reproduce=f"collate({label})  # samples = example_inputs",
            )
    if transforms:
        ctx.note(
            "the target declares transforms_samples=True: the rows were not counted; it collated "
            + ", ".join(label for label, _ in _sublists(ctx.example_inputs))
        )


def mirror_problem(samples: list[Any], batch: Any, path: str = "batch") -> str | None:
    """Why ``batch`` does not mirror the structure of ``samples`` (the values of every sample at
    ``path``), or None. The forms torch's ``collate`` gives, node by node
    (``utils/data/_utils/collate.py``), and those a collate function may choose instead:

    - one value per sample: a sequence of ``len(samples)`` items, each the sample's value kept whole
      (``collate_fn=lambda b: b``, a dict of lists, ``default_convert``), at any node;
    - a Mapping: a mapping with the first sample's keys, each mirrored;
    - a namedtuple: the same namedtuple type, each field mirrored;
    - a tuple: a sequence (a tuple becomes a list) of as many batched fields, each mirrored;
    - a list: its length is not structure (token lists vary), so any sequence (its batched fields,
      or padded rows) or array (padded or stacked rows, a nested tensor) mirrors it; batched fields
      of lists of one length are mirrored each;
    - a leaf: any batch leaf.
    """
    sample = samples[0]
    if _one_value_per_sample(samples, batch):
        return None
    if isinstance(sample, Mapping):
        if not isinstance(batch, Mapping):
            return f"{path} is {describe(batch)} but the samples are mappings; expected a mapping"
        keys = _keys(sample)
        if keys is None:
            return None  # a mapping whose keys cannot be read: nothing to compare
        if set(_keys(batch) or ()) != set(keys):
            return (
                f"{path} has keys {sorted(map(repr, _keys(batch) or ()))} but the samples have "
                f"{sorted(map(repr, keys))}; expected the same keys"
            )
        for key in keys:
            values = [each[key] for each in samples if isinstance(each, Mapping) and key in each]
            found = mirror_problem(values or [sample[key]], batch[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(sample, tuple) and hasattr(type(sample), "_fields") and type(batch) is not type(sample):
        name = type(sample).__name__
        return (
            f"{path} is {describe(batch)} but the samples are {name}s; expected a {name}, so that "
            "fields stay reachable by name (default_collate keeps the namedtuple type)"
        )
    if isinstance(sample, (tuple, list)):
        sequence = isinstance(batch, Sequence) and not isinstance(batch, (str, bytes))
        if isinstance(sample, list) and not sequence and is_array(batch):
            return None  # rows padded or stacked into an array: list lengths are not structure
        if not sequence:
            return (
                f"{path} is {describe(batch)} but the samples are {type(sample).__name__}s; expected a "
                f"sequence of {len(sample)} batched fields, or of one value per sample"
            )
        same_length = all(isinstance(each, (tuple, list)) and len(each) == len(sample) for each in samples)
        if len(batch) == len(sample) and same_length:
            for index, batched in enumerate(batch):
                found = mirror_problem([each[index] for each in samples], batched, f"{path}[{index}]")
                if found:
                    return found
            return None
        if isinstance(sample, list):
            # Rows of their own length (padded token lists), or fields of lists of unequal length.
            return None
        return (
            f"{path} has {len(batch)} fields but each sample has {len(sample)}; expected one field per "
            f"sample field (or one value per sample: {len(samples)})"
        )
    return None


def _keys(mapping: Any) -> list[Any] | None:
    pairs = mapping_items(mapping)
    return None if pairs is None else [key for key, _ in pairs]


def _one_value_per_sample(samples: list[Any], batch: Any) -> bool:
    """Whether ``batch`` is a non-empty sequence of the samples' values kept whole (as they are, or as
    torch's ``default_convert`` leaves them: tuples as lists, NumPy values as tensors). How many
    there are is ``collate_fn.batch_has_one_row_per_sample``'s business: each is compared with the
    sample at its position (the first, past the last)."""
    if not isinstance(batch, Sequence) or isinstance(batch, (str, bytes)) or not batch:
        return False
    if not isinstance(samples[0], (Mapping, tuple, list)) and not is_array(samples[0]):
        return False  # a leaf's batch is any batch leaf; a list of leaves says nothing more
    return all(
        holds_sample(item, samples[index] if index < len(samples) else samples[0])
        for index, item in enumerate(batch)
    )


@register_check(protocol=CollateFn, severity="required", needs=("example_inputs",), since="0.1.0")
def batch_mirrors_sample_structure(ctx: Context) -> None:
    """The batch mirrors a sample's structure: dict keys, tuple/namedtuple arity and type."""
    if ctx.options.transforms_samples:
        ctx.skip(
            "the target declares transforms_samples=True: its batches need not mirror the samples' "
            "structure (renamed keys, packed rows)"
        )
    samples = ctx.example_inputs
    batch = _collate(ctx, samples, "samples")
    if _one_value_per_sample(samples, batch):
        ctx.note("the batch is the list of samples itself, each with the sample's structure")
        return
    problem = mirror_problem(samples, batch)
    if problem:
        ctx.fail(
            f"{problem} (sample 0 is {describe(samples[0])}; declare transforms_samples=True for a "
            "collate that renames keys or packs samples by design)",
            reproduce="collate(samples)  # samples = example_inputs",
        )


@register_check(protocol=CollateFn, severity="recommended", needs=("example_inputs",), since="0.1.0")
def pickle_round_trip(ctx: Context) -> None:
    """pickle.loads(pickle.dumps(collate)) collates example_inputs into a batch equal to the original's."""
    clone, problem = round_trip(ctx, ctx.obj, "collate")
    if problem is not None:
        why, reproduce = problem
        ctx.fail(
            f"{why}; expected collate to pickle (a DataLoader with num_workers > 0 sends its collate_fn "
            "to each worker pickled under spawn or forkserver, the default start method on macOS, on "
            "Windows and on Linux from Python 3.14): define it at module level (not a lambda or a "
            "function defined inside another), or use functools.partial of a module-level function",
            reproduce=reproduce,
        )
    if not ctx.options.deterministic:
        ctx.note("deterministic=False: the unpickled collate's batch was not compared")
        return
    samples = ctx.example_inputs
    expected = _collate(ctx, samples, "samples")
    restored = ctx.call("pickle.loads(pickle.dumps(collate))(samples)", clone, copy.deepcopy(samples))
    found = difference(restored, expected)
    if found:
        ctx.fail(
            f"pickle.loads(pickle.dumps(collate))(samples) differs from collate(samples) ({found}); "
            "expected the same batch (a worker started with spawn or forkserver collates with the "
            "unpickled copy: its __reduce__ or __getstate__ must keep what it collates with; declare "
            "deterministic=False for a collate that draws random augmentations)",
            reproduce=(
                "pickle.loads(pickle.dumps(collate))(samples) == collate(samples)  # samples = example_inputs"
            ),
        )


@register_check(protocol=CollateFn, severity="required", needs=("torch", "example_inputs"), since="0.1.0")
def pin_memory_returns_batch(ctx: Context) -> None:
    """A batch (or a part of it) of a custom type with a pin_memory() method gets the pinned batch back
    from it: the same type, equal values, not None."""
    batch = _collate(ctx, ctx.example_inputs, "samples")
    problem = pin_problem(ctx, batch, "collate(samples)")
    if problem is not None:
        ctx.fail(problem[0], reproduce=f"{problem[1]}  # samples = example_inputs")
    if not accelerator_available():
        ctx.note("no accelerator: Tensor.pin_memory was stood in for by Tensor.clone during the calls")
