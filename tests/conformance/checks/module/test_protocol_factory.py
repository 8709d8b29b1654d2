"""``module.state_dict_round_trip`` with a ``factory`` under the dtype matrix (the fresh instance is
converted to each dtype, and a factory that builds the wrong state still fails in each), and
``module.export_matches_eager`` naming an output that is not a pytree: shapes found on timm,
torchvision, torchrl, lightly, pyro and peft models (thirdparty/), each on a small torch module
written here.
"""

from __future__ import annotations

from typing import Any

import pytest

from torchcontract.conformance import Report, check

from ....conftest import HAS_TORCH, NO_TORCH_REASON

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)

ROUND_TRIP = "module.state_dict_round_trip"
EXPORT = "module.export_matches_eager"

if HAS_TORCH:
    import torch
    from torch import nn

    from torchcontract.protocols import Module

    class Small(nn.Module):
        """Every model of thirdparty/ with a factory: float32 parameters, built by a plain call."""

        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(3, 2)

        def forward(self, x: Any) -> Any:
            return self.layer(x)

    class NormalHead(nn.Module):
        """A module that returns a distribution, as gpytorch's likelihoods do (a pyro Normal: no argument
        validation, so the trace gets as far as the output)."""

        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(3, 2)

        def forward(self, x: Any) -> Any:
            return torch.distributions.Normal(self.layer(x), torch.ones(2), validate_args=False)


def _inputs() -> tuple[Any, ...]:
    return (torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),)


def _results(report: Report, check_id: str) -> dict[str | None, Any]:
    return {result.dtype: result for result in report.results if result.check_id == check_id}


def _round_trips_in_both_dtypes(factory: Any) -> dict[str | None, Any]:
    """The state_dict round trip of ``factory()`` with factory= and a float32/float64 matrix, by dtype."""
    report = check(
        factory(), Module, example_inputs=_inputs(), factory=factory, dtypes=(torch.float32, torch.float64)
    )
    return _results(report, ROUND_TRIP)


def test_the_factorys_fresh_instance_is_converted_to_each_dtype_of_the_matrix() -> None:
    # timm.resnet10t, torchrl.MLP, peft's LoRA model, ...: factory= builds a float32 module, and in
    # float64 m is copy.deepcopy(m).to(torch.float64); loading m's float64 state dict into the
    # float32 fresh instance keeps it float32 (load_state_dict copies into the existing tensors), so
    # fresh(float64 inputs) raised a dtype mismatch: a false alarm in every dtype but float32.
    results = _round_trips_in_both_dtypes(Small)
    assert {dtype: result.status for dtype, result in results.items()} == {
        None: "passed",  # on the module as it is: module.builds_on_meta_device depends on it
        "float32": "passed",
        "float64": "passed",
    }, results


def test_a_factory_that_builds_the_wrong_state_still_fails_in_each_dtype() -> None:
    # The conversion must not hide what the clause is for: a fresh instance whose output depends on a
    # tensor the state dict does not hold.
    class Unsaved(Small):
        def __init__(self) -> None:
            super().__init__()
            self.offset = torch.randn(2)  # a plain tensor attribute: not in the state dict

        def forward(self, x: Any) -> Any:
            return self.layer(x) + self.offset.to(x.dtype)

    results = _round_trips_in_both_dtypes(Unsaved)
    assert {dtype: result.status for dtype, result in results.items()} == {
        None: "failed",
        "float32": "failed",
        "float64": "failed",
    }, results
    assert "differs from" in results["float64"].message


@pytest.mark.clause(EXPORT)
def test_an_output_that_is_not_a_pytree_is_named_as_the_cause_when_export_fails() -> None:
    # gpytorch.GaussianLikelihood returns a Normal distribution: torch.export refuses outputs that are
    # not pytrees of tensors, and the message pointed at data-dependent branches (torch.cond) instead.
    report = check(NormalHead(), Module, example_inputs=_inputs(), export=True)
    (result,) = _results(report, EXPORT).values()
    assert result.status == "failed", result
    assert "Normal" in result.message, result.message
    assert "pytree" in result.message, result.message
    assert "torch.cond" not in result.message, result.message
