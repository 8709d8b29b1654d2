"""Example inputs that are not graph leaves (``checks/_calling.py``, ``_values/convert.py``
``copy_of_inputs``): the result of an op on a tensor that requires grad, as torch's own module inputs
are made (``module_inputs_func(..., requires_grad=True)`` gives ``x.log_softmax(2)``). torch refuses to
deep-copy such a tensor, so every clause once ended in an internal error of torchcontract; each call
now gets a leaf copy with the same values and ``requires_grad``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

import torch
from torch import nn

from torchcontract.conformance import Target, check
from torchcontract.conformance._values.convert import copy_of_inputs
from torchcontract.protocols import Module


def _non_leaf(*shape: int) -> torch.Tensor:
    leaf = torch.randn(*shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    return leaf * 2  # grad_fn=MulBackward0: torch.Tensor.__deepcopy__ raises on it


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor, *, offsets: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(x) + offsets["bias"]


def _target(**options: object) -> Target:
    return Target(
        Scaled(),
        Module,
        name="scaled",
        example_inputs=(_non_leaf(4, 3),),
        example_kwargs={"offsets": {"bias": _non_leaf(4, 2)}},
        factory=Scaled,
        **options,  # type: ignore[arg-type]
    )


def test_a_module_called_with_non_leaf_inputs_passes_without_an_internal_error() -> None:
    report = check(_target())
    assert not [r for r in report.results if r.status in ("error", "failed")], report
    assert report.passed


def test_non_leaf_inputs_pass_the_dtype_matrix_and_gradcheck() -> None:
    report = check(_target(dtypes=(torch.float32, torch.float64), gradcheck=True))
    assert not [r for r in report.results if r.status in ("error", "failed")], report
    (gradcheck,) = [r for r in report.results if r.check_id == "module.gradients_match_finite_differences"]
    assert gradcheck.status == "passed", gradcheck


def test_the_copy_of_a_non_leaf_input_is_a_leaf_with_its_values_and_requires_grad() -> None:
    x = _non_leaf(3, 2)
    frozen = torch.zeros(2)
    inputs = (x, [x, frozen], {"x": x})
    copied = copy_of_inputs(inputs)
    assert copied[0] is not x
    assert copied[0].grad_fn is None
    assert copied[0].requires_grad
    assert torch.equal(copied[0], x)
    # one tensor reached twice stays one tensor, as copy.deepcopy keeps it
    assert copied[1][0] is copied[0]
    assert copied[2]["x"] is copied[0]
    assert copied[1][1] is not frozen
    assert torch.equal(copied[1][1], frozen)
    assert x.grad_fn is not None  # the original is left as it was
