"""Keyword arguments of a module's call (``example_kwargs=``, ``checks/_calling.py``): a module with
keyword-only arguments is called with them in every clause, and they reach the messages and the
input-preservation clause; the option is validated. Each module here is written for the test.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

import torch
from torch import nn

from torchcontract.conformance import Report, Target, check
from torchcontract.protocols import CallableModule, MapDataset, Module


def _result(report: Report, check_id: str) -> tuple[str, str]:
    found = next(r for r in report.results if r.check_id == check_id)
    return found.status, found.message


def _failed(report: Report) -> list[str]:
    return [r.check_id for r in report.results if r.status == "failed"]


def _inputs() -> tuple[torch.Tensor]:
    return (torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),)


class ScaledLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor, *, scale: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x) * scale
        return out


class ScalesKeywordInPlace(ScaledLinear):
    def forward(self, x: torch.Tensor, *, scale: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x) * scale.mul_(2)
        return out


def test_a_module_with_keyword_only_arguments_is_checked_with_example_kwargs() -> None:
    kwargs = {"scale": torch.tensor(2.0)}
    assert "callable_module.call_returns" in _failed(check(ScaledLinear(), Module, example_inputs=_inputs()))
    report = check(ScaledLinear(), Module, example_inputs=_inputs(), example_kwargs=kwargs)
    assert _failed(report) == []
    target = Target(ScaledLinear(), CallableModule, example_inputs=_inputs(), example_kwargs=kwargs)
    assert target.run().passed
    assert torch.equal(kwargs["scale"], torch.tensor(2.0))


@pytest.mark.clause("callable_module.call_preserves_inputs")
def test_example_kwargs_reach_the_messages_and_the_input_check() -> None:
    report = check(
        ScalesKeywordInPlace(), Module, example_inputs=_inputs(), example_kwargs={"scale": torch.tensor(2.0)}
    )
    assert "callable_module.call_preserves_inputs" in _failed(report)
    message = _result(report, "callable_module.call_preserves_inputs")[1]
    assert "copy.deepcopy(m)(*inputs, **kwargs)" in message


@pytest.mark.parametrize("bad", [[("scale", 1)], {1: 2}, "scale"])
def test_example_kwargs_must_be_a_mapping_with_str_keys(bad: Any) -> None:
    with pytest.raises(TypeError, match="example_kwargs"):
        Target(ScaledLinear(), Module, example_inputs=_inputs(), example_kwargs=bad)


def test_example_kwargs_are_for_modules_only() -> None:
    with pytest.raises(TypeError, match="example_kwargs"):
        check([1, 2], MapDataset, example_kwargs={"a": 1})
