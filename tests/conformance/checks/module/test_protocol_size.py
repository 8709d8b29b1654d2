"""Module checks whose own work grows with the module once, not once per parameter.

A torchvision ``efficientnet_v2_l`` has 897 parameter tensors: ``module.deepcopy_is_independent``
rebuilt ``dict(m.named_parameters())`` for each of them (a walk of the whole module tree per parameter)
and held three copies of m's parameters, so a large model in train mode ran past the 30 s budget on a
loaded machine (an internal error) or ran out of memory. Measured here by what the check does with a
module of many parameters, never by a clock.
"""

from __future__ import annotations

from typing import Any

import pytest

from torchcontract.conformance import Target

from ....conftest import HAS_TORCH, NO_TORCH_REASON

pytestmark = [
    pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON),
    pytest.mark.clause("module.deepcopy_is_independent"),
]

DEEPCOPY = "module.deepcopy_is_independent"

if HAS_TORCH:
    import torch
    from torch import nn

    from torchcontract.protocols import Module

    WALKS: list[str] = []

    class Wide(nn.Module):
        """``width`` parameter tensors; counts the walks of its parameters (a class-level list: the
        deep copies the check makes count too)."""

        def __init__(self, width: int) -> None:
            super().__init__()
            self.weights = nn.ParameterList(nn.Parameter(torch.full((3,), float(i))) for i in range(width))

        def named_parameters(self, *args: Any, **kwargs: Any) -> Any:
            WALKS.append(type(self).__name__)
            return super().named_parameters(*args, **kwargs)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * sum(w.sum() for w in self.weights)


def _deepcopy_check(width: int, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int, int]:
    """(status, walks of named_parameters, Tensor.clone calls) of module.deepcopy_is_independent on
    Wide(width). The clones are counted on the class (the check runs in a thread of its own)."""
    target = Target(Wide(width), Module, example_inputs=(torch.ones(2, 3),))
    session = target.session()
    session.result("callable_module.eval_is_deterministic")  # its prerequisites, before the count
    WALKS.clear()
    clones: list[int] = []
    original = torch.Tensor.clone

    def counting_clone(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        clones.append(self.numel())
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "clone", counting_clone)
        result = session.result(DEEPCOPY)
    return result.status, len(WALKS), len(clones)


def test_deepcopy_walks_the_parameters_a_constant_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    small = _deepcopy_check(8, monkeypatch)
    large = _deepcopy_check(64, monkeypatch)
    assert small[0] == large[0] == "passed"
    assert large[1] == small[1], f"named_parameters walked {small[1]} times for 8, {large[1]} for 64"


def test_deepcopy_holds_one_snapshot_of_the_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    status, _, clones = _deepcopy_check(64, monkeypatch)
    assert status == "passed"
    # One clone per parameter each for the deep copy (Parameter.__deepcopy__), the state @preserving
    # puts back afterwards, and the check's own snapshot; no more.
    assert clones <= 3 * 64 + 8, f"{clones} clones for 64 parameters: expected three per parameter"


def test_a_copy_that_shares_a_parameter_still_fails() -> None:
    class Shares(Wide):
        def __deepcopy__(self, memo: dict[int, Any]) -> Shares:
            copied = Shares(0)
            copied.weights = self.weights  # the same ParameterList: shared parameters
            return copied

    module = Shares(4)
    before = [w.detach().clone() for w in module.weights]
    target = Target(module, Module, example_inputs=(torch.ones(2, 3),))
    result = target.session().result(DEEPCOPY)
    assert result.status == "failed", result.message
    assert "changed m's parameter too" in result.message
    assert all(torch.equal(w, b) for w, b in zip(module.weights, before, strict=True)), (
        "m's values not put back"
    )
