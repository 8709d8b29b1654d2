"""What the checks need to know about samples, batches and outputs: equality, structure, counts, reprs.

torch is never imported here: a value can only be a tensor if torch is already in ``sys.modules``.

Every function here takes any value a dataset, loader or module may legally produce and never raises
on it: odd mappings, objects with identity ``==``, cycles, and unusual tensors (nested, quantized,
sparse, meta) are all handled. The rules, shared by every function:

- A mapping is traversed through ``keys()`` and ``value[key]`` (not ``iter()``, which a batch-of-
  tensors mapping may use for its batch dimension). A mapping whose keys cannot be read, looked up,
  hashed or repr'd is an opaque leaf.
- A leaf is compared by ``==``; when ``==`` raises, or is identity-like (the value is not equal even
  to a shallow copy of itself), by its content: its attributes, from ``vars()`` and ``__slots__``.
  An object with neither cannot be compared and counts as equal.
- A container or object met again while it is being visited (a cycle) counts as equal there;
  traversal stops at :data:`MAX_DEPTH` levels.
- What cannot be compared (a meta tensor has no data; an object without attributes; a value nested
  deeper than :data:`MAX_DEPTH`) counts as equal, since it cannot be shown to differ; :func:`compare`
  lists it in :attr:`Comparison.not_compared` so that a check can say so.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np

from torchcontract.conformance._calls import object_call
from torchcontract.reference_impl import is_iterable_style

__all__ = [
    "MAX_DEPTH",
    "NO_SAMPLE",
    "Comparison",
    "NotComparable",
    "as_numpy",
    "close_difference",
    "compare",
    "describe",
    "describe_structure",
    "difference",
    "fingerprint",
    "is_array",
    "is_iterable_style",
    "is_tensor",
    "leaves",
    "mutable_leaves",
    "restore_leaves",
    "sample_count",
    "snapshot_leaves",
    "structure",
    "tensor_module",
]

# How deep the traversals go (containers, attributes): far below Python's recursion limit.
MAX_DEPTH = 64


def tensor_module() -> Any:
    """``torch`` if it has been imported (by the object under test or its caller), else None."""
    return sys.modules.get("torch")


def is_tensor(value: object) -> TypeGuard[Any]:
    torch = tensor_module()
    return torch is not None and isinstance(value, torch.Tensor)


def is_array(value: object) -> TypeGuard[Any]:
    """An ndarray or a tensor: a leaf with a dtype and a shape."""
    return isinstance(value, np.ndarray) or is_tensor(value)


def _is_namedtuple(value: object) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def _is_pil_image(value: object) -> TypeGuard[Any]:
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(value, pil.Image)


# Leaves compared by == without further thought (their == is by value and cannot recurse).
_ATOMS = (type(None), bool, int, float, complex, str, bytes, np.generic)


def _items(value: Mapping[Any, Any]) -> list[tuple[Any, Any]] | None:
    """A mapping's (key, value[key]) pairs through ``keys()``, sorted by the keys' reprs; None when the
    keys cannot be read, looked up, hashed or repr'd (the mapping is then an opaque leaf)."""
    try:
        keys = list(value.keys())
        for key in keys:
            hash(key)
        pairs = [(key, value[key]) for key in keys]
        return sorted(pairs, key=lambda pair: repr(pair[0]))
    except Exception:
        return None


def _safe_repr(value: object) -> str:
    try:
        with object_call(f"repr(<{type(value).__qualname__}>)"):
            return repr(value)
    except Exception:  # a broken (or infinitely recursive) __repr__ must not break the report
        return f"<{type(value).__qualname__} object>"


# ----------------------------------------------------------------------------------------------------
# tensors: what kind, what shape, what values


def _dtype_name(value: Any) -> str:
    try:
        return str(value.dtype).removeprefix("torch.")
    except Exception:
        return "?"


def _is_nested(value: Any) -> bool:
    return is_tensor(value) and bool(getattr(value, "is_nested", False))


def _is_quantized(value: Any) -> bool:
    return is_tensor(value) and bool(getattr(value, "is_quantized", False))


def _is_meta(value: Any) -> bool:
    return is_tensor(value) and bool(getattr(value, "is_meta", False))


def _layout(value: Any) -> str:
    """A tensor's layout (``strided``, ``sparse_coo``, ``sparse_csr``, ``jagged``, ...)."""
    if _is_nested(value):
        return "nested"
    try:
        return str(value.layout).removeprefix("torch.")
    except Exception:
        return "?"


def _components(value: Any) -> list[Any] | None:
    """The tensors a nested tensor is made of (None if it cannot be unbound)."""
    try:
        return list(value.unbind())
    except Exception:
        return None


def _shape(value: Any) -> tuple[Any, ...] | None:
    """An array's shape; None for a nested tensor, whose components have their own."""
    if _is_nested(value):
        return None
    try:
        return tuple(value.shape)
    except Exception:
        return None


def _ndim(value: Any) -> int:
    try:
        return int(value.dim()) if is_tensor(value) else int(value.ndim)
    except Exception:
        return 0


@dataclass(frozen=True)
class NotComparable:
    """A value whose contents cannot be compared or converted (a meta tensor has no data).

    ``what`` says which value and why, in words fit for a message.
    """

    what: str

    def __str__(self) -> str:
        return self.what


def _dense_numpy(tensor: Any) -> np.ndarray[Any, Any] | NotComparable:
    """The values of a (non-nested) tensor as an ndarray, or why they cannot be had."""
    torch = tensor_module()
    if _is_meta(tensor):
        return NotComparable(f"{describe(tensor)} is a meta tensor (it has no data)")
    try:
        result = tensor.detach()
        if _is_quantized(result):
            result = result.dequantize()
        if result.layout != torch.strided:
            result = result.to_dense()
        result = result.cpu().resolve_conj().resolve_neg()
        name = str(result.dtype)
        if name in ("torch.bfloat16", "torch.float16") or "float8" in name:
            result = result.float()
        elif name in ("torch.complex32", "torch.chalf"):
            result = result.to(torch.complex64)
        return np.asarray(result.numpy())
    except Exception as error:
        return NotComparable(
            f"the values of {describe(tensor)} cannot be read ({type(error).__name__}: {error})"
        )


def as_numpy(value: Any) -> np.ndarray[Any, Any] | NotComparable:
    """An ndarray with the values of an array or tensor (tensors are copied to the CPU).

    Tensors that require grad are detached; sparse ones densified; quantized ones dequantized; a
    nested tensor gives a 1-D object array of its components' arrays. A tensor whose values cannot
    be read (a meta tensor) gives a :class:`NotComparable` saying so.
    """
    if isinstance(value, np.ndarray):
        return value
    if _is_nested(value):
        parts = _components(value)
        if parts is None:
            return NotComparable(f"{describe(value)} cannot be unbound into its components")
        result = np.empty(len(parts), dtype=object)
        for index, part in enumerate(parts):
            converted = as_numpy(part)
            if isinstance(converted, NotComparable):
                return converted
            result[index] = converted
        return result
    return _dense_numpy(value)


def _quantization(value: Any) -> tuple[Any, ...]:
    """A quantized tensor's scheme and parameters, as plain Python values."""
    try:
        scheme = str(value.qscheme()).removeprefix("torch.")
        if "per_channel" in scheme:
            return (
                scheme,
                int(value.q_per_channel_axis()),
                tuple(value.q_per_channel_scales().tolist()),
                tuple(value.q_per_channel_zero_points().tolist()),
            )
        return (scheme, float(value.q_scale()), int(value.q_zero_point()))
    except Exception:
        return ("?",)


def _storage_numpy(value: Any) -> np.ndarray[Any, Any] | NotComparable:
    """What two equal arrays hold identically: the integers of a quantized tensor, else its values."""
    if _is_quantized(value):
        try:
            return _dense_numpy(value.int_repr())
        except Exception as error:
            return NotComparable(f"{describe(value)} has no integer representation ({error})")
    return as_numpy(value)


# ----------------------------------------------------------------------------------------------------
# describe: short, readable reprs for messages


def describe(value: object, limit: int = 120) -> str:
    """A short repr: arrays by dtype and shape, containers recursively, long things cut."""
    text = _describe(value, depth=0)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_tensor(value: Any) -> str:
    extras = []
    try:
        if value.device.type != "cpu":
            extras.append(str(value.device))
    except Exception:
        pass
    layout = _layout(value)
    if layout not in ("strided", "nested"):
        extras.append(layout)
    if _is_quantized(value):
        extras.append("quantized")
    if _is_nested(value):
        parts = _components(value)
        shapes = "?" if parts is None else ", ".join(str(_shape(part)) for part in parts[:4])
        more = "" if parts is None or len(parts) <= 4 else f", ... ({len(parts)} components)"
        shape_text = f"nested [{shapes}{more}]"
    else:
        shape_text = str(_shape(value))
    return f"Tensor({_dtype_name(value)}, {shape_text}{''.join(', ' + extra for extra in extras)})"


def _describe(value: Any, depth: int) -> str:
    try:
        return _describe_unsafe(value, depth)
    except Exception:
        return _safe_repr(value)[:60]


def _describe_unsafe(value: Any, depth: int) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray({value.dtype}, {tuple(value.shape)})"
    if is_tensor(value):
        return _describe_tensor(value)
    if _is_pil_image(value):
        return f"PIL.Image({value.mode}, {value.size})"
    if isinstance(value, BaseException):
        text = f"{type(value).__name__}: {value}"
        return text if len(text) <= 160 else text[:157] + "..."
    if isinstance(value, np.generic):
        return f"{type(value).__name__}({value.item()!r})"
    # Cycles end here too: depth bounds every descent.
    if depth >= 3 and isinstance(value, (tuple, list, Mapping)):
        return f"{type(value).__name__}(...)"
    if _is_namedtuple(value):
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
        pairs = _items(value)
        if pairs is not None:
            shown = [f"{key!r}: {_describe(item, depth + 1)}" for key, item in pairs[:6]]
            inner = "{" + ", ".join(shown) + ("" if len(pairs) <= 6 else ", ...") + "}"
            return inner if type(value) is dict else f"{type(value).__name__}({inner})"
    text = _safe_repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------------------------------
# equality


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


# The __eq__ of classes that define none: identity.
_OBJECT_EQ: Any = object.__eq__


def _truth(outcome: object) -> bool | None:
    """What an ``==`` result says: True, False, or None when it cannot be read as a truth value."""
    if isinstance(outcome, bool):
        return outcome
    try:
        reduce = getattr(outcome, "all", None)  # an elementwise result (NumPy or tensor)
        return bool(reduce()) if callable(reduce) else bool(outcome)
    except Exception:
        return None


def _equals(left: Any, right: Any) -> bool | None:
    """``left == right`` as a bool; None when it raises or gives no truth value."""
    try:
        # The object's own code: a hang in it names this call (see _calls.py).
        with object_call(f"{type(left).__qualname__}.__eq__ (comparing two samples)"):
            return _truth(left == right)
    except Exception:  # incl. RecursionError from an __eq__ that follows a cycle
        return None


def _identity_like(value: Any) -> bool:
    """Whether ``type(value).__eq__`` compares identities: it is object's, or the value is not equal
    even to a shallow copy of itself (``return self is other``, common for graph containers)."""
    if isinstance(value, _ATOMS):
        return False
    if getattr(type(value), "__eq__", None) is _OBJECT_EQ:
        return True
    try:
        with object_call(f"copy.copy(<{type(value).__qualname__}>)"):
            twin = copy.copy(value)
    except Exception:
        return False  # cannot tell: trust the object's own ==
    if twin is value:
        return False  # a copy that is the value itself (immutable): == is then reflexive, not identity
    return _equals(value, twin) is False


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


def _attributes(value: Any) -> dict[str, Any] | None:
    """An object's attributes from ``vars()`` and ``__slots__`` (unset slots left out), in the order
    they were set; None when it has neither (C types), or they cannot be read."""
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
        return found if has_any else None
    except Exception:
        return None


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


@dataclass
class _Comparer:
    close: bool = False
    loose_scalars: bool = False
    # (rtol, atol) for every floating-point dtype instead of the per-dtype defaults (with close=True).
    tolerance: tuple[float, float] | None = None
    not_compared: list[str] = field(default_factory=list)
    # (id(left), id(right)) of the containers and objects being compared, to end cycles, with the
    # depth of each and whether it is an object whose == said False (see _objects).
    active: dict[tuple[int, int], tuple[int, bool]] = field(default_factory=dict)
    # The smallest depth of such an object that a cycle led back to, during the current walk.
    cycle_to: float = math.inf

    def skip(self, path: str, why: str) -> None:
        if len(self.not_compared) < 20:
            self.not_compared.append(f"{path or 'the value'}: {why}")

    def diff(self, left: Any, right: Any, path: str, depth: int) -> str | None:
        try:
            return self._diff(left, right, path, depth)
        except Exception as error:  # our own comparison must never raise: say what it could not do
            self.skip(path, f"comparing {describe(left)} with {describe(right)} raised {error!r}")
            return None

    def _diff(self, left: Any, right: Any, path: str, depth: int) -> str | None:
        where = f" at {path}" if path else ""
        if depth > MAX_DEPTH:
            self.skip(path, f"nested deeper than {MAX_DEPTH} levels")
            return None
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
        if isinstance(left, _ATOMS):
            return self._atoms(left, right, where)
        if _is_pil_image(left):
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
            if isinstance(left, (tuple, list)):
                return self._sequences(left, right, path, depth)
            if isinstance(left, Mapping):
                left_items, right_items = _items(left), _items(right)
                if left_items is not None and right_items is not None:
                    return self._mappings(left_items, right_items, path, depth)
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
        return None if _equals(left, right) else _unequal(left, right, where)

    def _sequences(self, left: Any, right: Any, path: str, depth: int) -> str | None:
        where = f" at {path}" if path else ""
        if len(left) != len(right):
            return f"length differs{where}: {len(left)} vs {len(right)}"
        for index, (one, two) in enumerate(zip(left, right, strict=True)):
            found = self.diff(one, two, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None

    def _mappings(
        self, left: list[tuple[Any, Any]], right: list[tuple[Any, Any]], path: str, depth: int
    ) -> str | None:
        where = f" at {path}" if path else ""
        left_keys, right_keys = [key for key, _ in left], [key for key, _ in right]
        if set(left_keys) != set(right_keys):
            return f"keys differ{where}: {[repr(k) for k in left_keys]} vs {[repr(k) for k in right_keys]}"
        right_values = dict(right)
        for key, item in left:
            found = self.diff(item, right_values[key], f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        return None

    def _objects(self, left: Any, right: Any, path: str, depth: int) -> str | None:
        """Two leaves of one type: by ``==``, or by their content when ``==`` cannot say."""
        where = f" at {path}" if path else ""
        equal = None if getattr(type(left), "__eq__", None) is _OBJECT_EQ else _equals(left, right)
        if equal is True:
            return None
        if equal is None or _identity_like(left):
            left_attributes, right_attributes = _attributes(left), _attributes(right)
            if left_attributes is None or right_attributes is None:
                self.skip(
                    path, f"{type(left).__qualname__} has no == of its own and no attributes to compare"
                )
                return None
            # The path names the attribute (``.nodes``): no prefix, which nested objects would repeat.
            return self._attributes(left_attributes, right_attributes, path, depth)
        # == says they differ: where, if their attributes show it (a repr may hide it).
        left_attributes, right_attributes = _attributes(left), _attributes(right)
        if left_attributes is not None and right_attributes is not None:
            self.active[(id(left), id(right))] = (depth, True)
            outer, self.cycle_to = self.cycle_to, math.inf
            found = self._attributes(left_attributes, right_attributes, path, depth)
            led_back, self.cycle_to = self.cycle_to, min(outer, self.cycle_to)
            if found:
                return found
            if led_back < depth:
                # The walk led back to an object further up whose == also said False: the
                # difference may lie there, and that object reports it if its own walk does not.
                return None
        return _unequal(left, right, where)

    def _attributes(self, left: dict[str, Any], right: dict[str, Any], path: str, depth: int) -> str | None:
        if set(left) != set(right):
            return f"attribute names differ at {path or 'the value'}: {sorted(left)} vs {sorted(right)}"
        for name, item in left.items():
            found = self.diff(item, right[name], f"{path}.{name}", depth + 1)
            if found:
                return found
        return None

    def _arrays(self, left: Any, right: Any, path: str, depth: int) -> str | None:
        where = f" at {path}" if path else ""
        both = f"{describe(left)} vs {describe(right)}"
        if not (is_array(left) and is_array(right)) or isinstance(left, np.ndarray) != isinstance(
            right, np.ndarray
        ):
            return f"type differs{where}: {both}"
        if _dtype_name(left) != _dtype_name(right):
            return f"dtype differs{where}: {both}"
        if is_tensor(left):
            if _layout(left) != _layout(right):
                return f"layout differs{where}: {both}"
            if _is_quantized(left) != _is_quantized(right):
                return f"quantization differs{where}: {both}"
            try:
                devices_differ = bool(left.device != right.device)
            except Exception:
                devices_differ = False
            if devices_differ:
                return f"device differs{where}: {both}"
        if _is_nested(left):
            left_parts, right_parts = _components(left), _components(right)
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
        if _shape(left) != _shape(right):
            return f"shape differs{where}: {both}"
        if _is_meta(left) or _is_meta(right):
            self.skip(path, f"the values of {describe(left)} (a meta tensor has no data)")
            return None
        if _is_quantized(left) and _quantization(left) != _quantization(right):
            return f"quantization parameters differ{where}: {_quantization(left)} vs {_quantization(right)}"
        left_values, right_values = _storage_numpy(left), _storage_numpy(right)
        if isinstance(left_values, NotComparable) or isinstance(right_values, NotComparable):
            self.skip(path, str(left_values if isinstance(left_values, NotComparable) else right_values))
            return None
        if left_values.dtype == object or right_values.dtype == object:
            return self._object_arrays(left_values, right_values, path, depth)
        dtype = _dtype_name(left)
        if self.close and dtype in _TOLERANCES and not _is_quantized(left):
            rtol, atol = _TOLERANCES[dtype] if self.tolerance is None else self.tolerance
            if not np.allclose(left_values, right_values, rtol=rtol, atol=atol, equal_nan=True):
                with np.errstate(invalid="ignore"):
                    gap = np.abs(left_values.astype(np.complex128) - right_values.astype(np.complex128))
                    worst = float(np.nanmax(gap)) if gap.size else 0.0
                return (
                    f"values differ at {path or 'the output'} beyond rtol={rtol}, atol={atol} "
                    f"({dtype}): largest absolute difference {worst:.3g}"
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


def compare(left: Any, right: Any, *, close: bool = False, loose_scalars: bool = False) -> Comparison:
    """Compare two values (SPEC.md, "Conventions"): the difference, and what could not be compared.

    ``close``: floating-point leaves only need to agree within ``torch.testing.assert_close``'s
    default tolerances for their dtype. ``loose_scalars``: a NumPy scalar equals a Python number of
    the same value. Never raises.
    """
    comparer = _Comparer(close=close, loose_scalars=loose_scalars)
    found = comparer.diff(left, right, "", 0)
    return Comparison(found, tuple(comparer.not_compared))


def difference(left: Any, right: Any, path: str = "", *, loose_scalars: bool = False) -> str | None:
    """None if ``left`` equals ``right`` (SPEC.md, "Conventions"), else where and how they differ.

    ``loose_scalars``: a NumPy scalar equals a Python number of the same value. What cannot be
    compared counts as equal (:func:`compare` lists it).
    """
    return _Comparer(loose_scalars=loose_scalars).diff(left, right, path, 0)


def close_difference(
    left: Any, right: Any, path: str = "", tolerance: tuple[float, float] | None = None
) -> str | None:
    """Like :func:`difference`, but floating-point leaves only need to agree within the default
    tolerances of ``torch.testing.assert_close`` for their dtype (or ``tolerance=(rtol, atol)``)."""
    return _Comparer(close=True, tolerance=tolerance).diff(left, right, path, 0)


# ----------------------------------------------------------------------------------------------------
# structure and leaves

_CYCLE = ("cycle",)


def structure(value: Any) -> object:
    """A hashable summary of a sample's structure (SPEC.md, "Conventions"): container types, tuple
    arity, dict keys, and each leaf's type and dtype. Shapes and values are not part of it."""
    return _structure(value, set(), 0)


def _structure(value: Any, active: set[int], depth: int) -> object:
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str)
    if is_tensor(value):
        return ("Tensor", _dtype_name(value))
    if _is_pil_image(value):
        return ("PIL.Image", value.mode)
    if not isinstance(value, (tuple, list, Mapping)):
        return type(value)
    if id(value) in active or depth > MAX_DEPTH:
        return _CYCLE
    active.add(id(value))
    try:
        if isinstance(value, tuple):
            return (type(value), len(value), tuple(_structure(item, active, depth + 1) for item in value))
        if isinstance(value, list):
            # Lists may be ragged (token lists): only the kinds of their items count, not their number.
            return (list, frozenset(_structure(item, active, depth + 1) for item in value))
        pairs = _items(value)
        if pairs is None:
            return type(value)
        return (type(value), tuple((key, _structure(item, active, depth + 1)) for key, item in pairs))
    finally:
        active.discard(id(value))


def describe_structure(value: Any) -> str:
    """The structure of ``value`` in words, for messages."""
    return _describe_structure(value, set(), 0)


def _describe_structure(value: Any, active: set[int], depth: int) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray[{value.dtype}]"
    if is_tensor(value):
        return f"Tensor[{_dtype_name(value)}]"
    if _is_pil_image(value):
        return f"PIL.Image[{value.mode}]"
    if not isinstance(value, (tuple, list, Mapping)):
        return type(value).__name__
    if id(value) in active or depth > MAX_DEPTH:
        return "..."
    active.add(id(value))
    try:
        if isinstance(value, tuple):
            inner = ", ".join(_describe_structure(item, active, depth + 1) for item in value)
            return f"{type(value).__name__}({inner})"
        if isinstance(value, list):
            kinds = sorted({_describe_structure(item, active, depth + 1) for item in value})
            return f"list[{' | '.join(kinds)}]"
        pairs = _items(value)
        if pairs is None:
            return type(value).__name__
        inner = ", ".join(f"{key!r}: {_describe_structure(item, active, depth + 1)}" for key, item in pairs)
        return f"{type(value).__name__}{{{inner}}}"
    finally:
        active.discard(id(value))


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every non-container leaf of a sample, with its path (``[0]['image']``); each container is
    entered once per path (a cycle ends), at most :data:`MAX_DEPTH` deep."""
    yield from _leaves(value, path, set(), 0)


def _leaves(value: Any, path: str, active: set[int], depth: int) -> Iterator[tuple[str, Any]]:
    if not isinstance(value, (tuple, list, Mapping)) or is_array(value):
        yield path, value
        return
    if id(value) in active or depth > MAX_DEPTH:
        return
    pairs: list[tuple[Any, Any]] | None
    if isinstance(value, (tuple, list)):
        pairs = list(enumerate(value))
        shown = [f"{path}[{index}]" for index, _ in pairs]
    else:
        pairs = _items(value)
        if pairs is None:
            yield path, value
            return
        shown = [f"{path}[{key!r}]" for key, _ in pairs]
    active.add(id(value))
    try:
        for where, (_, item) in zip(shown, pairs, strict=True):
            yield from _leaves(item, where, active, depth + 1)
    finally:
        active.discard(id(value))


# "No example sample given" for :func:`sample_count` (None is a valid sample).
NO_SAMPLE: Any = object()


def _skeleton(value: Any, active: set[int] | None = None, depth: int = 0) -> object:
    """A sample's containers (tuple arity, namedtuple type, dict keys) and, of its leaves, only
    whether each is an array and of how many dimensions: an unbatched sample keeps them, a stacked
    batch has one more (so ``[torch.stack(b)]`` and ``(pad_sequence(b), lengths)`` are not taken for
    lists of samples). Leaf types and dtypes may change (a collate may turn arrays into tensors)."""
    active = set() if active is None else active
    if is_array(value):
        return ("array", _ndim(value))
    if not isinstance(value, (tuple, list, Mapping)):
        return "leaf"
    if id(value) in active or depth > MAX_DEPTH:
        return _CYCLE
    active.add(id(value))
    try:
        if isinstance(value, tuple):
            kind = type(value) if _is_namedtuple(value) else tuple
            return (kind, tuple(_skeleton(item, active, depth + 1) for item in value))
        if isinstance(value, list):
            return (list, frozenset(_skeleton(item, active, depth + 1) for item in value))
        pairs = _items(value)
        if pairs is None:
            return "leaf"
        return (Mapping, tuple((key, _skeleton(item, active, depth + 1)) for key, item in pairs))
    finally:
        active.discard(id(value))


def _unstacked_count(batch: Any, sample: Any, depth: int) -> int | None:
    """The number of samples in a batch that keeps them whole, given one sample: a list of samples
    (``collate_fn=lambda b: b``), or a tuple/dict of fields each holding its per-sample values
    (``tuple(zip(*samples))``). None when the batch has neither form."""
    if isinstance(batch, (list, tuple)) and batch:
        expected = _skeleton(sample)
        if all(_skeleton(item) == expected for item in batch):
            return len(batch)
    fields: list[tuple[Any, Any]] = []
    if isinstance(sample, (list, tuple)) and isinstance(batch, (list, tuple)) and len(batch) == len(sample):
        fields = list(zip(batch, sample, strict=True))
    elif isinstance(sample, Mapping) and isinstance(batch, Mapping):
        batch_items, sample_items = _items(batch), _items(sample)
        if batch_items is not None and sample_items is not None:
            batch_fields = dict(batch_items)
            if set(batch_fields) == {key for key, _ in sample_items}:
                fields = [(batch_fields[key], item) for key, item in sample_items]
    if fields and depth < MAX_DEPTH:
        counts = {_sample_count(field_batch, field_sample, depth + 1) for field_batch, field_sample in fields}
        if len(counts) == 1:
            return counts.pop()
    return None


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
    if _is_nested(leaf):
        parts = _components(leaf)
        return None if parts is None else len(parts)
    shape = _shape(leaf)
    if not shape:
        return None
    try:
        return int(shape[0])
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
                    not _is_nested(leaf)
                    and not _is_quantized(leaf)
                    and not _is_meta(leaf)
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


# ----------------------------------------------------------------------------------------------------
# fingerprints


def fingerprint(value: Any) -> object:
    """A hashable stand-in for a sample, equal for equal samples (:func:`difference`): to count samples
    across processes. Its ``repr`` is the same in every process for the same value."""
    try:
        return _fingerprint(value, set(), 0)
    except Exception:
        return ("repr", _safe_repr(value))


def _array_fingerprint(value: Any, active: set[int], depth: int) -> object:
    kind = "tensor" if is_tensor(value) else "ndarray"
    dtype = _dtype_name(value)
    if _is_nested(value):
        parts = _components(value) or []
        return (kind, "nested", dtype, tuple(_fingerprint(part, active, depth + 1) for part in parts))
    shape = _shape(value)
    if _is_meta(value):
        return (kind, "meta", dtype, shape)  # no data: all meta tensors of one shape are alike
    extra = _quantization(value) if _is_quantized(value) else ()
    array = _storage_numpy(value)
    if isinstance(array, NotComparable):
        return (kind, dtype, shape, extra, "unreadable")
    if array.dtype == object:
        items = tuple(_fingerprint(item, active, depth + 1) for item in array.flat)
        return (kind, dtype, shape, extra, items)
    if array.dtype.kind in "fc":
        # Equal values, equal bytes: one NaN, and 0.0 for -0.0.
        array = np.where(np.isnan(array), np.array(np.nan, dtype=array.dtype), array) + array.dtype.type(0)
    return (kind, dtype, shape, extra, np.ascontiguousarray(array).tobytes())


def _fingerprint(value: Any, active: set[int], depth: int) -> object:
    if is_array(value):
        return _array_fingerprint(value, active, depth)
    if isinstance(value, (float, complex, np.inexact)) and value != value:
        # NaN != NaN, but two NaN samples are the same sample.
        return ("nan",) if type(value) is float else ("nan", type(value).__name__, _safe_repr(value))
    if isinstance(value, _ATOMS):
        try:
            hash(value)
            return value
        except Exception:
            return ("repr", _safe_repr(value))
    if _is_pil_image(value):
        return ("image", value.mode, value.size, value.tobytes())
    if id(value) in active or depth > MAX_DEPTH:
        return _CYCLE
    active.add(id(value))
    try:
        if isinstance(value, (tuple, list)):
            return (type(value).__name__, tuple(_fingerprint(item, active, depth + 1) for item in value))
        if isinstance(value, Mapping):
            pairs = _items(value)
            if pairs is not None:
                return (
                    "mapping",
                    tuple((repr(key), _fingerprint(item, active, depth + 1)) for key, item in pairs),
                )
        name = f"{type(value).__module__}.{type(value).__qualname__}"
        identity = _identity_like(value)
        if identity or not _hashable(value):
            attributes = _attributes(value)
            if attributes is not None:
                items = tuple(
                    (key, _fingerprint(item, active, depth + 1)) for key, item in sorted(attributes.items())
                )
                return ("object", name, items)
            # Without attributes: alike if == cannot tell them apart (difference counts them equal).
            return ("object", name) if identity else ("repr", _safe_repr(value))
        return value
    finally:
        active.discard(id(value))


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except Exception:
        return False
    return True
