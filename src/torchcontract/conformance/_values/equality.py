"""Equality (SPEC.md, "Conventions"), differences with their paths, and fingerprints: all read off
the tree specs of :func:`~._tree.flatten`, so that they agree by construction.

- Two values are equal when their specs are (the same containers of the same types, keys and
  lengths; a cycle back to the same level) and their leaves are, pairwise.
- A leaf is compared by ``==``; when ``==`` raises, or is identity-like (then the value is an object
  node of the spec), by its content: its attributes, from ``vars()`` and ``__slots__``. An object
  with neither cannot be compared and counts as equal.
- What cannot be compared (a meta tensor has no data; an object without attributes; a value nested
  deeper than :data:`~._tree.MAX_DEPTH`) counts as equal, since it cannot be shown to differ;
  :func:`compare` lists it in :attr:`Comparison.not_compared` so that a check can say so.
- A fingerprint is equal for equal values: it is the spec with each leaf replaced by a hashable
  stand-in (its bytes for an array, its attributes for an unhashable object).

Values made only of plain dicts, lists and tuples, Python's own atoms and arrays (most samples) are
compared and fingerprinted by a direct walk that gives the same answer without building specs, at C
speed where it can (a dict's key sets), so that a comparison costs time in proportion to the sample.
Every public function here is torchcontract's own work (:class:`~._calls.own_work`): its time is not
charged to the object's budget, only the object's code it calls (``==``, ``hash``, ``repr``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from torchcontract.conformance._runtime.calls import ours, run_object_code
from torchcontract.conformance._values.arrays import (
    NotComparable,
    components,
    dtype_name,
    is_array,
    is_meta,
    is_nested,
    is_quantized,
    is_tensor,
    layout,
    quantization,
    shape,
    storage_numpy,
    tensor_module,
)
from torchcontract.conformance._values.describe import describe
from torchcontract.conformance._values.tree import (
    ATOMS,
    BUILTIN_ATOMS,
    CYCLE,
    DEEP,
    LEAF,
    MAPPING,
    MAX_DEPTH,
    OBJECT,
    OBJECT_EQ,
    SEQUENCE,
    TreeSpec,
    child_keys,
    child_path,
    equals,
    flatten,
    identity_like,
    is_pil_image,
    safe_repr,
)

__all__ = ["Comparison", "close_difference", "compare", "difference", "fingerprint"]

# The direct walk of plain values stops this deep (deeper values, and cycles, take the full walk).
_PLAIN_DEPTH = 32
_INEXACT = (float, complex)


def _plain_keys(value: dict[Any, Any]) -> bool:
    """Whether every key of a dict is one of Python's own atoms (hashing, comparing and printing them
    runs none of the object's code)."""
    return set(map(type, value)) <= BUILTIN_ATOMS


class _NotPlain(Exception):
    """A part of the value is not plain: the full walk decides."""


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` found.

    ``difference``: None if the values are equal, else where and how they differ. ``not_compared``:
    the parts that could not be compared (each with its path and why), counted as equal.
    """

    difference: str | None
    not_compared: tuple[str, ...] = ()


# torch.testing.assert_close's default tolerances (torch/testing/_comparison.py), by dtype name.
_TOLERANCES = {
    "float16": (1e-3, 1e-5),
    "bfloat16": (1.6e-2, 1e-5),
    "float32": (1.3e-6, 1e-5),
    "float64": (1e-7, 1e-7),
    "complex64": (1.3e-6, 1e-5),
    "complex128": (1e-7, 1e-7),
}


def _tensors_agree(left: Any, right: Any, tolerance: tuple[float, float] | None) -> bool:
    """Whether torch itself finds two dense tensors of one dtype, shape and device equal (or, given
    ``tolerance=(rtol, atol)``, close): the fast path of a comparison. Only for torch's own tensor
    classes (a subclass's ops are the object's code) and never decisive against: NaN equals NaN and
    every other subtlety is the NumPy walk's to decide when this says no."""
    if not (is_tensor(left) and is_tensor(right)):
        return False
    torch = tensor_module()
    plain = (torch.Tensor, torch.nn.Parameter)
    if type(left) not in plain or type(right) not in plain:
        return False
    try:
        if left.layout != torch.strided or left.is_quantized or left.is_nested or left.is_meta:
            return False
        one, two = left.detach(), right.detach()
        if tolerance is not None:
            rtol, atol = tolerance
            return bool(torch.allclose(one, two, rtol=rtol, atol=atol, equal_nan=True))
        return bool(torch.equal(one, two))
    except Exception:  # an odd dtype (a float8 without these kernels): the walk decides
        return False


def _array_values_equal(left: np.ndarray[Any, Any], right: np.ndarray[Any, Any]) -> bool:
    """Equal values (NaN equal to NaN) of two non-object arrays of one shape."""
    try:
        if left.dtype.kind in "fc":
            return bool(np.array_equal(left, right, equal_nan=True))
        return bool(np.array_equal(left, right))
    except Exception:
        # Structured or exotic dtypes: equal bytes are equal values.
        try:
            return bool(left.dtype == right.dtype and left.tobytes() == right.tobytes())
        except Exception:
            return False


def _at(path: str) -> str:
    return f" at {path}" if path else ""


@dataclass
class _Comparer:
    close: bool = False
    loose_scalars: bool = False
    # (rtol, atol) for every floating-point dtype instead of the per-dtype defaults (with close=True).
    tolerance: tuple[float, float] | None = None
    not_compared: list[str] = field(default_factory=list)
    # (id(left), id(right)) of the leaf objects being compared by their attributes, to end cycles
    # that run through them (cycles within one spec are CYCLE nodes), with the depth of each and
    # whether its == said False (see _objects).
    active: dict[tuple[int, int], tuple[int, bool]] = field(default_factory=dict)
    # The smallest depth of such an object that a cycle led back to, during the current walk.
    cycle_to: float = math.inf

    def skip(self, path: str, why: str) -> None:
        if len(self.not_compared) < 20:
            self.not_compared.append(f"{path or 'the value'}: {why}")

    def diff(self, left: Any, right: Any, path: str, depth: int, *, root: bool = False) -> str | None:
        """The difference of two values at ``depth`` (``root``: compare objects by attributes)."""
        try:
            if depth > MAX_DEPTH:
                self.skip(path, f"nested deeper than {MAX_DEPTH} levels")
                return None
            if not root and self.plain_equal(left, right, 0):
                return None
            left_spec = flatten(left, objects=True, depth=depth, root=root)[0]
            right_spec = flatten(right, objects=True, depth=depth, root=root)[0]
            return self.specs(left_spec, right_spec, path, depth)
        except Exception as error:  # our own comparison must never raise: say what it could not do
            self.skip(path, f"comparing {describe(left)} with {describe(right)} raised {error!r}")
            return None

    def plain_equal(self, left: Any, right: Any, depth: int) -> bool:
        """True when ``left`` and ``right`` are shown equal by the direct walk: plain dicts (with
        atom keys), lists and tuples of Python's atoms and arrays, equal as :meth:`diff` would find
        them. False means not shown so (unequal, or not plain): the full walk then decides, and
        says where they differ."""
        kind = type(left)
        if kind is not type(right):
            return self.loose_scalars and self.plain_scalars(left, right) is True
        if kind in BUILTIN_ATOMS:
            return bool(left == right) or (kind in _INEXACT and left != left and right != right)
        if depth > _PLAIN_DEPTH:
            return False
        if kind is dict:
            if len(left) != len(right) or not _plain_keys(left) or left.keys() != right.keys():
                return False
            for key, value in dict.items(left):
                other = right[key]
                inner = type(value)
                if inner is type(other) and inner in BUILTIN_ATOMS:
                    if value == other or (inner in _INEXACT and value != value and other != other):
                        continue
                    return False
                if not self.plain_equal(value, other, depth + 1):
                    return False
            return True
        if isinstance(left, np.generic):
            return self.plain_scalars(left, right) is True
        if kind is list or kind is tuple:
            return len(left) == len(right) and all(
                self.plain_equal(one, two, depth + 1) for one, two in zip(left, right, strict=True)
            )
        if is_array(left):
            noted = len(self.not_compared)
            same = self._arrays(left, right, "", depth) is None
            if len(self.not_compared) > noted:  # the full walk notes it with its path
                del self.not_compared[noted:]
                return False
            return same
        return False

    def plain_scalars(self, left: Any, right: Any) -> bool | None:
        """Whether two numbers, one or both NumPy scalars, are equal as :meth:`leaves` finds them;
        None when they are not such numbers (or a NumPy scalar of another kind)."""
        numbers = (np.number, np.bool_, int, float, complex)
        if not (isinstance(left, numbers) and isinstance(right, numbers)):
            return None
        if type(left) is not type(right):  # one NumPy scalar, under loose_scalars only
            if isinstance(left, np.generic) == isinstance(right, np.generic):
                return None
            return bool(np.asarray(left) == np.asarray(right)) or (left != left and right != right)
        if isinstance(left, (np.floating, np.complexfloating)):
            return bool(left == right) or bool(left != left and right != right)
        return bool(left == right)

    def specs(self, left: TreeSpec, right: TreeSpec, path: str, depth: int) -> str | None:
        """The first difference of two flattened values, depth first."""
        try:
            return self._specs(left, right, path, depth)
        except Exception as error:
            self.skip(path, f"comparing {describe(left.value)} with {describe(right.value)} raised {error!r}")
            return None

    def _specs(self, left: TreeSpec, right: TreeSpec, path: str, depth: int) -> str | None:
        where = _at(path)
        if DEEP in (left.kind, right.kind):
            self.skip(path, f"nested deeper than {MAX_DEPTH} levels")
            return None
        if LEAF in (left.kind, right.kind):
            return self.leaves(left.value, right.value, path, depth)
        if left.type is not right.type:
            return f"type differs{where}: {describe(left.value)} vs {describe(right.value)}"
        if CYCLE in (left.kind, right.kind):
            if left.kind == right.kind and left.up == right.up:
                return None  # both refer back to the same enclosing level: equal there
            shown = [
                f"a reference {spec.up} levels up" if spec.kind == CYCLE else describe(spec.value)
                for spec in (left, right)
            ]
            return f"structure differs{where}: {shown[0]} vs {shown[1]}"
        if left.kind != right.kind:
            # One object of a type is taken apart by attributes and the other is not (it has none).
            return self.leaves(left.value, right.value, path, depth)
        if left.kind == SEQUENCE and len(left.children) != len(right.children):
            return f"length differs{where}: {len(left.children)} vs {len(right.children)}"
        if left.kind == MAPPING and set(left.keys) != set(right.keys):
            return f"keys differ{where}: {[repr(k) for k in left.keys]} vs {[repr(k) for k in right.keys]}"
        if left.kind == OBJECT and set(left.keys) != set(right.keys):
            return f"attribute names differ at {path or 'the value'}: {list(left.keys)} vs {list(right.keys)}"
        right_children = dict(zip(child_keys(right), right.children, strict=True))
        for key, child in zip(child_keys(left), left.children, strict=True):
            found = self.specs(child, right_children[key], child_path(left, path, key), depth + 1)
            if found:
                return found
        return None

    def leaves(self, left: Any, right: Any, path: str, depth: int) -> str | None:
        """Two values of which one at least is a leaf of its spec."""
        where = _at(path)
        if self.loose_scalars:
            scalars = (np.generic, int, float, complex)
            one_numpy_scalar = isinstance(left, np.generic) != isinstance(right, np.generic)
            if one_numpy_scalar and isinstance(left, scalars) and isinstance(right, scalars):
                same = bool(np.asarray(left) == np.asarray(right)) or (left != left and right != right)
                return None if same else f"values differ{where}: {describe(left)} vs {describe(right)}"
        if is_array(left) or is_array(right):
            return self._arrays(left, right, path, depth)
        if type(left) is not type(right):
            return f"type differs{where}: {describe(left)} vs {describe(right)}"
        if isinstance(left, ATOMS):
            return self._atoms(left, right, where)
        if is_pil_image(left):
            same = left.mode == right.mode and left.size == right.size and left.tobytes() == right.tobytes()
            return None if same else f"image differs{where}: {describe(left)} vs {describe(right)}"
        pair = (id(left), id(right))
        if pair in self.active:
            # A cycle: this pair is already being compared further up, and counts as equal here.
            at, unequal = self.active[pair]
            if unequal:
                self.cycle_to = min(self.cycle_to, at)
            return None
        self.active[pair] = (depth, False)
        try:
            return self._objects(left, right, path, depth)
        finally:
            del self.active[pair]

    def _atoms(self, left: Any, right: Any, where: str) -> str | None:
        if isinstance(left, float) and math.isnan(left) and math.isnan(right):
            return None
        if isinstance(left, (complex, np.generic)):
            if _array_values_equal(np.asarray(left), np.asarray(right)):
                return None
            return f"values differ{where}: {describe(left)} vs {describe(right)}"
        return None if equals(left, right) else _unequal(left, right, where)

    def _objects(self, left: Any, right: Any, path: str, depth: int) -> str | None:
        """Two leaves of one type: by ``==``, or by their content when ``==`` cannot say."""
        where = _at(path)
        equal = None if getattr(type(left), "__eq__", None) is OBJECT_EQ else equals(left, right)
        if equal is True:
            return None
        left_spec = flatten(left, objects=True, depth=depth, root=True)[0]
        right_spec = flatten(right, objects=True, depth=depth, root=True)[0]
        by_content = left_spec.kind == OBJECT and right_spec.kind == OBJECT
        if equal is None or identity_like(left):
            if not by_content:
                self.skip(
                    path, f"{type(left).__qualname__} has no == of its own and no attributes to compare"
                )
                return None
            # The path names the attribute (``.nodes``): no prefix, which nested objects would repeat.
            return self.specs(left_spec, right_spec, path, depth)
        # == says they differ: where, if their attributes show it (a repr may hide it).
        if by_content:
            self.active[(id(left), id(right))] = (depth, True)
            outer, self.cycle_to = self.cycle_to, math.inf
            found = self.specs(left_spec, right_spec, path, depth)
            led_back, self.cycle_to = self.cycle_to, min(outer, self.cycle_to)
            if found:
                return found
            if led_back < depth:
                # The walk led back to an object further up whose == also said False: the
                # difference may lie there, and that object reports it if its own walk does not.
                return None
        return _unequal(left, right, where)

    def _arrays(self, left: Any, right: Any, path: str, depth: int) -> str | None:
        where = _at(path)
        both = f"{describe(left)} vs {describe(right)}"
        if not (is_array(left) and is_array(right)) or isinstance(left, np.ndarray) != isinstance(
            right, np.ndarray
        ):
            return f"type differs{where}: {both}"
        if dtype_name(left) != dtype_name(right):
            return f"dtype differs{where}: {both}"
        if is_tensor(left):
            if layout(left) != layout(right):
                return f"layout differs{where}: {both}"
            if is_quantized(left) != is_quantized(right):
                return f"quantization differs{where}: {both}"
            try:
                devices_differ = bool(left.device != right.device)
            except Exception:
                devices_differ = False
            if devices_differ:
                return f"device differs{where}: {both}"
        if is_nested(left):
            left_parts, right_parts = components(left), components(right)
            if left_parts is None or right_parts is None:
                self.skip(path, f"{describe(left)} cannot be unbound into its components")
                return None
            if len(left_parts) != len(right_parts):
                return f"number of components differs{where}: {both}"
            for index, (one, two) in enumerate(zip(left_parts, right_parts, strict=True)):
                found = self.diff(one, two, f"{path}.unbind()[{index}]", depth + 1)
                if found:
                    return found
            return None
        if shape(left) != shape(right):
            return f"shape differs{where}: {both}"
        if is_meta(left) or is_meta(right):
            self.skip(path, f"the values of {describe(left)} (a meta tensor has no data)")
            return None
        if is_quantized(left) and quantization(left) != quantization(right):
            return f"quantization parameters differ{where}: {quantization(left)} vs {quantization(right)}"
        dtype = dtype_name(left)
        tolerance = (self.tolerance or _TOLERANCES[dtype]) if self.close and dtype in _TOLERANCES else None
        if _tensors_agree(left, right, tolerance):
            return None  # the common case, at torch's speed: the walk below only finds the difference
        left_values, right_values = storage_numpy(left), storage_numpy(right)
        if isinstance(left_values, NotComparable) or isinstance(right_values, NotComparable):
            self.skip(path, str(left_values if isinstance(left_values, NotComparable) else right_values))
            return None
        if left_values.dtype == object or right_values.dtype == object:
            return self._object_arrays(left_values, right_values, path, depth)
        if self.close and dtype in _TOLERANCES and not is_quantized(left):
            rtol, atol = _TOLERANCES[dtype] if self.tolerance is None else self.tolerance
            if not np.allclose(left_values, right_values, rtol=rtol, atol=atol, equal_nan=True):
                with np.errstate(invalid="ignore"):
                    gap = np.abs(left_values.astype(np.complex128) - right_values.astype(np.complex128))
                nan_on_one_side = int(np.count_nonzero(np.isnan(gap)))
                if nan_on_one_side == gap.size:
                    return (
                        f"values differ at {path or 'the output'} ({dtype}): every value is NaN on one "
                        "side and a number on the other"
                    )
                worst = float(np.nanmax(gap)) if gap.size else 0.0
                nan_note = f", and {nan_on_one_side} NaN on one side only" if nan_on_one_side else ""
                return (
                    f"values differ at {path or 'the output'} beyond rtol={rtol}, atol={atol} "
                    f"({dtype}): largest absolute difference {worst:.3g}{nan_note}"
                )
            return None
        if not _array_values_equal(left_values, right_values):
            return f"values differ{where}: {describe(left)}{_first_mismatch(left_values, right_values)}"
        return None

    def _object_arrays(
        self, left: np.ndarray[Any, Any], right: np.ndarray[Any, Any], path: str, depth: int
    ) -> str | None:
        """Object arrays (of arrays, dicts, ...): element by element, with the rules for values."""
        if left.shape != right.shape:
            return f"shape differs at {path or 'the value'}: {describe(left)} vs {describe(right)}"
        for index in np.ndindex(left.shape):
            shown = ", ".join(map(str, index))
            found = self.diff(left[index], right[index], f"{path}[{shown}]", depth + 1)
            if found:
                return found
        return None


def _unequal(left: Any, right: Any, where: str) -> str:
    """The message for two leaves whose == says False (never two identical reprs alone)."""
    shown_left, shown_right = describe(left), describe(right)
    if shown_left == shown_right:
        return (
            f"values differ{where}: {shown_left} == {shown_right} is False, though both print the "
            "same (the difference is in something their repr does not show)"
        )
    return f"values differ{where}: {shown_left} vs {shown_right}"


def _first_mismatch(left: np.ndarray[Any, Any], right: np.ndarray[Any, Any]) -> str:
    """`` (first at [i, j]: a vs b)`` for two arrays of one shape, or "" if that cannot be found."""
    try:
        if left.ndim == 0:
            return f" ({left.item()!r} vs {right.item()!r})"
        unequal = left != right
        if left.dtype.kind in "fc":
            unequal &= ~(np.isnan(left) & np.isnan(right))
        index = tuple(int(i) for i in np.argwhere(unequal)[0])
        shown = ", ".join(map(str, index))
        return f" (first at [{shown}]: {left[index].item()!r} vs {right[index].item()!r})"
    except Exception:
        return ""


@ours
def compare(left: Any, right: Any, *, close: bool = False, loose_scalars: bool = False) -> Comparison:
    """Compare two values (SPEC.md, "Conventions"): the difference, and what could not be compared.

    ``close``: floating-point leaves only need to agree within ``torch.testing.assert_close``'s
    default tolerances for their dtype. ``loose_scalars``: a NumPy scalar equals a Python number of
    the same value. Never raises.
    """
    comparer = _Comparer(close=close, loose_scalars=loose_scalars)
    found = comparer.diff(left, right, "", 0)
    return Comparison(found, tuple(comparer.not_compared))


@ours
def difference(left: Any, right: Any, path: str = "", *, loose_scalars: bool = False) -> str | None:
    """None if ``left`` equals ``right`` (SPEC.md, "Conventions"), else where and how they differ.

    ``loose_scalars``: a NumPy scalar equals a Python number of the same value. What cannot be
    compared counts as equal (:func:`compare` lists it).
    """
    return _Comparer(loose_scalars=loose_scalars).diff(left, right, path, 0)


@ours
def close_difference(
    left: Any, right: Any, path: str = "", tolerance: tuple[float, float] | None = None
) -> str | None:
    """Like :func:`difference`, but floating-point leaves only need to agree within the default
    tolerances of ``torch.testing.assert_close`` for their dtype (or ``tolerance=(rtol, atol)``)."""
    return _Comparer(close=True, tolerance=tolerance).diff(left, right, path, 0)


# ----------------------------------------------------------------------------------------------------
# fingerprints


@ours
def fingerprint(value: Any) -> object:
    """A hashable stand-in for a sample, equal for equal samples (:func:`difference`): to count samples
    across processes. Its ``repr`` is the same in every process for the same value."""
    fingerprinter = _Fingerprinter()
    try:
        return fingerprinter.plain(value, 0)
    except _NotPlain:
        pass
    try:
        return fingerprinter.value(value, 0)
    except Exception:
        return ("repr", safe_repr(value))


def _type_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


@dataclass
class _Fingerprinter:
    # ids of the leaf objects being fingerprinted by their attributes, to end cycles through them.
    active: set[int] = field(default_factory=set)

    def plain(self, value: Any, depth: int) -> object:
        """The fingerprint of a plain value (dicts with atom keys, lists, tuples, Python's atoms,
        arrays), by a direct walk that gives what :meth:`value` gives; :class:`_NotPlain` otherwise."""
        kind = type(value)
        if kind in BUILTIN_ATOMS:
            return self.leaf(value, depth)
        if depth > _PLAIN_DEPTH:
            raise _NotPlain
        if kind is dict:
            if not _plain_keys(value):
                raise _NotPlain
            pairs = sorted(dict.items(value), key=lambda pair: repr(pair[0]))
            return (
                "mapping",
                "builtins.dict",
                tuple((repr(key), self.plain(item, depth + 1)) for key, item in pairs),
            )
        if kind is list or kind is tuple:
            return ("sequence", _type_name(kind), tuple(self.plain(item, depth + 1) for item in value))
        if is_array(value):
            return self.array(value, depth)
        raise _NotPlain

    def value(self, value: Any, depth: int, *, root: bool = False) -> object:
        if depth > MAX_DEPTH:
            return ("deep",)
        return self.spec(flatten(value, objects=True, depth=depth, root=root)[0], depth)

    def spec(self, spec: TreeSpec, depth: int) -> object:
        if spec.kind == LEAF:
            return self.leaf(spec.value, depth)
        if spec.kind == CYCLE:
            return ("cycle", spec.up)
        if spec.kind == DEEP:
            return ("deep",)
        keys = child_keys(spec)
        children = tuple(self.spec(child, depth + 1) for child in spec.children)
        name = _type_name(spec.type)
        if spec.kind == SEQUENCE:
            return ("sequence", name, children)
        if spec.kind == MAPPING:
            return ("mapping", name, tuple(zip(map(repr, keys), children, strict=True)))
        return ("object", name, tuple(zip(keys, children, strict=True)))

    def leaf(self, value: Any, depth: int) -> object:
        if is_array(value):
            return self.array(value, depth)
        if isinstance(value, (float, complex, np.inexact)) and value != value:
            # NaN != NaN, but two NaN samples are the same sample.
            return ("nan",) if type(value) is float else ("nan", type(value).__name__, safe_repr(value))
        if isinstance(value, ATOMS):
            # With its type: 1, 1.0 and True are equal to ==, not to difference(). Plus zero: -0.0
            # and 0.0 are equal and must print alike (fingerprints are compared by their reprs).
            kind = _type_name(type(value))
            if isinstance(value, (float, complex, np.inexact)):
                value = value + 0
            if type(value) in BUILTIN_ATOMS:
                return ("atom", kind, value)
            hashed = _Hashed.of(value)
            return ("atom", kind, hashed) if hashed is not None else ("repr", kind, safe_repr(value))
        if is_pil_image(value):
            return ("image", value.mode, value.size, value.tobytes())
        # An object left a leaf: its == is its own (or it has no attributes to compare).
        name = _type_name(type(value))
        identity = identity_like(value)
        if not identity:
            hashed = _Hashed.of(value)
            if hashed is not None:
                return hashed
        if id(value) in self.active:
            return ("cycle",)
        self.active.add(id(value))
        try:
            spec = flatten(value, objects=True, depth=depth, root=True)[0]
            if spec.kind == OBJECT:
                return self.spec(spec, depth)
        finally:
            self.active.discard(id(value))
        # Without attributes: alike if == cannot tell them apart (difference counts them equal).
        return ("object", name) if identity else ("repr", safe_repr(value))

    def array(self, value: Any, depth: int) -> object:
        kind = "tensor" if is_tensor(value) else "ndarray"
        dtype = dtype_name(value)
        if is_nested(value):
            parts = components(value) or []
            return (kind, "nested", dtype, tuple(self.value(part, depth + 1) for part in parts))
        dims = shape(value)
        if is_meta(value):
            return (kind, "meta", dtype, dims)  # no data: all meta tensors of one shape are alike
        extra = quantization(value) if is_quantized(value) else ()
        array = storage_numpy(value)
        if isinstance(array, NotComparable):
            return (kind, dtype, dims, extra, "unreadable")
        if array.dtype == object:
            items = tuple(self.value(item, depth + 1) for item in array.flat)
            return (kind, dtype, dims, extra, items)
        if array.dtype.kind in "fc":
            # Equal values, equal bytes: one NaN, and 0.0 for -0.0.
            array = np.where(np.isnan(array), np.array(np.nan, dtype=array.dtype), array) + array.dtype.type(
                0
            )
        return (kind, dtype, dims, extra, np.ascontiguousarray(array).tobytes())


class _Hashed:
    """A leaf of the object's own type in a fingerprint, judged by its own ``hash`` and ``==``: its
    hash is computed once, and its ``==`` and ``repr`` run as bounded calls of the object's code
    (_calls.run_object_code), also when a Counter or a set of fingerprints compares them."""

    __slots__ = ("_hash", "value")

    def __init__(self, value: Any, hashed: int) -> None:
        self.value = value
        self._hash = hashed

    @classmethod
    def of(cls, value: Any) -> _Hashed | None:
        """The stand-in of ``value``, or None when it cannot be hashed."""
        try:
            hashed = run_object_code(f"hash(<{type(value).__qualname__}>)", hash, value)
        except Exception:
            return None
        return cls(value, hashed)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Hashed):
            return NotImplemented
        return self.value is other.value or equals(self.value, other.value) is True

    def __repr__(self) -> str:
        return safe_repr(self.value)
