"""``callable_module.call_matches_forward`` beside forward hooks and pre-hooks, which torch's
``Module._call_impl`` runs around ``forward`` by design: a hook that replaces the output or the
inputs passes, a ``__call__`` that post-processes still fails; ``call_runs_forward_once`` counts the
instance's forward wrapper and both hooks in one call. Each module here is written for the test."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

import torch
from torch import nn

from torchcontract.conformance import Report, check
from torchcontract.protocols import CallableModule

pytestmark = pytest.mark.clause("callable_module.call_matches_forward")


def _result(report: Report, check_id: str, dtype: str | None = None) -> tuple[str, str]:
    found = next(r for r in report.results if r.check_id == check_id and r.dtype == dtype)
    return found.status, found.message


def _inputs() -> tuple[torch.Tensor]:
    return (torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),)


# -- call_matches_forward: forward hooks and pre-hooks, which torch runs around forward by design -----


def _linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def test_a_forward_hook_that_replaces_the_output_passes_call_matches_forward() -> None:
    # Before: m(*inputs) (the hook's value) was compared with m.forward(*inputs): a required failure of a
    # module that torch's Module._call_impl runs exactly as designed.
    module = _linear()
    module.register_forward_hook(lambda _module, _args, output: output * 2)
    report = check(module, CallableModule, example_inputs=_inputs())
    status, message = _result(report, "callable_module.call_matches_forward")
    assert status == "passed", message
    assert "1 forward hook replace the output of forward" in message
    assert report.passed, report


def test_a_forward_pre_hook_that_replaces_the_inputs_passes_call_matches_forward() -> None:
    module = _linear()
    module.register_forward_pre_hook(lambda _module, args: (args[0] + 1.0,))
    status, message = _result(
        check(module, CallableModule, example_inputs=_inputs()), "callable_module.call_matches_forward"
    )
    assert status == "passed", message


class PostProcessesWithAHook(nn.Linear):
    """Broken: ``__call__`` post-processes what the module's call (and its hooks) return."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return torch.softmax(super().__call__(*args, **kwargs), dim=-1)


def test_a_call_that_post_processes_still_fails_beside_a_hook() -> None:
    torch.manual_seed(0)
    module = PostProcessesWithAHook(3, 2)
    module.register_forward_hook(lambda _module, _args, _output: None)  # an observer
    status, message = _result(
        check(module, CallableModule, example_inputs=_inputs()), "callable_module.call_matches_forward"
    )
    assert status == "failed"
    assert "differs from what m's last forward hook gave" in message


class ForwardIgnoresTheCall(nn.Linear):
    """Broken: ``forward`` computes something else when called outside ``__call__``."""

    inside = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = super().forward(x)
        return out if self.inside else out + 1.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.inside = True
        try:
            return super().__call__(*args, **kwargs)
        finally:
            self.inside = False


def test_forward_is_still_compared_with_what_the_hooks_received() -> None:
    torch.manual_seed(0)
    module = ForwardIgnoresTheCall(3, 2)
    module.register_forward_hook(lambda _module, _args, output: output * 2)
    status, message = _result(
        check(module, CallableModule, example_inputs=_inputs()), "callable_module.call_matches_forward"
    )
    assert status == "failed"
    assert "differs from the output forward gave inside m(*inputs)" in message


# -- call_runs_forward_once counts the wrapper and both hooks in one call --------------------------------


@pytest.mark.clause("callable_module.call_runs_forward_once")
def test_the_wrapper_and_the_hooks_are_counted_in_one_call() -> None:
    import threading

    calls: list[str] = []

    class Counting(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(threading.current_thread().name)
            return super().forward(x)

    torch.manual_seed(0)
    report = check(Counting(3, 2), CallableModule, example_inputs=(torch.randn(4, 3),))
    assert report.passed, str(report)
    assert calls.count("torchcontract:callable_module.call_runs_forward_once") == 1, calls


@pytest.mark.clause("callable_module.call_runs_forward_once")
def test_hooks_that_run_twice_fail_beside_a_wrapper_that_runs_once() -> None:
    class HooksTwice(nn.Linear):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            for hook in self._forward_pre_hooks.values():
                hook(self, args)
            return super().__call__(*args, **kwargs)

    torch.manual_seed(0)
    report = check(HooksTwice(3, 2), CallableModule, example_inputs=(torch.randn(4, 3),))
    result = next(r for r in report.results if r.check_id == "callable_module.call_runs_forward_once")
    assert result.status == "failed", result
    assert result.message.startswith("with a forward pre-hook registered on m, m(*inputs) ran it 2 times"), (
        result.message
    )


@pytest.mark.clause("callable_module.call_runs_forward_once")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")  # deprecated, still supported
def test_a_traced_module_passes_and_is_left_without_the_wrapper() -> None:
    # torch.jit.trace's TracedModule.__setattr__ hands m.forward = wrapper to its script module and has
    # no __delattr__ to match: the wrapper is not in m.__dict__, so it is not deleted from there (before,
    # the put-back raised AttributeError and failed the clause); the engine's restore removes it.
    torch.manual_seed(0)
    x = torch.randn(5, 4)
    traced = torch.jit.trace(nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval(), (x,))
    expected = traced(x)
    held = vars(traced._actual_script_module).get("forward")  # what the script module holds, if anything
    report = check(traced, CallableModule, example_inputs=(x,))
    result = next(r for r in report.results if r.check_id == "callable_module.call_runs_forward_once")
    assert result.status == "passed", result
    assert vars(traced._actual_script_module).get("forward") is held
    assert torch.equal(traced(x), expected)
