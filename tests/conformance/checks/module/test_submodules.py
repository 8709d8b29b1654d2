"""module.submodule_hooks_run: a submodule whose forward runs behind its hooks' back (called as
``self.fc.forward(x)``, or by a ``__call__`` that skips them) fails, named by its path; weight sharing,
unused submodules and submodules whose parameters are read without calling them pass."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from torchcontract.conformance import Report, Target
from torchcontract.protocols import Module

from ....conftest import HAS_TORCH, NO_TORCH_REASON

pytestmark = pytest.mark.clause("module.submodule_hooks_run")

HOOKS = "module.submodule_hooks_run"

if HAS_TORCH:
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, direct: bool) -> None:
            super().__init__()
            self.fc, self.direct = nn.Linear(3, 3), direct

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.fc.forward(x) if self.direct else self.fc(x))

    class Net(nn.Module):
        def __init__(self, direct: bool = False) -> None:
            super().__init__()
            self.block, self.out = Block(direct), nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.block(x))

    class SharedBlockTwice(nn.Module):
        """One block applied twice (weight sharing across depth)."""

        def __init__(self) -> None:
            super().__init__()
            self.block, self.unused = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(torch.relu(self.block(x)))

    class CallSkipsHooks(nn.Linear):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return self.forward(*args, **kwargs)

    class WithHookSkippingLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = CallSkipsHooks(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    class ScaledLinear(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2.0 * super().forward(x)  # the class's forward: not a bypass

    class WithScaledLinear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = ScaledLinear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)


needs_torch = pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)


def _run(module: Any, inputs: tuple[Any, ...]) -> Any:
    report: Report = Target(module, Module, example_inputs=inputs).run(
        "cpu", 30.0, select=lambda c: c.check_id == HOOKS
    )
    return next(r for r in report.results if r.check_id == HOOKS)


def _x() -> tuple[Any, ...]:
    return (torch.linspace(-1.0, 1.0, 12).reshape(4, 3),)


@needs_torch
def test_a_nested_submodule_called_through_forward_fails_by_its_path() -> None:
    result = _run(Net(direct=True), _x())
    assert result.status == "failed", result
    assert "submodule 'block.fc' ran forward 1 time(s), but its forward pre-hook ran 0" in result.message
    assert "self.fc(x)" in result.message


@needs_torch
def test_a_call_override_that_skips_hooks_fails() -> None:
    result = _run(WithHookSkippingLayer(), _x())
    assert result.status == "failed", result
    assert "'fc'" in result.message


@needs_torch
@pytest.mark.parametrize(
    "build",
    [
        lambda: Net(direct=False),
        lambda: SharedBlockTwice(),  # called twice: forward and hooks twice
        lambda: WithScaledLinear(),  # super().forward inside the submodule's own forward
    ],
)
def test_submodules_called_through_call_pass(build: Any) -> None:
    assert _run(build(), _x()).status == "passed"


@needs_torch
def test_multihead_attention_reads_out_proj_without_calling_it() -> None:
    # F.multi_head_attention_forward uses out_proj's weights directly: its forward never runs, and
    # neither do its hooks, which is no bypass.
    x = torch.linspace(-1.0, 1.0, 24).reshape(2, 3, 4)
    assert _run(nn.MultiheadAttention(4, 2, batch_first=True), (x, x, x)).status == "passed"


@needs_torch
def test_the_user_module_keeps_no_wrapper_and_no_hook() -> None:
    module = Net(direct=True)
    _run(module, _x())
    for _, sub in module.named_modules():
        assert "forward" not in vars(sub)
        assert not sub._forward_hooks
        assert not sub._forward_pre_hooks


def test_a_reference_module_calling_a_layer_directly_fails() -> None:
    from ...mutants.module import CallsLayerForward

    result = _run(CallsLayerForward(), (np.linspace(-1.0, 1.0, 12).reshape(4, 3),))
    assert result.status == "failed", result
    assert "'fc1'" in result.message


def test_a_module_without_hook_registration_is_skipped() -> None:
    from ...correct import MLP, mlp_inputs

    result = _run(MLP(), mlp_inputs())
    assert result.status == "skipped", result
