"""Checking a module leaves it as it was: running statistics, weights, training mode; and a NumPy
module is checked without importing torch."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from torchcontract.conformance import check
from torchcontract.protocols import CallableModule, Module

from ...conftest import HAS_TORCH, NO_TORCH_REASON
from ..correct import MLP, NumpyModule, Parameter, mlp_inputs
from ..mutants.module import DeepcopySharesParameters
from ..reports import status as _status

# -- call_preserves_inputs must not change the module -------------------------------------------------


class RunningMean(NumpyModule):
    """Like BatchNorm: in training mode every call updates a running statistic."""

    def __init__(self) -> None:
        super().__init__()
        self.running_mean = np.zeros(3)
        self.scale = Parameter(np.ones(3))

    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if self.training:
            self.running_mean = 0.9 * self.running_mean + 0.1 * x.mean(axis=0)
        return (x - self.running_mean) * self.scale.data


def test_checking_a_module_in_training_mode_leaves_its_running_statistics_alone() -> None:
    module = RunningMean()
    report = check(module, Module, example_inputs=mlp_inputs())
    assert report.passed, report
    assert module.training is True
    assert np.array_equal(module.running_mean, np.zeros(3)), "check() updated the running mean"


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)
def test_checking_a_torch_batchnorm_leaves_its_running_statistics_alone() -> None:
    import torch
    from torch import nn

    batchnorm = nn.BatchNorm1d(3)
    before = {name: tensor.clone() for name, tensor in batchnorm.state_dict().items()}
    assert check(batchnorm, Module, example_inputs=(torch.randn(4, 3),)).passed
    after = batchnorm.state_dict()
    changed = [name for name, tensor in before.items() if not torch.equal(tensor, after[name])]
    assert changed == []


class ScalesInputInPlaceWhileTraining:
    """An in-place operation on the input that happens only in training mode."""

    def __init__(self) -> None:
        self.training = True

    def train(self, mode: bool = True) -> ScalesInputInPlaceWhileTraining:
        self.training = mode
        return self

    def eval(self) -> ScalesInputInPlaceWhileTraining:
        return self.train(False)

    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if self.training:
            x *= 2.0
        return x.sum(axis=-1)

    def __call__(self, *args: Any) -> Any:
        return self.forward(*args)


@pytest.mark.clause("callable_module.call_preserves_inputs")
def test_an_in_place_op_that_happens_only_in_training_is_still_caught() -> None:
    # The call runs on a deep copy in the module's own (training) mode, not in eval mode.
    report = check(ScalesInputInPlaceWhileTraining(), CallableModule, example_inputs=mlp_inputs())
    assert _status(report, "callable_module.call_preserves_inputs")[0] == "failed"


@pytest.mark.clause("callable_module.call_preserves_inputs")
def test_a_module_that_cannot_be_copied_is_still_checked_for_in_place_ops() -> None:
    class Uncopyable(ScalesInputInPlaceWhileTraining):
        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()

        def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            x *= 2.0  # in every mode: the eval-mode fallback sees it
            return x.sum(axis=-1)

    module = Uncopyable()
    report = check(module, CallableModule, example_inputs=mlp_inputs())
    assert _status(report, "callable_module.call_preserves_inputs")[0] == "failed"
    assert module.training is True, "the fallback's eval mode was not undone"


# -- deepcopy_is_independent must not leave the original's parameters perturbed -----------------------


@pytest.mark.clause("module.deepcopy_is_independent")
def test_a_copy_sharing_parameters_is_reported_and_the_original_left_intact() -> None:
    module = DeepcopySharesParameters()
    before = module.state_dict()
    report = check(module, Module, example_inputs=mlp_inputs())
    assert _status(report, "module.deepcopy_is_independent")[0] == "failed"
    after = module.state_dict()
    assert all(np.array_equal(before[name], after[name]) for name in before), "check() changed m's weights"


def test_the_original_is_restored_even_when_parameter_names_repeat() -> None:
    # Restoring by name would write one layer's weights into another of a different shape.
    class SharesAndRepeatsNames(DeepcopySharesParameters):
        def named_parameters(self) -> Any:
            for _, child in self.named_children():
                yield from child.named_parameters()

    module = SharesAndRepeatsNames()
    weights = [p.data.copy() for p in module.parameters()]
    check(module, Module, example_inputs=mlp_inputs())
    assert all(np.array_equal(w, p.data) for w, p in zip(weights, module.parameters(), strict=True))


def test_an_mlp_is_unchanged_by_check() -> None:
    module = MLP()
    before = module.state_dict()
    assert check(module, Module, example_inputs=mlp_inputs()).passed
    assert all(np.array_equal(before[name], value) for name, value in module.state_dict().items())


# -- the device checks do not import torch to look at a NumPy module ----------------------------------


def test_device_checks_skip_a_numpy_module_without_importing_torch() -> None:
    # Run in a fresh interpreter: here torch may already be imported by another test.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sys
        from tests.conformance.correct import MLP, mlp_inputs
        from torchcontract.conformance import check
        from torchcontract.protocols import Module
        report = check(MLP(), Module, example_inputs=mlp_inputs(), time_budget_s=0.5)
        print(report)
        assert report.passed, "a correct NumPy module failed"
        assert "torch" not in sys.modules, "checking a NumPy module imported torch"
        """
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- train(False) is checked, and modes are restored with calls every implementation takes ----------


@pytest.mark.clause("module.train_eval_set_mode")
def test_train_false_is_checked_and_the_mode_restored() -> None:
    from ..mutants.module import TrainIgnoresMode

    module = TrainIgnoresMode().eval()
    report = check(module, Module, example_inputs=mlp_inputs())
    status, message = _status(report, "module.train_eval_set_mode")
    assert status == "failed"
    assert "after m.train(False), m.training is True" in message
    assert module.training is False, "check() left the module in training mode"


class TrainTakesNoMode(MLP):
    """A hand-written train() without the mode parameter (protocol violation, reported once)."""

    def train(self) -> TrainTakesNoMode:  # type: ignore[override]
        self.training = True
        for _, child in self.named_children():
            child.train()
        return self

    def eval(self) -> TrainTakesNoMode:
        self.training = False
        for _, child in self.named_children():
            child.eval()
        return self


@pytest.mark.clause("module.train_eval_set_mode")
def test_a_train_without_mode_fails_the_mode_check_alone() -> None:
    # Restoring the mode with m.train(was_training) used to make every check that switches modes fail.
    report = check(TrainTakesNoMode(), Module, example_inputs=mlp_inputs())
    violations = [r.check_id for r in report.results if r.is_violation]
    assert violations == ["module.train_eval_set_mode"], str(report)
    assert "m.train(True) raised TypeError" in _status(report, "module.train_eval_set_mode")[1]
