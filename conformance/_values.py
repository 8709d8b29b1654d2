"""What the checks need to know about samples, batches and outputs: equality, structure, counts, reprs.

torch is never imported here: a value can only be a tensor if torch is already in ``sys.modules``.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

import numpy as np

__all__ = [
    "NO_SAMPLE",
    "as_numpy",
    "close_difference",
    "describe",
    "difference",
    "fingerprint",
    "is_array",
    "is_iterable_style",
    "is_tensor",
    "leaves",
    "restore_leaves",
    "sample_count",
    "snapshot_leaves",
    "structure",
    "tensor_module",
]


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


# ----------------------------------------------------------------------------------------------------
# describe: short, readable reprs for messages


def describe(value: object, limit: int = 120) -> str:
    """A short repr: arrays by dtype and shape, containers recursively, long things cut."""
    text = _describe(value, depth=0)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any, depth: int) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray({value.dtype}, {tuple(value.shape)})"
    if is_tensor(value):
        device = "" if value.device.type == "cpu" else f", {value.device}"
        dtype = str(value.dtype).removeprefix("torch.")
        return f"Tensor({dtype}, {tuple(value.shape)}{device})"
    if _is_pil_image(value):
        return f"PIL.Image({value.mode}, {value.size})"
    if isinstance(value, BaseException):
        text = f"{type(value).__name__}: {value}"
        return text if len(text) <= 160 else text[:157] + "..."
    if isinstance(value, np.generic):
        return f"{type(value).__name__}({value.item()!r})"
    if depth >= 3 and isinstance(value, (tuple, list, Mapping)):
        return f"{type(value).__name__}(...)"
    if _is_namedtuple(value):
        fields = ", ".join(
            f"{name}={_describe(item, depth + 1)}" for name, item in zip(value._fields, value, strict=True)
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
        items = [f"{key!r}: {_describe(item, depth + 1)}" for key, item in list(value.items())[:6]]
        inner = "{" + ", ".join(items) + ("" if len(value) <= 6 else ", ...") + "}"
        return inner if type(value) is dict else f"{type(value).__name__}({inner})"
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break the report
        text = f"<{type(value).__qualname__} object>"
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------------------------------
# equality


def as_numpy(value: Any) -> np.ndarray[Any, Any]:
    """An ndarray with the values of an array or tensor (tensors are copied to the CPU)."""
    if isinstance(value, np.ndarray):
        return value
    tensor = value.detach()
    if tensor.layout != tensor_module().strided:
        tensor = tensor.to_dense()
    tensor = tensor.cpu().resolve_conj().resolve_neg()
    if str(tensor.dtype) in ("torch.bfloat16", "torch.float16") or "float8" in str(tensor.dtype):
        tensor = tensor.float()
    return np.asarray(tensor.numpy())


def _dtype_name(value: Any) -> str:
    return str(value.dtype).removeprefix("torch.")


def _array_values_equal(left: np.ndarray[Any, Any], right: np.ndarray[Any, Any]) -> bool:
    if left.dtype.kind in "fc":
        return bool(np.array_equal(left, right, equal_nan=True))
    try:
        return bool(np.array_equal(left, right))
    except Exception:
        return False


# The __eq__ of classes that define none: identity.
_OBJECT_EQ: Any = object.__eq__


def difference(left: Any, right: Any, path: str = "", *, loose_scalars: bool = False) -> str | None:
    """None if ``left`` equals ``right`` (SPEC.md, "Conventions"), else where and how they differ.

    ``loose_scalars``: a NumPy scalar equals a Python number of the same value.
    """
    where = f" at {path}" if path else ""
    scalars = (np.generic, int, float, complex)
    one_numpy_scalar = isinstance(left, np.generic) != isinstance(right, np.generic)
    if loose_scalars and one_numpy_scalar and isinstance(left, scalars) and isinstance(right, scalars):
        same = bool(np.asarray(left) == np.asarray(right)) or (left != left and right != right)
        return None if same else f"values differ{where}: {describe(left)} vs {describe(right)}"
    left_type, right_type = type(left), type(right)
    if is_array(left) or is_array(right):
        if not (is_array(left) and is_array(right)) or isinstance(left, np.ndarray) != isinstance(
            right, np.ndarray
        ):
            return f"type differs{where}: {describe(left)} vs {describe(right)}"
        if _dtype_name(left) != _dtype_name(right):
            return f"dtype differs{where}: {describe(left)} vs {describe(right)}"
        if tuple(left.shape) != tuple(right.shape):
            return f"shape differs{where}: {describe(left)} vs {describe(right)}"
        if is_tensor(left) and left.device != right.device:
            return f"device differs{where}: {describe(left)} vs {describe(right)}"
        if not _array_values_equal(as_numpy(left), as_numpy(right)):
            return f"values differ{where}: {describe(left)}"
        return None
    if left_type is not right_type:
        return f"type differs{where}: {describe(left)} vs {describe(right)}"
    if _is_pil_image(left):
        same = left.mode == right.mode and left.size == right.size and left.tobytes() == right.tobytes()
        return None if same else f"image differs{where}: {describe(left)} vs {describe(right)}"
    if isinstance(left, (tuple, list)):
        if len(left) != len(right):
            return f"length differs{where}: {len(left)} vs {len(right)}"
        for index, (one, two) in enumerate(zip(left, right, strict=True)):
            found = difference(one, two, f"{path}[{index}]", loose_scalars=loose_scalars)
            if found:
                return found
        return None
    if isinstance(left, Mapping):
        if set(left) != set(right):
            return f"keys differ{where}: {sorted(map(repr, left))} vs {sorted(map(repr, right))}"
        for key in left:
            found = difference(left[key], right[key], f"{path}[{key!r}]", loose_scalars=loose_scalars)
            if found:
                return found
        return None
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left) and math.isnan(right):
        return None
    if isinstance(left, np.generic) and isinstance(right, np.generic):
        if _array_values_equal(np.asarray(left), np.asarray(right)):
            return None
        return f"values differ{where}: {describe(left)} vs {describe(right)}"
    if getattr(type(left), "__eq__", None) is _OBJECT_EQ:
        # No equality of its own (identity only): two loads of the same sample are two objects.
        return _attributes_difference(left, right, where, path, loose_scalars)
    try:
        equal = left == right
        if not isinstance(equal, bool):
            equal = bool(np.all(equal))
    except Exception:  # an __eq__ that raises cannot say: compare the attributes
        return _attributes_difference(left, right, where, path, loose_scalars)
    return None if equal else f"values differ{where}: {describe(left)} vs {describe(right)}"


def _attributes_difference(left: Any, right: Any, where: str, path: str, loose_scalars: bool) -> str | None:
    """Compare two objects without a usable ``==`` by their attributes (``vars()``); objects without
    attributes (``__slots__``, C types) cannot be compared and count as equal rather than differing."""
    try:
        left_vars, right_vars = vars(left), vars(right)
    except TypeError:
        return None
    found = difference(left_vars, right_vars, f"{path}.__dict__", loose_scalars=loose_scalars)
    return None if found is None else f"attributes differ{where}: {found}"


# torch.testing.assert_close's default tolerances (torch/testing/_comparison.py), by dtype name.
_TOLERANCES = {
    "float16": (1e-3, 1e-5),
    "bfloat16": (1.6e-2, 1e-5),
    "float32": (1.3e-6, 1e-5),
    "float64": (1e-7, 1e-7),
    "complex64": (1.3e-6, 1e-5),
    "complex128": (1e-7, 1e-7),
}


def close_difference(left: Any, right: Any, path: str = "", *, tf32: bool = False) -> str | None:
    """Like :func:`difference`, but floating-point leaves only need to agree within the default
    tolerances of ``torch.testing.assert_close`` for their dtype (or TF32's, ``rtol=atol=1e-3``)."""
    if is_array(left) and is_array(right):
        dtype = _dtype_name(left)
        if dtype in _TOLERANCES and _dtype_name(right) == dtype:
            if tuple(left.shape) != tuple(right.shape):
                return f"shape differs at {path or 'the output'}: {describe(left)} vs {describe(right)}"
            rtol, atol = (1e-3, 1e-3) if tf32 and dtype == "float32" else _TOLERANCES[dtype]
            a, b = as_numpy(left), as_numpy(right)
            if not np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True):
                with np.errstate(invalid="ignore"):
                    worst = float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64))))
                return (
                    f"values differ at {path or 'the output'} beyond rtol={rtol}, atol={atol} "
                    f"({dtype}): largest absolute difference {worst:.3g}"
                )
            return None
        return difference(left, right, path)
    if isinstance(left, (tuple, list)) and type(left) is type(right):
        if len(left) != len(right):
            return f"length differs at {path or 'the output'}: {len(left)} vs {len(right)}"
        for index, (one, two) in enumerate(zip(left, right, strict=True)):
            found = close_difference(one, two, f"{path}[{index}]", tf32=tf32)
            if found:
                return found
        return None
    if isinstance(left, Mapping) and type(left) is type(right):
        if set(left) != set(right):
            return difference(left, right, path)
        for key in left:
            found = close_difference(left[key], right[key], f"{path}[{key!r}]", tf32=tf32)
            if found:
                return found
        return None
    return difference(left, right, path)


# ----------------------------------------------------------------------------------------------------
# structure and leaves


def structure(value: Any) -> object:
    """A hashable summary of a sample's structure (SPEC.md, "Conventions"): container types, tuple
    arity, dict keys, and each leaf's type and dtype. Shapes and values are not part of it."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str)
    if is_tensor(value):
        return ("Tensor", _dtype_name(value))
    if isinstance(value, tuple):
        return (type(value), len(value), tuple(structure(item) for item in value))
    if isinstance(value, list):
        # Lists may be ragged (token lists): only the kinds of their items count, not their number.
        return (list, frozenset(structure(item) for item in value))
    if isinstance(value, Mapping):
        return (type(value), tuple((key, structure(value[key])) for key in sorted(value, key=repr)))
    if _is_pil_image(value):
        return ("PIL.Image", value.mode)
    return type(value)


def describe_structure(value: Any) -> str:
    """The structure of ``value`` in words, for messages."""
    if isinstance(value, np.ndarray):
        return f"ndarray[{value.dtype}]"
    if is_tensor(value):
        return f"Tensor[{_dtype_name(value)}]"
    if isinstance(value, tuple):
        inner = ", ".join(describe_structure(item) for item in value)
        return f"{type(value).__name__}({inner})"
    if isinstance(value, list):
        kinds = sorted({describe_structure(item) for item in value})
        return f"list[{' | '.join(kinds)}]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{key!r}: {describe_structure(value[key])}" for key in value)
        return f"{type(value).__name__}{{{inner}}}"
    if _is_pil_image(value):
        return f"PIL.Image[{value.mode}]"
    return type(value).__name__


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every non-container leaf of a sample, with its path (``[0]['image']``)."""
    if isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield from leaves(item, f"{path}[{index}]")
    elif isinstance(value, Mapping):
        for key in value:
            yield from leaves(value[key], f"{path}[{key!r}]")
    else:
        yield path, value


# "No example sample given" for :func:`sample_count` (None is a valid sample).
NO_SAMPLE: Any = object()


def _skeleton(value: Any) -> object:
    """A sample's containers (tuple arity, namedtuple type, dict keys) and, of its leaves, only
    whether each is an array and of how many dimensions: an unbatched sample keeps them, a stacked
    batch has one more (so ``[torch.stack(b)]`` and ``(pad_sequence(b), lengths)`` are not taken for
    lists of samples). Leaf types and dtypes may change (a collate may turn arrays into tensors)."""
    if isinstance(value, tuple):
        return (type(value) if _is_namedtuple(value) else tuple, tuple(_skeleton(item) for item in value))
    if isinstance(value, list):
        return (list, frozenset(_skeleton(item) for item in value))
    if isinstance(value, Mapping):
        return (Mapping, tuple((key, _skeleton(value[key])) for key in sorted(value, key=repr)))
    if is_array(value):
        return ("array", len(value.shape))
    return "leaf"


def _unstacked_count(batch: Any, sample: Any) -> int | None:
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
    elif isinstance(sample, Mapping) and isinstance(batch, Mapping) and set(batch) == set(sample):
        fields = [(batch[key], sample[key]) for key in sample]
    if fields:
        counts = {sample_count(field_batch, like=field_sample) for field_batch, field_sample in fields}
        if len(counts) == 1:
            return counts.pop()
    return None


def sample_count(batch: object, *, like: Any = NO_SAMPLE) -> int | None:
    """The number of samples in a batch: the leading dimension shared by its array and tensor leaves,
    else the length of a list batch. None when that is ambiguous (leaves disagree) or unknown.

    ``like``, one sample of the batch, lets a batch that keeps its samples whole count too: a list of
    samples holds its length, not the samples' own leading dimension.
    """
    if like is not NO_SAMPLE:
        count = _unstacked_count(batch, like)
        if count is not None:
            return count
    dims = {int(leaf.shape[0]) for _, leaf in leaves(batch) if is_array(leaf) and len(leaf.shape) > 0}
    if len(dims) == 1:
        return dims.pop()
    if not dims and isinstance(batch, list):
        return len(batch)
    return None


# ----------------------------------------------------------------------------------------------------
# mutation helpers: checks that must modify a value restore it exactly afterwards


def snapshot_leaves(value: Any) -> list[tuple[Any, Any]]:
    """(leaf, copy of its contents) for every writable array or tensor leaf."""
    saved: list[tuple[Any, Any]] = []
    for _, leaf in leaves(value):
        if isinstance(leaf, np.ndarray) and leaf.flags.writeable and leaf.size:
            saved.append((leaf, leaf.copy()))
        elif is_tensor(leaf) and leaf.numel() and not leaf.is_inference():
            saved.append((leaf, leaf.detach().clone()))
    return saved


def restore_leaves(saved: list[tuple[Any, Any]]) -> None:
    for leaf, contents in saved:
        if isinstance(leaf, np.ndarray):
            np.copyto(leaf, contents)
        else:
            torch = tensor_module()
            with torch.no_grad():
                leaf.copy_(contents)


def deep_copy(value: object) -> object:
    return copy.deepcopy(value)


# ----------------------------------------------------------------------------------------------------
# datasets


def is_iterable_style(dataset: object) -> bool:
    """Whether a loader treats ``dataset`` as a stream rather than by index.

    torch decides by ``isinstance(dataset, torch.utils.data.IterableDataset)``; an object that is not a
    torch dataset is a stream when it can be iterated but not indexed with a length.
    """
    torch = tensor_module()
    if torch is not None:
        iterable_dataset = getattr(getattr(torch, "utils", None), "data", None)
        iterable_dataset = getattr(iterable_dataset, "IterableDataset", None)
        if iterable_dataset is not None and isinstance(dataset, iterable_dataset):
            return True
        torch_dataset = getattr(torch.utils.data, "Dataset", None)
        if torch_dataset is not None and isinstance(dataset, torch_dataset):
            return False
    kind = type(dataset)
    indexable = hasattr(kind, "__getitem__") and hasattr(kind, "__len__")
    return hasattr(kind, "__iter__") and not indexable


def fingerprint(value: Any) -> object:
    """A hashable stand-in for a sample, equal for equal samples: to count samples across processes."""
    if is_array(value):
        array = as_numpy(value)
        kind = "tensor" if is_tensor(value) else "ndarray"
        return (kind, str(array.dtype), array.shape, np.ascontiguousarray(array).tobytes())
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(fingerprint(item) for item in value))
    if isinstance(value, Mapping):
        return ("mapping", tuple(sorted((repr(key), fingerprint(value[key])) for key in value)))
    if _is_pil_image(value):
        return ("image", value.mode, value.size, value.tobytes())
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)  # NaN != NaN, but two NaN samples are the same sample
    try:
        hash(value)
    except TypeError:
        return ("repr", repr(value))
    return value
