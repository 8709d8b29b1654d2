"""Regression tests: module clauses that compare outputs, which failed correct modules or passed
broken ones: ``module.functional_call_matches_call`` on an output that holds a parameter, a module that
fails as it is under a dtype matrix, ``module.to_dtype`` over scores that tie in float32, and
``module.builds_on_meta_device`` with a factory that captures a tensor.

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


@pytest.mark.clause("module.functional_call_matches_call")
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


@pytest.mark.clause("callable_module.call_returns")
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


# -- module.to_dtype: outputs of discrete decisions over values that tie in float32 -------------------


def _boxes() -> torch.Tensor:
    """Eight candidate boxes whose first coordinate is a score logit of 20 to 27: the sigmoid of each
    is exactly 1.0 in float32 (a tie), and distinct in float64."""
    return torch.stack([torch.tensor([20.0 + i, i, i + 1.0, i + 2.0]) for i in range(8)])


class TopBoxes(nn.Module):
    """Correct: a detector's post-processing. Scores each candidate box, returns the boxes and scores
    of the ``k`` best (``top_k``), or every box ordered by score (``sort``)."""

    def __init__(self, select: str = "top_k", scale: float = 1.0) -> None:
        super().__init__()
        self.select = select
        self.score = nn.Linear(4, 1)
        with torch.no_grad():
            self.score.weight.copy_(torch.tensor([[scale, 0.0, 0.0, 0.0]]))
            self.score.bias.zero_()

    def scores(self, boxes: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.score(boxes)).squeeze(-1)

    def forward(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.scores(boxes)
        if self.select == "top_k":
            chosen = torch.topk(scores, k=3).indices
        else:
            chosen = torch.argsort(scores, descending=True)
        return boxes[chosen], scores[chosen]


@pytest.mark.clause("module.to_dtype")
@pytest.mark.parametrize("select", ["top_k", "sort"])
def test_a_top_k_or_sort_over_tied_scores_passes_to_dtype(select: str) -> None:
    # Before: float32 broke the tie by index, float64 by value: other boxes were chosen, and the
    # element-by-element comparison failed (torchvision's SSDlite with random weights did so).
    report = check(TopBoxes(select), Module, example_inputs=(_boxes(),))
    status, message = _result(report, "module.to_dtype")
    assert status == "passed", message
    assert "took different discrete decisions first" in message
    assert ("aten.topk" if select == "top_k" else "aten.sort") in message


class WrongInFloat64(TopBoxes):
    """Broken: the same post-processing, but in float64 the boxes come out shifted."""

    def forward(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        chosen, scores = super().forward(boxes)
        return (chosen + 1.0 if chosen.dtype == torch.float64 else chosen), scores


@pytest.mark.clause("module.to_dtype")
def test_a_module_wrong_in_float64_still_fails_when_its_decisions_agree() -> None:
    # Scores far from ties (scale 0.01): both runs choose the same boxes, so the values are compared.
    status, message = _result(
        check(WrongInFloat64(scale=0.01), Module, example_inputs=(_boxes(),)), "module.to_dtype"
    )
    assert status == "failed"
    assert "both runs took the same discrete decisions" in message


class KeepsScoresInFloat32(TopBoxes):
    """Broken: the scores come out float32 whatever the module's dtype."""

    def forward(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        chosen, scores = super().forward(boxes)
        return chosen, scores.float()


@pytest.mark.clause("module.to_dtype")
def test_an_output_left_in_float32_still_fails_over_tied_scores() -> None:
    status, message = _result(
        check(KeepsScoresInFloat32(), Module, example_inputs=(_boxes(),)), "module.to_dtype"
    )
    assert status == "failed"
    assert "output[1] is torch.float32; expected float64" in message


# -- builds_on_meta_device: a factory that captures a tensor ------------------------------------------

TABLE = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))


class Lookup(nn.Module):
    """Takes its table as an argument (a pretrained embedding, say)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.table.T


@pytest.mark.clause("module.builds_on_meta_device")
def test_a_factory_that_captures_a_tensor_is_named_as_the_likely_cause() -> None:
    # Before: the message named a tensor made with device= or from NumPy, not the most common cause:
    # a factory that captures an existing CPU tensor.
    module = Lookup(TABLE)
    report = check(module, Module, example_inputs=_inputs(), factory=lambda: Lookup(TABLE))
    status, message = _result(report, "module.builds_on_meta_device")
    assert status == "failed"
    assert "put 'table' on cpu" in message
    assert "captures a tensor that already exists" in message
    assert "built's 'table' shares memory with m's 'table'" in message
