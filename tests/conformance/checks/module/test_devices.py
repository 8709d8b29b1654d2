"""Module and CallableModule checks true to torch (SPEC.md, "CallableModule" and "Module").

Regression tests, each with a module of the shape the bug class needs: the meta-device probe of
``module.to_device``, the ``torch.save``/``weights_only=True`` hop and the ``factory`` option of
``module.state_dict_round_trip``, the hook counts of ``callable_module.call_runs_forward_once``, the
``parity_tolerance`` option and the severities the SPEC's convention gives.
"""

from __future__ import annotations

from typing import Any

import pytest

from torchcontract.conformance import CHECKS, Report, Target, check
from torchcontract.conformance._values import close_difference

from ....conftest import HAS_TORCH, NO_TORCH_REASON

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)

if HAS_TORCH:
    import torch
    from torch import nn

    from torchcontract.protocols import CallableModule, Module

    class ZeroDimScale(nn.Module):
        """A 0-dim CPU tensor attribute: torch lets it mix with tensors on any device."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 2)
            self.scale = torch.tensor(2.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) * self.scale

    class NoMetaKernel(nn.Module):
        """Runs on every real device, but not on meta (a data-dependent shape: nonzero)."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) + x.nonzero().shape[0]

    class Rotary(nn.Module):
        """Frequencies rebuilt at construction in a non-persistent buffer (as HF's rotary embeddings)."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 3)
            self.register_buffer("freq", torch.arange(3.0), persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cos(self.linear(x) * self.freq)

    class HookCounting(nn.Linear):
        """A module that registers its own hook: the check's hooks come and go beside it."""

        def __init__(self) -> None:
            super().__init__(3, 2)
            self.seen = 0
            self.register_forward_pre_hook(HookCounting._count)

        @staticmethod
        def _count(module: Any, args: Any) -> None:
            module.seen += 1


def _inputs() -> tuple[Any, ...]:
    return (torch.linspace(-1.0, 1.0, 12).reshape(4, 3),)


def _status(report: Report, check_id: str) -> tuple[str, str]:
    result = next(r for r in report.results if r.check_id == check_id)
    return result.status, result.message


@pytest.mark.clause("module.to_device")
def test_zero_dim_cpu_tensor_attribute_passes_the_meta_probe() -> None:
    status, message = _status(check(ZeroDimScale(), Module, example_inputs=_inputs()), "module.to_device")
    assert status == "passed", message


@pytest.mark.clause("module.to_device")
def test_a_module_without_meta_kernels_is_skipped_with_the_reason() -> None:
    status, message = _status(check(NoMetaKernel(), Module, example_inputs=_inputs()), "module.to_device")
    assert status == "skipped", message
    assert "cannot run on the meta device" in message, message
    assert "nonzero" in message, message


@pytest.mark.clause("module.to_device")
def test_the_meta_probe_moves_keyword_arguments_too() -> None:
    class Shifted(nn.Linear):
        def forward(self, x: torch.Tensor, *, shift: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + shift

    report = check(Shifted(3, 2), Module, example_inputs=_inputs(), example_kwargs={"shift": torch.ones(2)})
    assert _status(report, "module.to_device")[0] == "passed", report


@pytest.mark.clause("module.state_dict_round_trip")
def test_a_rebuilt_non_persistent_buffer_is_not_mistaken_for_lost_state() -> None:
    # register_buffer(persistent=False) declares the tensor rebuilt at construction: without a factory
    # it is not changed on the copy (a correct rotary embedding must not fail), and with one the fresh
    # instance has it.
    report = check(Rotary(), Module, example_inputs=_inputs())
    assert _status(report, "module.state_dict_round_trip")[0] == "passed", report
    report = check(Rotary(), Module, example_inputs=_inputs(), factory=Rotary)
    assert report.passed, report


@pytest.mark.clause("module.state_dict_round_trip")
def test_numpy_modules_skip_the_torch_save_hop() -> None:
    from ...correct import MLP, mlp_inputs

    report = check(MLP(), Module, example_inputs=mlp_inputs())
    assert _status(report, "module.state_dict_round_trip")[0] == "passed", report


@pytest.mark.clause("callable_module.call_runs_forward_once")
def test_the_check_removes_its_hooks_and_keeps_the_module_own() -> None:
    module = HookCounting()
    report = check(module, CallableModule, example_inputs=_inputs())
    assert _status(report, "callable_module.call_runs_forward_once")[0] == "passed", report
    assert len(module._forward_pre_hooks) == 1
    assert not module._forward_hooks


def test_options_factory_and_parity_tolerance_are_validated() -> None:
    with pytest.raises(TypeError, match="factory must be a zero-argument callable"):
        Target(nn.Linear(3, 2), Module, example_inputs=_inputs(), factory=3)
    for bad in ((1e-3,), (1e-3, -1.0), ("1", 1e-3), (True, 1e-3), [1e-3, 1e-3], (float("nan"), 0.0)):
        with pytest.raises(TypeError, match="parity_tolerance"):
            Target(nn.Linear(3, 2), Module, example_inputs=_inputs(), parity_tolerance=bad)
    target = Target(nn.Linear(3, 2), Module, example_inputs=_inputs(), parity_tolerance=(1e-4, 0))
    assert target.options.parity_tolerance == (1e-4, 0)


def test_parity_tolerance_loosens_the_comparison() -> None:
    left, right = torch.ones(3), torch.ones(3) + 1e-3
    assert close_difference(left, right) is not None
    assert close_difference(left, right, tolerance=(0.0, 1e-2)) is None


@pytest.mark.clause(
    "callable_module.call_preserves_inputs", "module.device_parity", "module.zero_grad_clears_gradients"
)
def test_severities_follow_the_convention() -> None:
    assert CHECKS["callable_module.call_preserves_inputs"].severity == "recommended"  # inplace=True
    assert CHECKS["module.device_parity"].severity == "recommended"  # torch promises no CPU/GPU agreement
    assert CHECKS["module.zero_grad_clears_gradients"].severity == "recommended"  # Optimizer.zero_grad
    report = check(nn.ReLU(inplace=True), CallableModule, example_inputs=_inputs())
    assert report.passed, report


@pytest.mark.clause("callable_module.call_runs_forward_once")
def test_reference_modules_run_the_hooks_once() -> None:
    import numpy as np

    from torchcontract import reference_impl as ref

    rng = np.random.default_rng(0)
    model = ref.Sequential(ref.Linear(3, 4, rng=rng), ref.ReLU(), ref.Linear(4, 2, rng=rng))
    report = check(model, CallableModule, example_inputs=(np.ones((4, 3), dtype=np.float32),))
    assert _status(report, "callable_module.call_runs_forward_once")[0] == "passed", report
    assert not model._forward_pre_hooks
    assert not model._forward_hooks
