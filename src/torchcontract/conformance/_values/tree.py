"""One traversal of values: how a sample, batch or output is made of containers and leaves.

Every function of the values package that looks inside a value (equality, differences, fingerprints,
structure, leaves, sample counts) walks the :class:`TreeSpec` that :func:`flatten` gives, as
``torch.utils._pytree`` does, so they agree on what a container is by construction. The grammar,
decided here once (SPEC.md, "Conventions"):

- **Leaves**: ``None``, numbers, strings, bytes, NumPy scalars, ndarrays, tensors, PIL images, and
  every other object (but see objects below).
- **Sequences**: a tuple (a namedtuple is its own type) or list, its items in order.
- **Mappings**: traversed through ``keys()`` and ``value[key]`` (not ``iter()``, which a batch-of-
  tensors mapping may use for its batch dimension), keys in one canonical order (sorted by repr), so
  key order does not count, as for ``dict.__eq__``. A mapping whose keys cannot be read, looked up,
  hashed or repr'd is an opaque leaf.
- **The mapping's type counts**: ``{'x': 1}`` and ``OrderedDict(x=1)`` have different specs, so
  they are different values for every function (equality, fingerprints, structure). That is what
  ``torch.utils._pytree`` does (``dict`` and ``OrderedDict`` are distinct node types) and what
  ``default_collate`` keeps (it rebuilds each mapping batch in its sample's type): a sample whose
  mapping type changes between two reads is not the same sample to code that dispatches on type.
- **Objects** (with ``objects=True``): an object whose ``==`` compares identities (it is object's, or
  the value is not equal even to a shallow copy of itself) and that has attributes (``vars()``,
  ``__slots__``) is an object node whose children are its attributes, by name in sorted order. Other
  objects stay leaves, for their own ``==`` and ``hash`` to judge.
- **Cycles**: a container or object met again below itself is a :data:`CYCLE` node that says how
  many levels up it refers; nothing below it is visited.
- **Depth**: a container or object nested deeper than :data:`MAX_DEPTH` levels is a :data:`DEEP`
  node, not traversed.

Nothing here raises on a legal value: what cannot be traversed is a leaf.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np

from torchcontract.conformance._runtime.calls import run_object_code
from torchcontract.conformance._values.arrays import is_array

__all__ = [
    "ATOMS",
    "BUILTIN_ATOMS",
    "CYCLE",
    "DEEP",
    "LEAF",
    "MAPPING",
    "MAX_DEPTH",
    "OBJECT",
    "OBJECT_EQ",
    "SEQUENCE",
    "TreeSpec",
    "attributes",
    "child_keys",
    "child_path",
    "equals",
    "flatten",
    "identity_like",
    "is_namedtuple",
    "is_pil_image",
    "leaf_paths",
    "mapping_items",
    "safe_repr",
    "unflatten",
]

# How deep the traversals go (containers, attributes): far below Python's recursion limit.
MAX_DEPTH = 64

# The kinds of node of a TreeSpec.
LEAF, SEQUENCE, MAPPING, OBJECT, CYCLE, DEEP = "leaf", "sequence", "mapping", "object", "cycle", "deep"

# Leaves compared by == without further thought (their == is by value and cannot recurse).
ATOMS = (type(None), bool, int, float, complex, str, bytes, np.generic)
# Python's own atom types, exactly (not subclasses): their ==, hash and repr run none of the
# object's code, so torchcontract calls them directly, at C speed.
BUILTIN_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})


def is_namedtuple(value: object) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def is_pil_image(value: object) -> TypeGuard[Any]:
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(value, pil.Image)


def safe_repr(value: object) -> str:
    """``repr(value)``, a bounded call of the object's code (see _calls.run_object_code); a
    placeholder naming the type when it raises."""
    if type(value) in BUILTIN_ATOMS:
        return repr(value)
    try:
        return run_object_code(f"repr(<{type(value).__qualname__}>)", repr, value)
    except Exception:  # a broken (or infinitely recursive) __repr__ must not break the report
        return f"<{type(value).__qualname__} object>"


def _read_items(value: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    keys = list(value.keys())
    for key in keys:
        hash(key)
    return [(key, value[key]) for key in keys]


def _key_repr(pair: tuple[Any, Any]) -> str:
    return repr(pair[0])


def mapping_items(value: Mapping[Any, Any]) -> list[tuple[Any, Any]] | None:
    """A mapping's (key, value[key]) pairs through ``keys()``, sorted by the keys' reprs; None when the
    keys cannot be read, looked up, hashed or repr'd (the mapping is then an opaque leaf). The
    mapping's and the keys' own code runs as bounded calls (a plain dict's items are read directly)."""
    try:
        if type(value) is dict:
            pairs = list(dict.items(value))
        else:
            kind = type(value).__qualname__
            pairs = run_object_code(f"reading the keys and items of <{kind}>", _read_items, value)
        if all(type(key) in BUILTIN_ATOMS for key, _ in pairs):
            return sorted(pairs, key=_key_repr)
        kind = type(value).__qualname__
        return run_object_code(f"repr() of the keys of <{kind}>", lambda: sorted(pairs, key=_key_repr))
    except Exception:
        return None


# ----------------------------------------------------------------------------------------------------
# objects: == and attributes

# The __eq__ of classes that define none: identity.
OBJECT_EQ: Any = object.__eq__


def _truth(outcome: object) -> bool | None:
    """What an ``==`` result says: True, False, or None when it cannot be read as a truth value."""
    if isinstance(outcome, bool):
        return outcome
    try:
        reduce = getattr(outcome, "all", None)  # an elementwise result (NumPy or tensor)
        return bool(reduce()) if callable(reduce) else bool(outcome)
    except Exception:
        return None


def _equal_truth(left: Any, right: Any) -> bool | None:
    return _truth(left == right)


def equals(left: Any, right: Any) -> bool | None:
    """``left == right`` as a bool; None when it raises or gives no truth value."""
    if type(left) in BUILTIN_ATOMS and type(right) in BUILTIN_ATOMS:
        return bool(left == right)
    try:
        # The object's own code: a hang in it names this call (see _calls.py).
        what = f"{type(left).__qualname__}.__eq__ (comparing two samples)"
        return run_object_code(what, _equal_truth, left, right)
    except Exception:  # incl. RecursionError from an __eq__ that follows a cycle
        return None


def identity_like(value: Any) -> bool:
    """Whether ``type(value).__eq__`` compares identities: it is object's, or the value is not equal
    even to a shallow copy of itself (``return self is other``, common for graph containers)."""
    if isinstance(value, ATOMS):
        return False
    if getattr(type(value), "__eq__", None) is OBJECT_EQ:
        return True
    try:
        twin = run_object_code(f"copy.copy(<{type(value).__qualname__}>)", copy.copy, value)
    except Exception:
        return False  # cannot tell: trust the object's own ==
    if twin is value:
        return False  # a copy that is the value itself (immutable): == is then reflexive, not identity
    return equals(value, twin) is False


def _slot_names(kind: type) -> list[str]:
    """The ``__slots__`` of ``kind`` and its bases, as attribute names (private ones mangled)."""
    names: list[str] = []
    for klass in kind.__mro__:
        slots = vars(klass).get("__slots__", ())
        for name in [slots] if isinstance(slots, str) else list(slots):
            if not isinstance(name, str) or name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{name}"
            if name not in names:
                names.append(name)
    return names


def attributes(value: Any) -> dict[str, Any] | None:
    """An object's attributes from ``vars()`` and ``__slots__`` (unset slots left out), by name in
    sorted order; None when it has neither (C types), or they cannot be read."""
    try:
        found: dict[str, Any] = {}
        has_any = False
        own = getattr(value, "__dict__", None)
        if isinstance(own, dict):
            found.update(own)
            has_any = True
        missing = object()
        for name in _slot_names(type(value)):
            has_any = True
            item = getattr(value, name, missing)
            if item is not missing:
                found[name] = item
        if not has_any or not all(isinstance(name, str) for name in found):
            return None
        return {name: found[name] for name in sorted(found)}
    except Exception:
        return None


# ----------------------------------------------------------------------------------------------------
# the tree spec


@dataclass(frozen=True)
class TreeSpec:
    """One node of a flattened value: what kind of node, of which type, under which keys.

    ``keys``: a mapping's keys or an object's attribute names (in the order of ``children``), a
    sequence's indices. ``up``: for a :data:`CYCLE` node, how many levels up the value it refers to
    is. ``value``: the value at this node (not part of the spec's equality or hash), for messages.
    Two values have equal specs exactly when they have the same containers, keys and lengths, with
    leaves in the same places.
    """

    kind: str
    type: type
    keys: tuple[Any, ...] = ()
    children: tuple[TreeSpec, ...] = ()
    up: int = 0
    value: Any = field(default=None, compare=False, repr=False)

    @property
    def num_leaves(self) -> int:
        return 1 if self.kind == LEAF else sum(child.num_leaves for child in self.children)


def _branch(value: Any, objects: bool, root: bool) -> tuple[str, tuple[Any, ...], list[Any]] | None:
    """How ``value`` decomposes one level: (kind, keys, items), or None for a leaf. ``root``: an object
    is taken apart by its attributes whatever its ``==`` (to compare two objects by content)."""
    if isinstance(value, ATOMS) or is_array(value) or is_pil_image(value):
        return None
    if isinstance(value, (tuple, list)):
        return SEQUENCE, tuple(range(len(value))), list(value)
    pairs = mapping_items(value) if isinstance(value, Mapping) else None
    if pairs is not None:
        return MAPPING, tuple(key for key, _ in pairs), [item for _, item in pairs]
    if isinstance(value, Mapping) and not root:
        return None  # an opaque mapping
    if root or (objects and identity_like(value)):
        found = attributes(value)
        if found is not None:
            return OBJECT, tuple(found), list(found.values())
    return None


def flatten(
    value: Any, *, objects: bool = False, depth: int = 0, root: bool = False
) -> tuple[TreeSpec, list[Any]]:
    """``value`` as a tree spec and its leaves, in order (the leaves of :data:`LEAF` nodes).

    ``objects``: take objects whose ``==`` is identity apart by their attributes (for equality and
    fingerprints); else every object is a leaf. ``depth``: the level ``value`` itself is at (for
    :data:`MAX_DEPTH`). ``root``: take ``value`` itself apart by its attributes if it is an object.
    """
    leaves: list[Any] = []
    return _flatten(value, objects, root, depth, {}, leaves), leaves


def _flatten(
    value: Any, objects: bool, root: bool, depth: int, active: dict[int, int], leaves: list[Any]
) -> TreeSpec:
    kind = type(value)
    if id(value) in active:
        return TreeSpec(CYCLE, kind, up=depth - active[id(value)], value=value)
    branch = _branch(value, objects, root)
    if branch is None:
        leaves.append(value)
        return TreeSpec(LEAF, kind, value=value)
    if depth > MAX_DEPTH:
        return TreeSpec(DEEP, kind, value=value)
    node, keys, items = branch
    active[id(value)] = depth
    try:
        children = tuple(_flatten(item, objects, False, depth + 1, active, leaves) for item in items)
    finally:
        del active[id(value)]
    return TreeSpec(node, kind, keys if node != SEQUENCE else (), children, value=value)


def child_path(spec: TreeSpec, path: str, key: Any) -> str:
    """The path of one child: ``[0]`` of a sequence, ``['image']`` of a mapping, ``.name`` of an object."""
    if spec.kind == OBJECT:
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def child_keys(spec: TreeSpec) -> tuple[Any, ...]:
    return tuple(range(len(spec.children))) if spec.kind == SEQUENCE else spec.keys


def leaf_paths(spec: TreeSpec, path: str = "") -> Iterator[tuple[str, TreeSpec]]:
    """The :data:`LEAF` nodes of a spec with their paths (``[0]['image']``), in order; a cycle or a
    value too deep has none."""
    if spec.kind == LEAF:
        yield path, spec
        return
    for key, child in zip(child_keys(spec), spec.children, strict=True):
        yield from leaf_paths(child, child_path(spec, path, key))


def unflatten(spec: TreeSpec, leaves: list[Any]) -> Any:
    """The value of ``spec`` with ``leaves`` in its leaves' places (the inverse of :func:`flatten`).

    Sequences and mappings are rebuilt in their own types (a mapping type from its (key, value)
    pairs), objects as shallow copies with their attributes replaced; a :data:`DEEP` node is its
    value as it was. Raises ValueError for a cycle or a wrong number of leaves, TypeError for a type
    that cannot be rebuilt so.
    """
    if spec.num_leaves != len(leaves):
        raise ValueError(f"the spec has {spec.num_leaves} leaves, not {len(leaves)}")
    return _unflatten(spec, iter(leaves))


def _unflatten(spec: TreeSpec, leaves: Iterator[Any]) -> Any:
    if spec.kind == LEAF:
        return next(leaves)
    if spec.kind == DEEP:
        return spec.value
    if spec.kind == CYCLE:
        raise ValueError("a value with a cycle cannot be rebuilt from its leaves")
    items = [_unflatten(child, leaves) for child in spec.children]
    if spec.kind == SEQUENCE:
        if issubclass(spec.type, tuple) and hasattr(spec.type, "_fields"):
            return spec.type(*items)
        return spec.type(items)
    if spec.kind == MAPPING:
        return spec.type(zip(spec.keys, items, strict=True))
    rebuilt = copy.copy(spec.value)
    for name, item in zip(spec.keys, items, strict=True):
        object.__setattr__(rebuilt, name, item)
    return rebuilt
