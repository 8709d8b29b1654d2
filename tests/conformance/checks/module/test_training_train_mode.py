"""module.train_forward_runs (the eval_only declaration) and module.gradients_are_finite: a module whose
train-mode forward raises, and one whose gradients are NaN where its outputs are finite, no longer pass;
non-finite outputs, missing gradients and sparse gradients are not blamed."""

from __future__ import annotations

from typing import Any

import pytest

from torchcontract.conformance import Report, Target, check

from ....conftest import HAS_TORCH, NO_TORCH_REASON

pytestmark = [
    pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON),
    pytest.mark.clause("module.train_forward_runs", "module.gradients_are_finite"),
]

TRAIN = "module.train_forward_runs"
FINITE = "module.gradients_are_finite"
BACKWARD = "module.backward_reaches_parameters"

if HAS_TORCH:
    import torch
    from torch import nn

    from torchcontract.protocols import Module

    class ZeroTimesSqrt(nn.Module):
        """sqrt(0 * z): the output is 0, finite; the gradient is 0 * inf = NaN for every parameter."""

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sqrt(self.fc(x) * 0.0)

    class LogOfLinear(nn.Module):
        """log of values that are partly negative: NaN outputs, so NaN gradients are the function's."""

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(self.fc(x))

    class UnusedHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.head = nn.Linear(3, 2), nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    class TrainOnlyBranchRaises(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.aux = nn.Linear(3, 2), nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.fc(x)
            if self.training:
                y = y + self.aux(x).mean()  # 3 features into a layer of 4: raises
            return y


def _inputs(*shape: int) -> tuple[Any, ...]:
    return (torch.linspace(-1.0, 1.0, int(torch.tensor(shape).prod())).reshape(*shape),)


def _seeded(build: Any) -> Any:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build()


def _run(module: Any, *check_ids: str, **options: Any) -> Report:
    target = Target(module, Module, example_inputs=options.pop("example_inputs", _inputs(4, 3)), **options)
    return target.run("cpu", 30.0, select=lambda spec: spec.check_id in check_ids)


def _result(report: Report, check_id: str) -> Any:
    return next(r for r in report.results if r.check_id == check_id)


def test_a_nan_gradient_of_a_finite_output_fails() -> None:
    module = _seeded(ZeroTimesSqrt)
    result = _result(_run(module, FINITE, BACKWARD), FINITE)
    assert result.status == "failed", result
    assert "'fc.weight', 'fc.bias' (2 of 2 trainable parameters)" in result.message
    assert "'fc.weight': 6 of 6 values NaN" in result.message
    # The clause that only asks for a gradient still passes: the two bugs have one clause each.
    assert _result(_run(module, BACKWARD), BACKWARD).status == "passed"


def test_non_finite_outputs_are_not_blamed_for_non_finite_gradients() -> None:
    result = _result(_run(_seeded(LogOfLinear), FINITE), FINITE)
    assert result.status == "skipped", result
    assert "non-finite (NaN)" in result.message


def test_parameters_without_a_gradient_are_left_to_the_backward_clause() -> None:
    report = _run(_seeded(UnusedHead), FINITE, BACKWARD)
    assert _result(report, FINITE).status == "passed", report
    assert _result(report, BACKWARD).status == "failed", report


def test_a_sparse_gradient_is_read_by_its_values() -> None:
    module = _seeded(lambda: nn.Embedding(10, 3, sparse=True))
    result = _result(_run(module, FINITE, example_inputs=(torch.tensor([[1, 2], [3, 3]]),)), FINITE)
    assert result.status == "passed", result


def test_the_gradient_check_leaves_the_module_as_it_was() -> None:
    module = _seeded(ZeroTimesSqrt)
    before = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    _run(module, FINITE)
    assert all(parameter.grad is None for parameter in module.parameters())
    assert all(torch.equal(before[name], tensor) for name, tensor in module.state_dict().items())
    assert module.training


def test_a_train_only_branch_that_raises_fails_even_for_a_module_given_in_eval_mode() -> None:
    # In eval mode no other clause calls the module in train mode: the report used to pass.
    module = _seeded(TrainOnlyBranchRaises).eval()
    report = check(module, Module, example_inputs=_inputs(4, 3))
    result = _result(report, TRAIN)
    assert result.status == "failed", report
    assert "copy.deepcopy(m).train()(*inputs) raised RuntimeError" in result.message
    assert [r.check_id for r in report.results if r.is_violation] == [TRAIN], report
    assert not module.training  # its mode is its own again


def test_a_batch_of_one_into_batchnorm_fails_naming_the_declaration() -> None:
    module = _seeded(lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))
    result = _result(_run(module, TRAIN, example_inputs=_inputs(1, 3)), TRAIN)
    assert result.status == "failed", result
    assert "Expected more than 1 value per channel when training" in result.message
    assert "declare eval_only=True" in result.message


def test_eval_only_skips_the_train_mode_clauses_naming_it() -> None:
    module = _seeded(lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))
    report = check(module, Module, example_inputs=_inputs(1, 3), eval_only=True)
    for check_id in (TRAIN, BACKWARD, FINITE):
        result = _result(report, check_id)
        assert result.status == "skipped", result
        assert "eval_only=True" in result.message, result
    assert report.passed, report


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_eval_only_must_be_a_bool(value: object) -> None:
    with pytest.raises(TypeError, match="eval_only"):
        check(nn.Linear(3, 2), Module, example_inputs=_inputs(4, 3), eval_only=value)


# -- what counts as not finite: the sum's shortcut never hides a value -----------------------------------


def _with(values: list[float], dtype: Any = None) -> Any:
    return torch.tensor(values, dtype=dtype or torch.float32)


@pytest.mark.parametrize(
    ("tensor", "expected"),
    [
        pytest.param(lambda: _with([1.0, float("nan"), 2.0]), (1, 3, "NaN"), id="a NaN"),
        pytest.param(lambda: _with([1.0, float("inf"), 2.0]), (1, 3, "inf"), id="an infinity"),
        # +inf and -inf sum to NaN: still not finite.
        pytest.param(lambda: _with([float("inf"), float("-inf")]), (2, 2, "inf"), id="both infinities"),
        pytest.param(lambda: _with([float("nan"), float("inf")]), (2, 2, "NaN and inf"), id="NaN and inf"),
        # Finite values whose sum overflows float16: the count finds none.
        pytest.param(lambda: torch.full((8,), 60000.0, dtype=torch.float16), None, id="an overflowing sum"),
        pytest.param(lambda: torch.tensor([1 + 2j, complex("nan")]), (1, 2, "NaN"), id="complex"),
        pytest.param(lambda: torch.zeros(0), None, id="empty"),
        pytest.param(lambda: torch.arange(5), None, id="integers"),
        pytest.param(lambda: _with([0.0, float("nan")]).to_sparse(), (1, 1, "NaN"), id="sparse"),
    ],
)
def test_non_finite_values_are_counted(tensor: Any, expected: Any) -> None:
    from torchcontract.conformance.checks.module.training import _non_finite

    assert _non_finite(torch, tensor()) == expected


def test_a_single_non_finite_value_in_a_large_gradient_is_found() -> None:
    from torchcontract.conformance.checks.module.training import _non_finite

    values = torch.randn(1000, 1000, generator=torch.Generator().manual_seed(0))
    assert _non_finite(torch, values) is None
    values[999, 999] = float("-inf")
    assert _non_finite(torch, values) == (1, 1_000_000, "inf")


@pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")  # deprecated, still supported
def test_reading_the_gradients_of_a_scripted_copy_warns_nothing_from_torchcontract() -> None:
    # A deep copy of a TorchScript module has parameters that are not leaves (pytorch#44951): reading
    # their .grad made torch warn from torchcontract's own lines, twice per check.
    import warnings

    import torchcontract

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        check(torch.jit.script(nn.Linear(3, 2)), Module, example_inputs=(torch.randn(4, 3),))
    ours = [w for w in said if str(w.filename).startswith(str(torchcontract.__path__[0]))]
    assert not ours, [f"{w.filename}:{w.lineno}: {w.message}" for w in ours]
