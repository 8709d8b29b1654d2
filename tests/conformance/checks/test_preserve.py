"""Regression tests: restoring an object after a check leaves it as it was, in what its ``__dict__`` does
not hold (its class, a tensor's class and memory), never takes apart what it shares with other threads,
and every call into the object made while restoring is the object's (its exception or hang names it).

Each object here is written for the test.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

import torch
from torch import nn

from torchcontract.conformance import Report, check
from torchcontract.conformance.checks._preserve import Restorer
from torchcontract.protocols import CallableModule, MapDataset, Module


def _result(report: Report, check_id: str) -> tuple[str, str]:
    found = next(r for r in report.results if r.check_id == check_id)
    return found.status, found.message


def _inputs() -> tuple[torch.Tensor]:
    return (torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),)


# -- a lazy module comes back lazy ------------------------------------------------------------------


def _classes(module: nn.Module) -> list[type]:
    return [type(value) for value in (*module.modules(), *module.parameters(), *module.buffers())]


def test_a_lazy_module_passes_and_is_still_lazy_and_runs_after_check() -> None:
    # Before: the first call turned LazyLinear into Linear and materialised its parameters; the restore
    # put the lazy attributes back on a Linear, three clauses failed with AttributeError
    # ('initialize_parameters'), and the model no longer ran after check().
    torch.manual_seed(0)
    model = nn.Sequential(nn.LazyLinear(5), nn.ReLU(), nn.LazyLinear(2))
    before = _classes(model)
    report = check(model, Module, example_inputs=_inputs())
    assert report.passed, report
    assert _classes(model) == before
    assert all(isinstance(p, nn.UninitializedParameter) for p in model.parameters())
    output = model(*_inputs())
    assert output.shape == (4, 2)
    assert [type(sub) for sub in model] == [nn.Linear, nn.ReLU, nn.Linear]


def test_a_lazy_module_passes_in_every_dtype_of_a_matrix() -> None:
    model = nn.Sequential(nn.LazyLinear(5), nn.LazyBatchNorm1d())
    before = _classes(model)
    report = check(model, Module, example_inputs=_inputs(), dtypes=(torch.float32, torch.float64))
    assert report.passed, report
    assert _classes(model) == before


class _Holder:
    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class _Before:
    pass


class _After:
    pass


def test_an_object_whose_class_changed_gets_its_class_back() -> None:
    value = _Before()
    restorer = Restorer(_Holder(value))  # type: ignore[arg-type]
    value.__class__ = _After
    restorer.restore()
    assert type(value) is _Before


def test_a_tensor_whose_data_was_replaced_by_another_shape_views_its_memory_again() -> None:
    parameter = nn.Parameter(torch.zeros(3))
    memory = parameter.data_ptr()
    restorer = Restorer(_Holder(parameter))
    parameter.data = torch.ones(5, 2)
    restorer.restore()
    assert parameter.shape == (3,)
    assert parameter.data_ptr() == memory
    assert torch.equal(parameter.detach(), torch.zeros(3))
    assert not restorer.problems


def test_a_materialised_parameter_becomes_uninitialised_again() -> None:
    parameter = nn.UninitializedParameter()
    restorer = Restorer(_Holder(parameter))  # type: ignore[arg-type]
    parameter.materialize((4, 3))
    assert type(parameter) is nn.Parameter
    restorer.restore()
    assert type(parameter) is nn.UninitializedParameter
    assert not restorer.problems


def test_requires_grad_and_the_gradient_of_a_leaf_are_put_back() -> None:
    parameter = nn.Parameter(torch.zeros(3))
    restorer = Restorer(_Holder(parameter))
    parameter.grad = torch.ones(3)
    parameter.requires_grad_(False)
    restorer.restore()
    assert parameter.requires_grad
    assert parameter.grad is None


def test_a_gradient_accumulated_in_place_is_put_back() -> None:
    parameter = nn.Parameter(torch.zeros(3))
    parameter.grad = gradient = torch.ones(3)
    restorer = Restorer(_Holder(parameter))
    gradient.add_(1.0)
    restorer.restore()
    assert parameter.grad is gradient
    assert torch.equal(gradient, torch.ones(3))


# -- what an object shares with other threads is restored by identity only ---------------------------


class ThreadServedDataset:
    """Correct: a background thread computes the samples. ``ds[i]`` puts the index in a queue of
    requests and waits on a condition until the thread has answered. A forked worker process starts a
    thread of its own (the parent's is not copied by fork); a pickled copy starts one when loaded."""

    def __init__(self, length: int = 6) -> None:
        self.length = length
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._requests: queue.Queue[int | None] = queue.Queue()
        self._answers: dict[int, np.ndarray[Any, Any]] = {}
        self._answered = threading.Condition()
        self._server = threading.Thread(target=self._serve, daemon=True)
        self._server.start()

    def _serve(self) -> None:
        while True:
            index = self._requests.get()
            if index is None:
                return
            with self._answered:
                self._answers[index] = np.full(3, float(index))
                self._answered.notify_all()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> np.ndarray[Any, Any]:
        if not -self.length <= index < self.length:
            raise IndexError(index)
        index %= self.length
        if self._pid != os.getpid():
            self._start()
        with self._answered:
            self._requests.put(index)
            self._answered.wait_for(lambda: index in self._answers)
            return self._answers.pop(index)

    def close(self) -> None:
        self._requests.put(None)

    def __getstate__(self) -> dict[str, Any]:
        return {"length": self.length}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.length = state["length"]
        self._start()


def test_a_dataset_served_by_a_background_thread_passes_without_hanging() -> None:
    # Before: the restore after each check put back the waiters of the queue's condition (and the
    # requests in its deque): the server thread, waiting on it, was never woken again, and
    # map_dataset.getitem_is_deterministic hung.
    ds = ThreadServedDataset()
    try:
        queue_before, condition_before = ds._requests, ds._answered
        report = check(ds, MapDataset, time_budget_s=10)
        assert report.passed, report
        assert ds._requests is queue_before
        assert ds._answered is condition_before
        assert np.array_equal(ds[2], np.full(3, 2.0))
        assert np.array_equal(ds[2], np.full(3, 2.0))
    finally:
        ds.close()


def test_queues_conditions_and_events_are_restored_by_identity_and_never_taken_apart() -> None:
    class Shared:
        def __init__(self) -> None:
            self.requests: queue.Queue[int] = queue.Queue()
            self.ready = threading.Condition()
            self.stop = threading.Event()
            self.cache: dict[int, int] = {}

    shared = Shared()
    shared.requests.put(1)
    requests, ready = shared.requests, shared.ready
    restorer = Restorer(shared)
    shared.requests.put(2)  # what other threads do to a queue meanwhile stays done
    shared.stop.set()
    shared.cache[0] = 0
    shared.requests = queue.Queue()
    restorer.restore()
    assert shared.requests is requests
    assert shared.ready is ready
    assert shared.requests.qsize() == 2
    assert shared.stop.is_set()
    assert shared.cache == {}


# -- calls into the object while restoring are the object's ------------------------------------------


class TrainRaises(nn.Module):
    """An inference-only module: ``train()`` raises (it was built in train mode, so putting it back
    after a check's eval-mode calls raises)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def train(self, mode: bool = True) -> TrainRaises:
        if mode:
            raise RuntimeError("this module is inference-only")
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x)
        return out


def test_an_exception_of_train_while_restoring_the_mode_is_the_modules_failure_naming_the_call() -> None:
    # Before: an internal error of torchcontract (restore_mode called m.train() outside an object call).
    report = check(TrainRaises(), CallableModule, example_inputs=_inputs())
    status, message = _result(report, "callable_module.call_returns")
    assert status == "failed", report
    assert "m.train() (putting m back in train mode) raised RuntimeError" in message
    assert not [r for r in report.results if r.status == "error"], report


class EvalHangs(nn.Module):
    """``eval()`` waits for an event that only the test sets (a module that hangs in eval())."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release
        self.linear = nn.Linear(3, 2)

    def train(self, mode: bool = True) -> EvalHangs:
        if not mode:
            self.release.wait()
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x)
        return out


def test_a_hang_in_eval_names_the_call() -> None:
    # Before: "internal error of torchcontract ... the last one that returned: None".
    release = threading.Event()
    try:
        report = check(EvalHangs(release), CallableModule, example_inputs=_inputs(), time_budget_s=1)
    finally:
        release.set()
    status, message = _result(report, "callable_module.call_returns")
    assert status == "failed", report
    assert message.startswith("m.eval() did not return within the time budget"), message
    assert not [r for r in report.results if r.status == "error"], report


class ScalesInputInPlaceInTraining(nn.Module):
    """Writes into its input in train mode only (the mode the module is in)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            x.mul_(2.0)
        return x.sum(dim=-1)


@pytest.mark.clause("callable_module.call_preserves_inputs")
def test_call_preserves_inputs_names_the_call_on_the_copy() -> None:
    # Before: "m(*inputs) modified its inputs", while the call was copy.deepcopy(m)(*inputs).
    report = check(ScalesInputInPlaceInTraining(), CallableModule, example_inputs=_inputs())
    status, message = _result(report, "callable_module.call_preserves_inputs")
    assert status == "failed"
    assert message.startswith("copy.deepcopy(m)(*inputs) modified its inputs"), message
    assert "reproduce: before = copy.deepcopy(inputs); copy.deepcopy(m)(*inputs); inputs == before" in message


def test_a_lazy_module_with_inputs_it_cannot_take_fails_call_returns_only() -> None:
    model = nn.Sequential(nn.LazyLinear(5), nn.Linear(4, 2))  # LazyLinear(5) feeds 5 features to a Linear(4)
    report = check(model, Module, example_inputs=_inputs())
    failed = [r.check_id for r in report.results if r.status in ("failed", "error")]
    assert failed == ["callable_module.call_returns"], report
    assert _classes(model)[1] is nn.LazyLinear
