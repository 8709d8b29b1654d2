"""The mechanism shared by the Loader and CollateFn clauses on what happens to a batch on its way to
the training loop: the functions a worker process receives pickled (``collate_fn``,
``worker_init_fn``), ``pin_memory`` of custom batch types, and the samples a batch is made of (fetched
all before they are collated; counted in a stacked batch).

The clauses themselves are in their protocol's module (``loader.py``, ``collate_fn.py``).
"""

from __future__ import annotations

import inspect
import operator
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import numpy as np

from torchcontract.conformance._core.context import Context
from torchcontract.conformance._runtime.calls import global_change
from torchcontract.conformance._values import describe, difference, is_array, is_tensor, leaves, tensor_module
from torchcontract.conformance._values import shape as array_shape
from torchcontract.conformance.checks._common import try_deepcopy

# The walk of a batch for custom types stops after this many nodes, and this deep (cycles).
MAX_NODES = 10_000
MAX_DEPTH = 32


def round_trip(ctx: Context, fn: Any, name: str) -> tuple[Any, tuple[str, str] | None]:
    """``pickle.loads(pickle.dumps(fn))`` and None, or None and (why not, the reproducer)."""
    reproduce = f"pickle.loads(pickle.dumps({name}))"
    blob = ctx.attempt(f"pickle.dumps({name})", pickle.dumps, fn, protocol=pickle.HIGHEST_PROTOCOL)
    if isinstance(blob, Exception):
        return None, (f"pickle.dumps({name}) raised {type(blob).__name__}: {blob}", reproduce)
    clone = ctx.attempt(f"pickle.loads(pickle.dumps({name}))", pickle.loads, blob)
    if isinstance(clone, Exception):
        return None, (f"pickle.loads(pickle.dumps({name})) raised {type(clone).__name__}: {clone}", reproduce)
    return clone, None


def accelerator_available() -> bool:
    """Whether torch has an accelerator to pin memory for (``torch.accelerator.is_available()``, as
    ``DataLoader`` asks: ``_BaseDataLoaderIter.__init__``); False without torch."""
    torch = tensor_module()
    if torch is None:
        return False
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and callable(getattr(accelerator, "is_available", None)):
        return bool(accelerator.is_available())
    return bool(torch.cuda.is_available())


@contextmanager
def pinning_without_accelerator() -> Iterator[None]:
    """Within the block, ``Tensor.pin_memory()`` returns ``tensor.clone()`` when no accelerator is
    available, so that a batch's own ``pin_memory()`` runs on any machine.

    Why this is safe: without an accelerator the real ``Tensor.pin_memory()`` raises (there is no
    device to pin for), so no working code in this process relies on it while we patch it; ``clone``
    returns what pinning returns (a new CPU tensor with the same values, dtype and shape) except for
    where its memory lives, which no clause looks at. The patch is ``mock.patch.object`` on
    ``torch.Tensor`` (the C method is inherited from ``TensorBase``, so leaving the block deletes the
    attribute again), and only wraps our own call of the batch's ``pin_memory()``. With an
    accelerator nothing is patched: the tensors are really pinned."""
    torch = tensor_module()
    if torch is None or accelerator_available():
        yield
        return

    def clone(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self.clone()

    patcher = mock.patch.object(torch.Tensor, "pin_memory", clone)
    patcher.start()
    with global_change(patcher.stop):  # undone at once should the check be given up on (a hung call)
        yield


def _own_pin_memory(node: Any) -> bool:
    """Whether ``torch.utils.data._utils.pin_memory.pin_memory`` would call ``node.pin_memory()`` as
    the batch (not a tensor, but has the attribute). Looked up statically, so that no code of the
    batch runs outside ``ctx.call``."""
    if is_tensor(node):
        return False
    try:
        return inspect.getattr_static(node, "pin_memory", None) is not None
    except Exception:
        return False


def custom_pinned_nodes(batch: Any, shown: str) -> list[tuple[str, Any]]:
    """The parts of ``batch`` whose own ``pin_memory()`` torch calls, with their paths, walked as
    ``_utils/pin_memory.py::pin_memory`` walks a batch (it stops at a tensor, a string and at a node
    with ``pin_memory``; it enters mappings and sequences). Only Python's own dicts, lists and tuples
    (namedtuples too) are entered: iterating another container would run its code outside ``ctx.call``."""
    found: list[tuple[str, Any]] = []
    stack: list[tuple[str, Any, int]] = [(shown, batch, 0)]
    visited = 0
    while stack and visited < MAX_NODES:
        path, node, depth = stack.pop()
        visited += 1
        if _own_pin_memory(node):
            found.append((path, node))
            continue
        if depth >= MAX_DEPTH or isinstance(node, (str, bytes)) or is_tensor(node):
            continue
        children: list[tuple[str, Any]] = []
        if isinstance(node, dict):
            children = [(f"{path}[{key!r}]", value) for key, value in dict.items(node)]
        elif isinstance(node, (list, tuple)):
            items = list.__iter__(node) if isinstance(node, list) else tuple.__iter__(node)
            children = [(f"{path}[{index}]", value) for index, value in enumerate(items)]
        stack.extend((child_path, child, depth + 1) for child_path, child in reversed(children))
    return found


def pin_problem(ctx: Context, batch: Any, shown: str) -> tuple[str, str] | None:
    """Why pinning ``batch`` (shown as ``shown``) as DataLoader does loses it: a part whose own
    ``pin_memory()`` returns None, another type, or other values; with the reproducer. None when
    every such part returns the pinned batch (or there is none)."""
    for path, node in custom_pinned_nodes(batch, shown):
        what = f"{path}.pin_memory()"
        with pinning_without_accelerator():
            pinned = ctx.call(what, lambda node=node: node.pin_memory())
        kind = type(node).__qualname__
        place = "as the batch" if path == shown else f"in place of {path} in every batch"
        consequence = (
            f"torch's DataLoader(pin_memory=True) hands the training loop what it returns {place} "
            "(utils/data/_utils/pin_memory.py, pin_memory: return data.pin_memory())"
        )
        if pinned is None:
            return (
                (
                    f"{what} returned None; expected the pinned {kind} (a method that pins its tensors "
                    f"in place must still return self): {consequence}, so the loop gets None"
                ),
                f"{what} is not None",
            )
        if not isinstance(pinned, type(node)):
            return (
                (
                    f"{what} returned {describe(pinned)}; expected a {kind} with its tensors pinned: "
                    f"{consequence}, so the loop gets a {type(pinned).__qualname__}"
                ),
                f"type({what})",
            )
        found = difference(node, pinned)
        if found:
            return (
                (
                    f"{what} differs from {path} ({found}); expected the same {kind} with its tensors "
                    f"pinned (equal values): {consequence}"
                ),
                f"{what} == {path}",
            )
    return None


# -- a batch's samples, fetched before they are collated ----------------------------------------------


def overwritten_sample_problem(
    ctx: Context, dataset: Any, name: str, indices: list[int]
) -> tuple[str, str] | None:
    """Why a sample of ``dataset`` (shown as ``name``) changes when other indices are fetched after
    it, with the reproducer; None when ``name[indices[0]]`` keeps its value while ``name[j]`` is
    fetched for each other ``j`` of ``indices``. Compared by value against a deep copy taken before,
    never by identity alone: equal samples (duplicates in the data) are no fault."""
    first_index, others = indices[0], indices[1:]
    first = ctx.call(f"{name}[{first_index}]", operator.getitem, dataset, first_index)
    before, error = try_deepcopy(first, f"copy.deepcopy({name}[{first_index}])")
    if error is not None:
        ctx.skip(
            f"{name}[{first_index}] cannot be deep-copied to compare it later "
            f"({type(error).__name__}: {error})"
        )
    for other_index in others:
        other = ctx.call(f"{name}[{other_index}]", operator.getitem, dataset, other_index)
        found = difference(first, before)
        if not found:
            continue
        shared = " (they are one object: one buffer returned for every index)" if first is other else ""
        became = difference(first, other) is None
        holds = (
            f"sample {other_index} twice"
            if became
            else f"sample {first_index} overwritten by the later fetch"
        )
        message = (
            f"{name}[{first_index}] changed after {name}[{other_index}] was fetched ({found}){shared}; "
            "expected a returned sample to keep its value when other indices are fetched: a DataLoader "
            "fetches all the samples of a batch before collating them, so a batch of indices "
            f"[{first_index}, {other_index}] would hold {holds}, silently. Return new memory for every "
            "sample (np.copy or .clone() of a buffer that __getitem__ decodes into)"
        )
        return message, f"a = {name}[{first_index}]; a0 = copy.deepcopy(a); {name}[{other_index}]; a == a0"
    return None


def _sample_shape(leaf: Any) -> tuple[int, ...] | None:
    """The shape a sample's leaf has in a batch stacked from it: an array's, ``()`` for a number."""
    if is_array(leaf):
        dims = array_shape(leaf)
        return None if dims is None else tuple(int(d) for d in dims)
    if isinstance(leaf, (bool, int, float, complex, np.number, np.bool_)):
        return ()
    return None


def stacked_rows(batch: Any, samples: list[Any]) -> int | None:
    """How many samples ``batch`` holds when it is ``samples`` stacked as default_collate stacks them:
    every array leaf of the batch has, at the same path, a leaf of one shape in every sample, and the
    batch leaf's shape is that shape behind one leading dimension shared by all leaves. None when the
    batch is not such a stack (a collate_fn that pads, packs or renames: ``pad_sequence``'s time-major
    batches), so that only a stack can be counted against the indices it was made of."""
    if not samples:
        return None
    by_path = [dict(leaves(sample)) for sample in samples]
    rows: set[int] = set()
    for path, leaf in leaves(batch):
        if not is_array(leaf):
            continue
        dims = array_shape(leaf)
        if not dims:
            return None
        shapes = {_sample_shape(sample[path]) if path in sample else None for sample in by_path}
        if len(shapes) != 1:
            return None
        (shape,) = shapes
        if shape is None or tuple(int(d) for d in dims[1:]) != shape:
            return None
        rows.add(int(dims[0]))
    return rows.pop() if len(rows) == 1 else None
