"""Moving and converting the tensors inside a value: the one walker of every clause that moves a module's
inputs (or outputs) to a device or converts them to a dtype, or rearranges its input tensors.

How a value is taken apart and rebuilt, decided here once (SPEC.md, "Conventions"):

- a **tensor** is converted;
- a **container with its own** ``.to()`` (a TensorDict, a ``BatchEncoding``-like mapping, a batch
  dataclass with a ``to`` method), when moved to a device, is moved by its own ``.to(device)``, as a
  training loop moves a batch: it moves its leaves and what it records about them (a TensorDict's
  ``device``, which it checks its leaves against);
- **named tuples**, **tuples** and **lists** are rebuilt in their own type, item by item;
- **mappings** are rebuilt in their own type: a ``dict`` as a dict with its keys in their order (a
  forward may iterate them), any other mapping (an ``OrderedDict``, a ``UserDict``, a TensorDict) as a
  shallow copy (``copy.copy``) whose changed items are assigned (``copy[key] = item``);
- **dataclass instances** are rebuilt as a shallow copy with their changed fields replaced;
- anything else is left as it is, except that a container with its own ``.to()`` that cannot be
  rebuilt so is converted to a dtype by its own ``.to(dtype)``.

Converting to a dtype walks a container even where it has its own ``.to()``: only floating-point
tensors are converted, as ``Module.to(dtype)`` converts only floating-point parameters and buffers (a
TensorDict's own ``.to(dtype)`` converts its integer leaves too, a ``BatchEncoding``'s ignores a dtype).

Every step may run the value's own code (``.to()``, ``copy.copy``, ``__setitem__``): callers run the
walker as a call into the object (``ctx.call``/``ctx.attempt``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from torchcontract.conformance._values import is_tensor

__all__ = ["copy_of_inputs", "has_own_to", "in_dtype", "map_tensors", "on_device"]

# How deep containers are walked (far below Python's recursion limit); deeper values are left as they are.
MAX_DEPTH = 64

Convert = Callable[[Any, str], Any]
_UNSET = object()  # a dataclass field that was never set (init=False, no default)


def has_own_to(value: Any) -> bool:
    """Whether ``value`` is a container with a ``to`` method of its own (not a tensor, not a class)."""
    return not is_tensor(value) and not isinstance(value, type) and callable(getattr(type(value), "to", None))


def map_tensors(
    value: Any,
    convert: Convert,
    path: str = "",
    *,
    own_to: Callable[[Any], Any] | None = None,
    fallback: Callable[[Any], Any] | None = None,
    depth: int = 0,
) -> Any:
    """``value`` with ``convert(tensor, path)`` in place of every tensor (``path``: where it is, as
    ``[0]['image'].x``), rebuilt as the module docstring says. ``own_to(container)`` moves a container
    with its own ``.to()`` instead of walking it; ``fallback(container)`` converts one that cannot be
    walked. A value that is not rebuilt (it holds no tensor) is returned as it is."""
    if is_tensor(value):
        return convert(value, path)
    if depth > MAX_DEPTH or isinstance(value, (str, bytes)):
        return value
    if own_to is not None and has_own_to(value):
        return own_to(value)

    def walk(item: Any, where: str) -> Any:
        return map_tensors(item, convert, where, own_to=own_to, fallback=fallback, depth=depth + 1)

    if isinstance(value, (tuple, list)):
        items = [walk(item, f"{path}[{index}]") for index, item in enumerate(value)]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        if isinstance(value, tuple) and hasattr(type(value), "_fields"):
            return type(value)(*items)
        return type(value)(items)
    if isinstance(value, Mapping):
        # keys() and value[key], not iteration: a batch-of-tensors mapping may iterate its batch dimension.
        keys = value.keys()
        pairs = [(key, value[key]) for key in keys]
        changed = {key: new for key, item in pairs if (new := walk(item, f"{path}[{key!r}]")) is not item}
        if not changed:
            return value
        if type(value) is dict:
            return {key: changed.get(key, item) for key, item in pairs}
        if isinstance(value, MutableMapping):
            return _rebuilt(value, changed, _set_item, fallback)
        return value if fallback is None or not has_own_to(value) else fallback(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        found = [(field.name, getattr(value, field.name, _UNSET)) for field in dataclasses.fields(value)]
        fields = [(name, item) for name, item in found if item is not _UNSET]
        changed = {name: new for name, item in fields if (new := walk(item, f"{path}.{name}")) is not item}
        if not changed:
            return value
        return _rebuilt(value, changed, object.__setattr__, fallback)  # a frozen dataclass's copy too
    if fallback is not None and has_own_to(value):
        return fallback(value)
    return value


def _set_item(container: Any, key: Any, item: Any) -> None:
    container[key] = item


def _rebuilt(
    value: Any,
    changed: dict[Any, Any],
    assign: Callable[[Any, Any, Any], None],
    fallback: Callable[[Any], Any] | None,
) -> Any:
    """A shallow copy of ``value`` with ``assign(copy, key, item)`` for each changed item; where that
    raises, ``fallback(value)`` for a container with its own ``.to()``."""
    try:
        rebuilt = copy.copy(value)
        for key, item in changed.items():
            assign(rebuilt, key, item)
    except Exception:
        if fallback is None or not has_own_to(value):
            raise
        return fallback(value)
    return rebuilt


def on_device(value: Any, device: Any) -> Any:
    """``value`` on ``device``: every tensor ``t.to(device)``, a container with its own ``.to()`` moved
    by it."""
    return map_tensors(
        value, lambda tensor, _: tensor.to(device), own_to=lambda container: container.to(device)
    )


def in_dtype(value: Any, dtype: Any) -> Any:
    """``value`` with every floating-point tensor ``t.to(dtype)`` (other values unchanged); a container
    that cannot be walked but has its own ``.to()`` is converted by ``.to(dtype)``."""
    return map_tensors(
        value,
        lambda tensor, _: tensor.to(dtype) if tensor.is_floating_point() else tensor,
        fallback=lambda container: container.to(dtype),
    )


def copy_of_inputs(value: Any) -> Any:
    """``copy.deepcopy(value)``, also where ``value`` holds tensors that are not graph leaves (the
    result of an op on a tensor that requires grad, as torch's own module inputs are made): torch
    refuses to deep-copy those (``Tensor.__deepcopy__``), so each is copied as a new leaf with the same
    values and ``requires_grad``, which is what a call or a backward through the copy sees of it."""
    memo: dict[int, Any] = {}

    def copy_if_not_leaf(tensor: Any, _: str) -> Any:
        if getattr(tensor, "grad_fn", None) is not None and id(tensor) not in memo:
            memo[id(tensor)] = tensor.detach().clone().requires_grad_(tensor.requires_grad)
        return tensor

    map_tensors(value, copy_if_not_leaf)
    return copy.deepcopy(value, memo)
