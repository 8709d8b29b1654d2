"""Values in words, for messages: short reprs (:func:`describe`) and structures (:func:`structure`,
:func:`describe_structure`), both read off the one decomposition of :mod:`.tree`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from torchcontract.conformance._runtime.calls import ours
from torchcontract.conformance._values.arrays import describe_tensor, dtype_name, is_array, is_tensor, ndim
from torchcontract.conformance._values.tree import (
    BUILTIN_ATOMS,
    CYCLE,
    DEEP,
    LEAF,
    MAPPING,
    SEQUENCE,
    TreeSpec,
    flatten,
    is_namedtuple,
    is_pil_image,
    mapping_items,
    safe_repr,
)

__all__ = ["converted_skeleton", "describe", "describe_structure", "skeleton", "structure"]


def describe(value: object, limit: int = 120) -> str:
    """A short repr: arrays by dtype and shape, containers recursively, long things cut.

    It reads at most 6 items of each container and 3 levels deep, so a huge value costs little: it
    takes containers apart as :func:`~.tree.flatten` does, one level at a time.
    """
    text = _describe(value, depth=0)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any, depth: int) -> str:
    try:
        return _describe_unsafe(value, depth)
    except Exception:
        return safe_repr(value)[:60]


def _describe_unsafe(value: Any, depth: int) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray({value.dtype}, {tuple(value.shape)})"
    if is_tensor(value):
        return describe_tensor(value)
    if is_pil_image(value):
        return f"PIL.Image({value.mode}, {value.size})"
    if isinstance(value, BaseException):
        text = f"{type(value).__name__}: {value}"
        return text if len(text) <= 160 else text[:157] + "..."
    if isinstance(value, np.generic):
        return f"{type(value).__name__}({value.item()!r})"
    # Cycles end here too: depth bounds every descent.
    if depth >= 3 and isinstance(value, (tuple, list, Mapping)):
        return f"{type(value).__name__}(...)"
    if is_namedtuple(value):
        fields = ", ".join(
            f"{name}={_describe(item, depth + 1)}" for name, item in zip(value._fields, value, strict=False)
        )
        return f"{type(value).__name__}({fields})"
    if isinstance(value, (tuple, list)):
        items = [_describe(item, depth + 1) for item in value[:6]]
        if len(value) > 6:
            items.append(f"... ({len(value)} items)")
        inner = ", ".join(items)
        if isinstance(value, tuple):
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        return f"[{inner}]" if type(value) is list else f"{type(value).__name__}([{inner}])"
    if isinstance(value, Mapping):
        pairs = mapping_items(value)
        if pairs is not None:
            shown = [f"{key!r}: {_describe(item, depth + 1)}" for key, item in pairs[:6]]
            inner = "{" + ", ".join(shown) + ("" if len(pairs) <= 6 else ", ...") + "}"
            return inner if type(value) is dict else f"{type(value).__name__}({inner})"
    text = safe_repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------------------------------
# structure: what a batch keeps of its samples' layout

_CYCLE = ("cycle",)


@ours
def structure(value: Any) -> object:
    """A hashable summary of a sample's structure (SPEC.md, "Conventions"): container types, tuple
    arity, dict keys, and each leaf's type and dtype. Shapes and values are not part of it; nor is
    the number of items of a list (lists may be ragged: token lists), only the kinds of its items."""
    try:
        return _plain_structure(value, 0)
    except _NotPlain:
        return _structure(flatten(value)[0])


class _NotPlain(Exception):
    """A part of the value is not a plain container or leaf: the full walk decides."""


# The direct walk of plain values stops this deep (deeper values, and cycles, take the full walk).
_PLAIN_DEPTH = 32


def _plain_structure(value: Any, depth: int) -> object:
    """What :func:`_structure` gives, by a direct walk of plain dicts (with atom keys), lists, tuples
    and leaves that are no container at all (most samples), without building a spec."""
    kind = type(value)
    if kind in BUILTIN_ATOMS:
        return kind
    if depth > _PLAIN_DEPTH:
        raise _NotPlain
    if kind is dict:
        if not set(map(type, value)) <= BUILTIN_ATOMS:
            raise _NotPlain
        pairs = sorted(dict.items(value), key=lambda pair: repr(pair[0]))
        return (dict, tuple((key, _plain_structure(item, depth + 1)) for key, item in pairs))
    if kind is list:
        return (list, frozenset(_plain_structure(item, depth + 1) for item in value))
    if kind is tuple:
        return (tuple, len(value), tuple(_plain_structure(item, depth + 1) for item in value))
    if is_array(value) or is_pil_image(value):
        return _leaf_structure(value)
    raise _NotPlain


def _leaf_structure(value: Any) -> object:
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str)
    if is_tensor(value):
        return ("Tensor", dtype_name(value))
    if is_pil_image(value):
        return ("PIL.Image", value.mode)
    return type(value)


def _structure(spec: TreeSpec) -> object:
    if spec.kind == LEAF:
        return _leaf_structure(spec.value)
    if spec.kind in (CYCLE, DEEP):
        return _CYCLE
    children = [_structure(child) for child in spec.children]
    if spec.kind == SEQUENCE and issubclass(spec.type, tuple):
        return (spec.type, len(children), tuple(children))
    if spec.kind == SEQUENCE:
        return (list, frozenset(children))
    return (spec.type, tuple(zip(spec.keys, children, strict=True)))


@ours
def describe_structure(value: Any) -> str:
    """The structure of ``value`` (:func:`structure`) in words, for messages."""
    return _describe_structure(flatten(value)[0])


def _describe_leaf(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray[{value.dtype}]"
    if is_tensor(value):
        return f"Tensor[{dtype_name(value)}]"
    if is_pil_image(value):
        return f"PIL.Image[{value.mode}]"
    return type(value).__name__


def _describe_structure(spec: TreeSpec) -> str:
    if spec.kind == LEAF:
        return _describe_leaf(spec.value)
    if spec.kind in (CYCLE, DEEP):
        return "..."
    children = [_describe_structure(child) for child in spec.children]
    name = spec.type.__name__
    if spec.kind == SEQUENCE and issubclass(spec.type, tuple):
        return f"{name}({', '.join(children)})"
    if spec.kind == SEQUENCE:
        return f"list[{' | '.join(sorted(set(children)))}]"
    inner = ", ".join(f"{key!r}: {child}" for key, child in zip(spec.keys, children, strict=True))
    return f"{name}{{{inner}}}"


@ours
def skeleton(value: Any) -> object:
    """A sample's containers (tuple arity, namedtuple type, mapping keys) and, of its leaves, only
    whether each is an array and of how many dimensions: an unbatched sample keeps them, a stacked
    batch has one more (so ``[torch.stack(b)]`` and ``(pad_sequence(b), lengths)`` are not taken for
    lists of samples). Leaf types, dtypes and mapping types may change (a collate may turn arrays
    into tensors, and a mapping into a dict)."""
    return _skeleton(flatten(value)[0])


@ours
def converted_skeleton(value: Any) -> object:
    """The :func:`skeleton` of ``value`` as torch's ``default_convert`` leaves it (``collate_fn`` of
    a DataLoader without batching, or one that converts each sample of a batch): a plain tuple
    becomes a list, a NumPy array a tensor of as many dimensions and a NumPy number a 0-dimensional
    tensor; mappings, namedtuples, lists and other leaves keep their form
    (``utils/data/_utils/collate.py``, ``default_convert``)."""
    return _skeleton(flatten(value)[0], converted=True)


def _skeleton(spec: TreeSpec, converted: bool = False) -> object:
    if spec.kind == LEAF:
        if is_array(spec.value):
            return ("array", ndim(spec.value))
        if (
            converted
            and isinstance(spec.value, np.generic)
            and not isinstance(spec.value, (np.str_, np.bytes_))
        ):
            return ("array", 0)  # torch.as_tensor of a NumPy number
        return "leaf"
    if spec.kind in (CYCLE, DEEP):
        return _CYCLE
    children = [_skeleton(child, converted) for child in spec.children]
    if spec.kind == SEQUENCE and issubclass(spec.type, tuple):
        if is_namedtuple(spec.value):
            return (spec.type, tuple(children))
        return (list, frozenset(children)) if converted else (tuple, tuple(children))
    if spec.kind == SEQUENCE:
        return (list, frozenset(children))
    assert spec.kind == MAPPING
    return ("mapping", tuple(zip(spec.keys, children, strict=True)))
