"""Module contracts in depth: what PyTorch's own module harness checks.

Regression tests, each with a module of the shape the bug class needs, for
``module.backward_reaches_parameters`` (the ``unused_parameters`` declaration, frozen parameters,
outputs without a floating-point tensor, inputs that cannot drive a training step, complex outputs),
``module.to_dtype`` (integer buffers, outputs allocated float32) and
``callable_module.accepts_non_contiguous_inputs`` (inputs that cannot be made non-contiguous, odd
tensors, keyword arguments).
"""

from __future__ import annotations

from typing import Any

import pytest

from torchcontract.conformance import CHECKS, Report, check

from ....conftest import HAS_TORCH, NO_TORCH_REASON

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)

BACKWARD = "module.backward_reaches_parameters"
DTYPE = "module.to_dtype"
NON_CONTIGUOUS = "callable_module.accepts_non_contiguous_inputs"

if HAS_TORCH:
    import torch
    from torch import nn

    from torchcontract.protocols import CallableModule, Module

    from ...mutants.torch_mutants import AuxiliaryHeadNeverUsed

    class FrozenUnusedHead(AuxiliaryHeadNeverUsed):
        """The unused head is frozen: it asks for no gradient, so DDP does not wait for it."""

        def __init__(self) -> None:
            super().__init__()
            self.aux_head.requires_grad_(False)

    class Classifier(nn.Module):
        """Returns class indices only: no floating-point output to take a backward pass from."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x).argmax(dim=-1)

    class NoGradForward(nn.Linear):
        """Runs forward under no_grad: no parameter ever gets a gradient."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return super().forward(x)

    class ComplexOutput(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = super().forward(x)
            return torch.complex(y, 2 * y)

    class OutputAllocatedFloat32(nn.Linear):
        """Writes into an output allocated float32: m.double() still returns float32."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(x.shape[0], self.out_features)
            out[:] = super().forward(x)
            return out

    class StepCounter(nn.Linear):
        """An integer buffer, which .to(torch.float64) must leave int64."""

        def __init__(self) -> None:
            super().__init__(3, 2)
            self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    class KeywordMask(nn.Linear):
        def forward(self, x: torch.Tensor, *, mask: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * mask.view(-1)[: x.shape[0] * 2].view(x.shape[0], 2)


def _inputs(*shape: int) -> tuple[Any, ...]:
    return (torch.linspace(-1.0, 1.0, int(torch.tensor(shape).prod())).reshape(*shape),)


def _seeded(build: Any) -> Any:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build()


def _result(report: Report, check_id: str) -> Any:
    return next(r for r in report.results if r.check_id == check_id)


@pytest.mark.clause(NON_CONTIGUOUS, BACKWARD, DTYPE)
def test_severities_follow_the_convention() -> None:
    # A certain DDP error and silently untrained parameters; the other two bite in some uses only.
    assert CHECKS[BACKWARD].severity == "required"
    assert CHECKS[DTYPE].severity == "recommended"
    assert CHECKS[NON_CONTIGUOUS].severity == "recommended"


@pytest.mark.clause(BACKWARD)
def test_declared_unused_parameters_pass_with_a_note() -> None:
    report = check(
        _seeded(AuxiliaryHeadNeverUsed), Module, example_inputs=_inputs(4, 3), unused_parameters=True
    )
    result = _result(report, BACKWARD)
    assert result.status == "passed", report
    assert "aux_head.weight" in result.message, result
    assert "unused_parameters=True" in result.message, result


def test_unused_parameters_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="unused_parameters"):
        check(nn.Linear(3, 2), Module, example_inputs=_inputs(4, 3), unused_parameters="yes")


@pytest.mark.clause(BACKWARD)
def test_a_frozen_unused_parameter_is_fine() -> None:
    report = check(_seeded(FrozenUnusedHead), Module, example_inputs=_inputs(4, 3))
    assert _result(report, BACKWARD).status == "passed", report


@pytest.mark.clause(BACKWARD)
def test_an_output_without_floating_point_tensors_is_skipped() -> None:
    result = _result(check(_seeded(Classifier), Module, example_inputs=_inputs(4, 3)), BACKWARD)
    assert result.status == "skipped", result
    assert "no floating-point tensor" in result.message, result


@pytest.mark.clause(BACKWARD)
def test_a_forward_under_no_grad_names_every_parameter() -> None:
    report = check(_seeded(lambda: NoGradForward(3, 2)), Module, example_inputs=_inputs(4, 3))
    result = _result(report, BACKWARD)
    assert result.status == "failed", result
    assert "'weight', 'bias' (2 of 2 trainable parameters)" in result.message


@pytest.mark.clause(BACKWARD, "module.train_forward_runs")
def test_inputs_that_cannot_train_fail_train_mode_and_skip_backward() -> None:
    # BatchNorm in train mode rejects a batch of one sample: module.train_forward_runs reports it (naming
    # the eval_only declaration), and the backward clause, which needs that call, is skipped.
    build = _seeded(lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))
    report = check(build, Module, example_inputs=_inputs(1, 3))
    assert _result(report, "module.train_forward_runs").status == "failed", report
    result = _result(report, BACKWARD)
    assert result.status == "skipped", result
    assert "prerequisite module.train_forward_runs failed" in result.message, result
    declared = check(build, Module, example_inputs=_inputs(1, 3), eval_only=True)
    assert "eval_only=True" in _result(declared, BACKWARD).message, declared


@pytest.mark.clause(BACKWARD)
def test_gradients_the_module_already_holds_do_not_count_as_reached() -> None:
    # A model trained before its auxiliary head went unused keeps that head's old (zeroed) gradients,
    # as optimizer.zero_grad(set_to_none=False) leaves them: the copy's backward does not reach the head,
    # whatever m held.
    module = _seeded(AuxiliaryHeadNeverUsed)
    for parameter in module.parameters():
        parameter.grad = torch.zeros_like(parameter)
    result = _result(check(module, Module, example_inputs=_inputs(4, 3)), BACKWARD)
    assert result.status == "failed", result
    assert "'aux_head.weight', 'aux_head.bias'" in result.message, result
    assert all(p.grad is not None and not p.grad.any() for p in module.parameters())


@pytest.mark.clause(BACKWARD)
def test_a_complex_output_reaches_the_parameters() -> None:
    report = check(_seeded(lambda: ComplexOutput(3, 2)), Module, example_inputs=_inputs(4, 3))
    assert _result(report, BACKWARD).status == "passed", report


def test_the_check_leaves_no_gradient_on_the_module() -> None:
    module = _seeded(lambda: nn.Linear(3, 2))
    check(module, Module, example_inputs=_inputs(4, 3))
    assert all(p.grad is None for p in module.parameters())
    assert module.training


@pytest.mark.clause(DTYPE)
def test_an_output_allocated_float32_fails_to_dtype() -> None:
    report = check(_seeded(lambda: OutputAllocatedFloat32(3, 2)), Module, example_inputs=_inputs(4, 3))
    result = _result(report, DTYPE)
    assert result.status == "failed", report
    assert "output is torch.float32; expected float64" in result.message
    assert [r.check_id for r in report.results if r.status == "failed"] == [DTYPE], report


@pytest.mark.clause(DTYPE)
def test_integer_buffers_keep_their_dtype() -> None:
    report = check(_seeded(StepCounter), Module, example_inputs=_inputs(4, 3))
    assert _result(report, DTYPE).status == "passed", report
    module = _seeded(StepCounter)
    check(module, Module, example_inputs=_inputs(4, 3))
    assert module.weight.dtype == torch.float32, "the check converts a copy, not the module"


@pytest.mark.clause(DTYPE)
def test_a_module_without_float32_state_skips_to_dtype() -> None:
    result = _result(check(nn.ReLU(), Module, example_inputs=_inputs(4, 3)), DTYPE)
    assert result.status == "skipped", result


@pytest.mark.clause(NON_CONTIGUOUS)
def test_inputs_that_cannot_be_non_contiguous_skip() -> None:
    result = _result(check(nn.ReLU(), CallableModule, example_inputs=(torch.tensor(1.0),)), NON_CONTIGUOUS)
    assert result.status == "skipped", result
    assert "non-contiguous" in result.message, result


@pytest.mark.clause(NON_CONTIGUOUS)
def test_keyword_tensors_are_made_non_contiguous_too() -> None:
    report = check(_seeded(lambda: KeywordMask(3, 2)), CallableModule, example_inputs=_inputs(4, 3),
                   example_kwargs={"mask": torch.ones(4, 2)})  # fmt: skip
    result = _result(report, NON_CONTIGUOUS)
    assert result.status == "failed", report
    assert "kwargs['mask']" in result.message, result.message


@pytest.mark.clause(NON_CONTIGUOUS)
def test_one_dimensional_and_integer_inputs_are_made_non_contiguous() -> None:
    report = check(_seeded(lambda: nn.Embedding(10, 3)), Module, example_inputs=(torch.tensor([1, 2, 9]),))
    assert _result(report, NON_CONTIGUOUS).status == "passed", report


def test_the_callers_inputs_stay_contiguous() -> None:
    x = _inputs(4, 3)
    check(_seeded(lambda: nn.Linear(3, 2)), CallableModule, example_inputs=x)
    assert x[0].is_contiguous()
