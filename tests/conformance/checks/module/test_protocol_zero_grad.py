"""Module checks on a quantized-weight module (found on torchao's ``Int8WeightOnlyConfig``).

A quantized weight is a tensor subclass whose class implements only the operators inference needs:
``torch.ones_like`` on it raises ``NotImplementedError``. ``module.zero_grad_clears_gradients`` gave
every parameter a gradient of ones with ``ones_like`` outside ``ctx.attempt``, so the module got an
internal error instead of a verdict; such a parameter is now left out, as an integer one is.
"""

from __future__ import annotations

from typing import Any

import pytest

from torchcontract.conformance import check

from ....conftest import HAS_TORCH, NO_TORCH_REASON

pytestmark = [
    pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON),
    pytest.mark.clause("module.zero_grad_clears_gradients"),
]

if HAS_TORCH:
    import torch
    from torch import nn

    from torchcontract.protocols import Module

    class InferenceOnlyWeight(torch.Tensor):
        """A weight whose class implements no ``ones_like``, as torchao's ``Int8Tensor``."""

        @classmethod
        def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if func is torch.ones_like:
                raise NotImplementedError(f"{cls.__name__} dispatch: unimplemented aten.ones_like")
            return super().__torch_function__(func, types, args, kwargs or {})

        def __deepcopy__(self, memo: dict[int, Any]) -> InferenceOnlyWeight:
            copied = self.as_subclass(torch.Tensor).clone().as_subclass(type(self))
            copied.requires_grad_(self.requires_grad)
            memo[id(self)] = copied
            return copied

    class QuantizedLinear(nn.Module):
        """A linear layer with a frozen weight of that class and a trainable bias."""

        def __init__(self) -> None:
            super().__init__()
            weight = torch.arange(6.0).reshape(2, 3) / 6
            self.weight = nn.Parameter(weight.as_subclass(InferenceOnlyWeight), requires_grad=False)
            self.bias = nn.Parameter(torch.zeros(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.linear(x, self.weight.as_subclass(torch.Tensor), self.bias)


def test_a_weight_without_ones_like_is_left_out_of_zero_grad() -> None:
    module = QuantizedLinear()
    assert isinstance(module.weight, InferenceOnlyWeight)
    with pytest.raises(NotImplementedError):
        torch.ones_like(module.weight)
    inputs = (torch.ones(4, 3),)
    report = check(module, Module, example_inputs=inputs)
    result = next(r for r in report.results if r.check_id == "module.zero_grad_clears_gradients")
    assert result.status == "passed", result.message
    # (Its state dict fails module.state_dict_round_trip, rightly: torch.load(weights_only=True)
    # refuses an unregistered tensor class; torchao registers its own with add_safe_globals.)
    assert not [r for r in report.results if r.status == "error"], str(report)
