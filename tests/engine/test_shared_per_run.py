"""Work read from the object's state is shared within one run of ``check()`` only.

A :class:`~torchcontract.conformance._core.context.SharedKey` with ``per_run=True`` (m's output in eval
mode, the reference of the clauses that compare a copy, a conversion or a reload of m with m) is
computed once per run: the engine puts the object back after each check that may change it, so every
clause of the run would compute the same. Outside a run (the pytest plugin, the user's code between the
checks) each check computes its own, and the run's end drops it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from unittest import mock

import pytest

from torchcontract.conformance import CHECKS, Target, check
from torchcontract.conformance._core import registry
from torchcontract.conformance._core.context import Context, SharedKey
from torchcontract.conformance.checks import _calling
from torchcontract.conformance.checks._calling import call_module
from torchcontract.protocols import CallableModule, MapDataset, Module

from ..conftest import HAS_TORCH, NO_TORCH_REASON
from .registered import CallCounter, registered_check

needs_torch = pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)

# The clauses that compare with m's output in eval mode, among the default ones of a module with a
# factory (their prerequisites included).
READERS = ("module.deepcopy_is_independent", "module.pickle_round_trip", "module.state_dict_round_trip")


def _linear_target() -> Target:
    import torch

    torch.manual_seed(0)
    return Target(
        torch.nn.Linear(3, 2),
        Module,
        name="linear",
        example_inputs=(torch.randn(4, 3),),
        factory=lambda: torch.nn.Linear(3, 2),
    )


@needs_torch
def test_a_run_computes_the_eval_output_once() -> None:
    with mock.patch(f"{_calling.__name__}.call_module", wraps=call_module) as computed:
        report = _linear_target().run()
    assert report.passed, report
    read = [r.check_id for r in report.results if r.check_id in READERS and r.status == "passed"]
    assert sorted(read) == sorted(READERS)
    assert computed.call_count == 1


@needs_torch
def test_outside_a_run_each_check_computes_its_own() -> None:
    target = _linear_target()  # a session refers to its target weakly
    session = target.session()
    with mock.patch(f"{_calling.__name__}.call_module", wraps=call_module) as computed:
        for check_id in READERS:
            assert session.result(check_id).status == "passed", session.result(check_id)
    # Each of the three clauses read it (deepcopy_is_independent once, as the others' prerequisite).
    assert computed.call_count == len(READERS)


@needs_torch
def test_the_callable_module_clauses_compare_with_the_shared_output() -> None:
    # call_matches_forward compares m.forward(*inputs) with it, accepts_non_contiguous_inputs the call
    # with non-contiguous inputs: one call of m each, and the shared output computed once in the run.
    import threading

    import torch

    calls: dict[str, int] = {}

    class Counting(torch.nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self is module:
                name = threading.current_thread().name.removeprefix("torchcontract:")
                calls[name] = calls.get(name, 0) + 1
            return super().forward(x)

    torch.manual_seed(0)
    module = Counting(3, 2)
    assert check(module, Module, example_inputs=(torch.randn(4, 3),)).passed
    readers = ("callable_module.call_matches_forward", "callable_module.accepts_non_contiguous_inputs")
    assert sum(calls.get(check_id, 0) for check_id in readers) == len(readers) + 1, calls


def test_a_per_run_key_lives_for_its_run_and_a_target_key_for_the_session() -> None:
    per_run: SharedKey[int] = SharedKey("per run", per_run=True)
    per_target: SharedKey[int] = SharedKey("per target")
    target = Target([1, 2, 3], MapDataset, name="list")
    session = target.session()
    spec = CHECKS["map_dataset.len_is_non_negative_int"]
    made: list[str] = []

    def compute(name: str) -> Callable[[], int]:
        def made_one() -> int:
            made.append(name)
            return len(made)

        return made_one

    with session.one_run():
        first = session.context(spec).shared(per_run, compute("run"))
        assert session.context(spec).shared(per_run, compute("run")) == first
        session.context(spec).shared(per_target, compute("target"))
    assert made == ["run", "target"]
    assert per_run not in session.shared
    assert per_target in session.shared
    session.context(spec).shared(per_run, compute("outside"))
    session.context(spec).shared(per_run, compute("outside"))
    assert made == ["run", "target", "outside", "outside"]


def test_work_that_raises_is_not_kept() -> None:
    key: SharedKey[int] = SharedKey("raises once", per_run=True)
    target = Target([1, 2, 3], MapDataset, name="list")
    session = target.session()
    spec = CHECKS["map_dataset.len_is_non_negative_int"]
    attempts: list[int] = []

    def compute() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("the first time")
        return 7

    with session.one_run():
        with pytest.raises(RuntimeError):
            session.context(spec).shared(key, compute)
        assert session.context(spec).shared(key, compute) == 7
    assert len(attempts) == 2


@needs_torch
def test_check_still_leaves_m_as_it_was() -> None:
    target = _linear_target()
    module: Any = target.obj
    before = {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
    assert check(target).passed
    after = module.state_dict()
    assert before.keys() == after.keys()
    assert all(bool((before[name] == after[name]).all()) for name in before)
    assert module.training


_CALLED: SharedKey[float] = SharedKey("m(1.0)", calls_object=True)


def _reader_registered(touches: registry.Touches, seen: list[int]) -> AbstractContextManager[str]:
    """A check that reads shared work calling the object, and records the object's call count after."""

    def reads_shared_call(ctx: Context) -> None:
        ctx.shared(_CALLED, lambda: ctx.call("m(1.0)", ctx.obj, 1.0))
        seen.append(ctx.obj.calls)

    return registered_check(
        "callable_module.reads_shared_call",
        reads_shared_call,
        rule="Reads shared work that calls the object.",
        touches=touches,
    )


def test_shared_work_that_calls_the_object_is_per_run() -> None:
    assert SharedKey("calls", calls_object=True).per_run


def test_a_check_declared_to_touch_copies_finds_the_object_put_back_after_shared_work_calls_it() -> None:
    # Within a run, the engine restores the object as soon as the shared work is computed: the check
    # goes on with the object as it was, as its declaration promises its own code does.
    seen: list[int] = []
    counter = CallCounter()
    with _reader_registered("copies", seen) as check_id:
        report = check(counter, CallableModule, example_inputs=(1.0,))
    assert next(r for r in report.results if r.check_id == check_id).status == "passed"
    assert seen == [0]
    assert counter.calls == 0


def test_a_check_that_may_change_the_object_is_restored_when_it_ends() -> None:
    # No restore of its own for the shared work: the check's end restores the object anyway.
    seen: list[int] = []
    counter = CallCounter()
    with _reader_registered("object", seen):
        check(counter, CallableModule, example_inputs=(1.0,))
    assert seen == [1]
    assert counter.calls == 0
