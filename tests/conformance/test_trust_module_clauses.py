"""Regression tests: module clauses that failed correct modules, or passed broken ones.

Each module here is written for the test: a correct module that a clause used to fail, or one the clause
must still fail.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

import torch
from torch import nn

from torchcontract.conformance import Report, check
from torchcontract.protocols import Module


def _result(report: Report, check_id: str, dtype: str | None = None) -> tuple[str, str]:
    found = next(r for r in report.results if r.check_id == check_id and r.dtype == dtype)
    return found.status, found.message


def _inputs() -> tuple[torch.Tensor]:
    return (torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),)


# -- functional_call_matches_call: an output that holds one of the module's tensors ------------------


class ReturnsItsWeight(nn.Module):
    """Correct: returns its scaled input and its weight itself (the parameter object)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * self.weight, self.weight


class PlainLoc(nn.Module):
    """Correct: a distribution whose loc views the parameter's memory (``Normal`` broadcasts it)."""

    def __init__(self) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.loc, torch.ones(3))


@pytest.mark.parametrize("module", [ReturnsItsWeight, PlainLoc])
def test_an_output_holding_a_parameter_passes_functional_call_matches_call(module: type[nn.Module]) -> None:
    # Before: m's tensors were put back before the outputs were compared, and the output of m holding
    # the changed tensors held one of them: it followed the restore.
    report = check(module(), Module, example_inputs=_inputs())
    status, message = _result(report, "module.functional_call_matches_call")
    assert status == "passed", message
    assert report.passed, report


# -- a dtype matrix does not hide a failure of the module as it is ------------------------------------


class Float64BufferFloat32Inputs(nn.Module):
    """Broken as it is: a float64 buffer meets float32 inputs (``x @ mix`` raises); converted with
    ``.to(dtype)``, buffer and inputs agree in every dtype (torch's FractionalMaxPool2d with a float64
    ``_random_samples`` and float32 inputs behaves so)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mix", torch.eye(3, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.mix


def test_a_module_that_raises_as_it_is_fails_whatever_the_dtype_matrix() -> None:
    # Before: with dtypes=(float32, float64) the report passed: six clauses run once were skipped for
    # the failed prerequisite callable_module.call_returns (decided on the module as it is), whose
    # result the report did not show; its per-dtype results passed.
    inputs = _inputs()
    assert not check(Float64BufferFloat32Inputs(), Module, example_inputs=inputs).passed
    report = check(
        Float64BufferFloat32Inputs(), Module, example_inputs=inputs, dtypes=(torch.float32, torch.float64)
    )
    assert not report.passed, report
    status, message = _result(report, "callable_module.call_returns")
    assert status == "failed"
    assert message.startswith("m(*inputs) raised RuntimeError"), message
    for dtype in ("float32", "float64"):
        assert _result(report, "callable_module.call_returns", dtype)[0] == "passed"
    # Every clause skipped for a failed prerequisite names one the report shows as failed.
    labels = {result.label: result.status for result in report.results}
    for result in report.results:
        if result.status == "skipped" and result.message.startswith("not run: prerequisite "):
            prerequisite = result.message.removeprefix("not run: prerequisite ").split()[0]
            assert labels.get(prerequisite) == "failed", (result.label, prerequisite)
