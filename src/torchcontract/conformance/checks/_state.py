"""Leaving the checked object as it was: the checks that advance a sampler's or a loader's state (a
pass that moves a counter or a generator, ``set_epoch``) work on a deep copy, or, for an object that
cannot be copied, restore what they can reach afterwards."""

from __future__ import annotations

import copy
import random
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from torchcontract.conformance._core.context import Context, SharedKey
from torchcontract.conformance._runtime.calls import stop_if_abandoned
from torchcontract.conformance._values import tensor_module

__all__ = ["restored", "working_copy"]

# Attributes whose values are the data, not state: shared with the copy, never snapshotted.
_DATA_ATTRIBUTES = frozenset({"dataset", "data_source"})


# One key per name the copy is made under (a loader, its sampler).
_WORKING_COPIES: dict[str, SharedKey[tuple[Any, bool]]] = {}


def working_copy(ctx: Context, name: str, *, share: tuple[object, ...] = ()) -> tuple[Any, bool]:
    """``(copy.deepcopy(ctx.obj), True)``, computed once per target and shared by its checks; the
    values in ``share`` are shared with the original instead of copied (a map-style dataset, which
    iteration does not change and which may be large). ``(ctx.obj, False)`` when it cannot be copied:
    wrap what then touches it in :func:`restored`."""

    def make() -> tuple[Any, bool]:
        memo: dict[int, Any] = {id(value): value for value in share}
        copied = ctx.attempt(f"copy.deepcopy({name})", copy.deepcopy, ctx.obj, memo)
        if isinstance(copied, Exception):
            return ctx.obj, False
        return copied, True

    return ctx.shared(_WORKING_COPIES.setdefault(name, SharedKey(f"working copy of {name}")), make)


@contextmanager
def restored(obj: object) -> Iterator[None]:
    """Put back, on exit, the attributes of ``obj`` and of its attributes (two levels; not the data
    source's contents) and the state of every random generator among them (torch, NumPy, Python)."""
    restorers = _snapshot(obj)
    try:
        yield
    finally:
        stop_if_abandoned()  # a check given up on puts nothing back after check() returned
        for restore in reversed(restorers):
            _quietly(restore)


def _quietly(restore: Callable[[], None]) -> None:
    """Best effort: a generator or attribute that refuses to be put back is left as it is."""
    try:
        restore()
    except Exception:
        return


def _snapshot(obj: object) -> list[Callable[[], None]]:
    restorers: list[Callable[[], None]] = []
    seen: set[int] = set()

    def visit(value: object, depth: int) -> None:
        if id(value) in seen or isinstance(value, (type, types.ModuleType, types.FunctionType)):
            return
        seen.add(id(value))
        generator = _generator_restorer(value)
        if generator is not None:
            restorers.append(generator)
            return
        attributes = getattr(value, "__dict__", None)
        if not isinstance(attributes, dict):
            return
        saved = dict(attributes)

        def put_back(attributes: dict[str, Any] = attributes, saved: dict[str, Any] = saved) -> None:
            attributes.clear()
            attributes.update(saved)

        restorers.append(put_back)
        if depth < 2:
            for key, child in saved.items():
                if key not in _DATA_ATTRIBUTES:
                    visit(child, depth + 1)

    visit(obj, 0)
    return restorers


def _generator_restorer(value: object) -> Callable[[], None] | None:
    if isinstance(value, np.random.Generator):
        state = value.bit_generator.state
        bit_generator = value.bit_generator
        return lambda: setattr(bit_generator, "state", state)
    if isinstance(value, np.random.RandomState):
        legacy = value.get_state()
        return lambda: value.set_state(legacy)
    if isinstance(value, random.Random):
        python_state = value.getstate()
        return lambda: value.setstate(python_state)
    torch = tensor_module()
    if torch is not None and isinstance(value, torch.Generator):
        torch_state = value.get_state()
        return lambda: value.set_state(torch_state)
    return None
