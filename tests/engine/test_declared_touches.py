"""A check declared ``touches="copies"`` changes nothing of the object it checks.

Within one run of ``check()`` the engine does not restore the object after such a check (its snapshot
of the run is restored after the checks that may change the object, and at the run's end): the
declaration is what lets a check that reads the object or works on its deep copies cost no restore.
These tests hold every such check to it, on the correct objects and the mutants of its protocol (each
check runs where the engine runs it, after its prerequisites), and show that the guard fails on a
check that changes the object while declaring that it does not, and that ``check()`` still leaves
such an object as it found it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from unittest import mock

import pytest

from torchcontract.conformance import CHECKS, check
from torchcontract.conformance._core import registry
from torchcontract.conformance._core.context import Context
from torchcontract.conformance._values import difference, is_tensor
from torchcontract.protocols import CallableModule, MapDataset, Module

from ..conformance.cases import PLAIN_CASES
from ..conformance.mutants import all_mutants
from ..conftest import HAS_TORCH
from .registered import CallCounter, registered_check

COPIES = sorted(check_id for check_id, spec in CHECKS.items() if spec.touches == "copies")
GUARDED_PROTOCOLS = {CHECKS[check_id].protocol for check_id in COPIES}


def _state(obj: Any) -> Any:
    """What the object is, compared with ``difference``: a deep copy (its attributes, containers and
    tensors' values, through the generic comparison), each tensor's gradient and requires_grad (not
    attributes in ``vars()``), and every submodule's class and mode."""
    tensors: dict[str, Any] = {}
    named = getattr(obj, "named_parameters", None)
    if callable(named) and hasattr(obj, "named_buffers"):
        for name, tensor in [*obj.named_parameters(), *obj.named_buffers()]:
            if is_tensor(tensor):
                grad = tensor.grad
                tensors[name] = (
                    bool(tensor.requires_grad),
                    None if grad is None else grad.detach().clone(),
                    tensor.detach().clone(),
                )
    modules = (
        [(name, type(sub), sub.training) for name, sub in obj.named_modules()]
        if hasattr(obj, "named_modules")
        else []
    )
    return copy.deepcopy(obj), tensors, modules


def _changes(before: Any, obj: Any) -> str | None:
    """How ``obj``'s state differs from ``before`` (both taken by :func:`_state`: a deep copy is compared
    with a deep copy, so that what copying itself changes, or leaves out, counts alike on both sides)."""
    copied, tensors, modules = before
    now_copied, now_tensors, now_modules = _state(obj)
    if modules != now_modules:
        return f"submodules, classes or modes changed: {modules} -> {now_modules}"
    found = difference(now_tensors, tensors)
    if found:
        return f"tensors changed: {found}"
    return difference(now_copied, copied)


@contextmanager
def guarded(check_ids: list[str], seen: list[str]) -> Iterator[None]:
    """Run ``check_ids`` as the engine does, each checking afterwards that it left ``ctx.obj`` as it
    found it; what one changed is appended to ``seen``."""

    def guard(check_id: str, func: Callable[[Context], None]) -> Callable[[Context], None]:
        def run(ctx: Context) -> None:
            try:
                before = _state(ctx.obj)
            except Exception:  # an object deepcopy cannot copy: nothing to compare with
                func(ctx)
                return
            try:
                func(ctx)
            finally:
                changed = _changes(before, ctx.obj)
                if changed:
                    seen.append(f"{check_id}: {changed}")

        return run

    replaced = {
        check_id: dataclasses.replace(registry._REGISTRY[check_id], func=guard(check_id, spec.func))
        for check_id, spec in registry._REGISTRY.items()
        if check_id in check_ids
    }
    with mock.patch.dict(registry._REGISTRY, replaced):
        yield


def _targets() -> list[Any]:
    """The correct objects and the mutants of the protocols that have such checks (none that hangs)."""
    cases = [case for case in PLAIN_CASES if case.protocol in GUARDED_PROTOCOLS]
    if HAS_TORCH:
        from ..conformance import torch_cases

        cases += [
            c for c in [*torch_cases.MODULE_CASES, *torch_cases.CASES] if c.protocol in GUARDED_PROTOCOLS
        ]
    params = [
        pytest.param(
            case.factory,
            case.protocol,
            {**case.kwargs, "expected_failures": case.expected_failures},
            id=f"{case.protocol.__name__}-{case.name}",
        )
        for case in cases
    ]
    mutants = [m for m in all_mutants() if m.protocol in GUARDED_PROTOCOLS and not (m.needs_cuda or m.hangs)]
    params += [pytest.param(m.factory, m.protocol, dict(m.kwargs), id=m.test_id) for m in mutants]
    return params


def test_the_checks_that_declare_copies_are_the_expected_ones() -> None:
    # A new declaration is added here on purpose, with the guard below run over its protocol.
    assert {CHECKS[c].protocol for c in COPIES} <= {CallableModule, Module, MapDataset}
    assert "module.zero_grad_clears_gradients" in COPIES


@pytest.mark.parametrize(("factory", "protocol", "kwargs"), _targets())
def test_a_check_declared_to_touch_only_copies_leaves_the_object_as_it_was(
    factory: Callable[[], object], protocol: type[Any], kwargs: dict[str, Any]
) -> None:
    seen: list[str] = []
    with guarded(COPIES, seen):
        check(factory(), protocol, **kwargs)
    assert seen == []


def _declared_copies_but_changes_the_object(ctx: Context) -> None:
    """Declares touches="copies" and calls the object itself."""
    ctx.call("m(1.0)", ctx.obj, 1.0)


def _bad_check_registered() -> AbstractContextManager[str]:
    return registered_check(
        "callable_module.declared_copies_but_changes_the_object",
        _declared_copies_but_changes_the_object,
        rule="Declares touches='copies' and calls the object itself.",
        touches="copies",
    )


def test_the_guard_names_a_check_that_changes_the_object_it_declares_it_does_not() -> None:
    seen: list[str] = []
    with _bad_check_registered() as check_id, guarded([check_id], seen):
        check(CallCounter(), CallableModule, example_inputs=(1.0,))
    assert len(seen) == 1, seen
    assert seen[0].startswith(check_id), seen
    assert "calls" in seen[0], seen


def test_check_leaves_the_object_as_it_was_even_after_a_wrong_declaration() -> None:
    # The run's snapshot is restored at its end when a check declared touches="copies" ran last.
    counter = CallCounter()
    with _bad_check_registered():
        report = check(counter, CallableModule, example_inputs=(1.0,))
    assert any(r.check_id.endswith("declared_copies_but_changes_the_object") for r in report.results)
    assert counter.calls == 0
