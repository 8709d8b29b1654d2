"""Module contracts in depth, the clauses about how torch uses a module beyond calling it:
``module.functional_call_matches_call``, ``module.builds_on_meta_device``,
``module.compile_matches_eager``, ``module.export_matches_eager`` and
``callable_module.repr_returns_str``.

Each test uses a module of the shape its case needs: correct designs that must pass (a table rebuilt by
``reset_parameters``, tied weights, a module whose output ignores its parameters, a random module), and
the skips that say how to turn a clause on.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from torchcontract.conformance import Report, check

from ....conftest import HAS_TORCH, NO_TORCH_REASON

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)

FUNCTIONAL = "module.functional_call_matches_call"
META = "module.builds_on_meta_device"
COMPILE = "module.compile_matches_eager"
EXPORT = "module.export_matches_eager"
REPR = "callable_module.repr_returns_str"

if HAS_TORCH:
    import torch
    from torch import nn

    from torchcontract.protocols import Module

    from ...mutants.torch_mutants import CompileOnlyPathDropsBias, PositionalScaleWithoutReset

    class PositionalScaleWithReset(PositionalScaleWithoutReset):
        """The same table, recomputed by reset_parameters(): what a meta-device build needs."""

        def reset_parameters(self) -> None:
            with torch.no_grad():
                self.frequencies.copy_(torch.arange(1.0, 3.0))

    class TiedEmbedding(nn.Module):
        """A language-model head tied to its embedding (one parameter under two names)."""

        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(7, 3)
            self.head = nn.Linear(3, 7, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.head(self.embed(tokens))

    class NoAdd(torch.Tensor):
        """A tensor type without addition or clone, as a quantized weight's may lack them (torchao's
        Int8Tensor implements no aten.add)."""

        @classmethod
        def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            missing = (torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__, torch.Tensor.add_)
            if func in (*missing, torch.Tensor.clone):
                raise NotImplementedError(f"NoAdd has no {func.__name__}")
            return super().__torch_function__(func, types, args, kwargs or {})

        def __deepcopy__(self, memo: Any) -> Any:
            return self.as_subclass(torch.Tensor).detach().clone().as_subclass(NoAdd)

    class ScaledByNoAdd(nn.Linear):
        def __init__(self) -> None:
            super().__init__(3, 2)
            self.register_buffer("scale", torch.full((2,), 2.0).as_subclass(NoAdd))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * self.scale.as_subclass(torch.Tensor)

    class SignOfWeights(nn.Linear):
        """An output that a shift of every parameter by 0.5 does not change (signs of large values)."""

        def __init__(self) -> None:
            super().__init__(3, 2)
            with torch.no_grad():
                self.weight.fill_(10.0)
                self.bias.fill_(10.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sign(super().forward(x))

    class NoisyLinear(nn.Linear):
        """Adds noise in every call, eval mode included: a random module (deterministic=False)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + torch.randn(x.shape[0], self.out_features)

    class NeedsDataInInit(nn.Module):
        """Reads a tensor's value while it is built: impossible on the meta device."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 2)
            self.width = int(self.linear.weight.abs().sum().item() > -1) + 1

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) * self.width

    class TableFromNumpy(nn.Module):
        """A buffer made with torch.from_numpy: on the CPU whatever the default device."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 2)
            self.register_buffer("offset", torch.from_numpy(np.ones(2, dtype=np.float32)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) + self.offset

    class ReprWithoutExtra(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x


def _inputs() -> tuple[Any, ...]:
    return (torch.linspace(-1.0, 1.0, 12).reshape(4, 3),)


def _result(report: Report, check_id: str) -> Any:
    return next(result for result in report.results if result.check_id == check_id)


def _seeded(build: Any) -> Any:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build()


@pytest.mark.clause(META)
def test_a_table_rebuilt_by_reset_parameters_builds_on_meta() -> None:
    report = check(
        _seeded(PositionalScaleWithReset),
        Module,
        example_inputs=_inputs(),
        factory=PositionalScaleWithReset,
    )
    assert _result(report, META).status == "passed", report
    assert report.passed, report


@pytest.mark.clause(META)
def test_without_a_factory_the_meta_build_is_skipped_saying_how_to_turn_it_on() -> None:
    result = _result(check(nn.Linear(3, 2), Module, example_inputs=_inputs()), META)
    assert result.status == "skipped"
    assert "factory=" in result.message


@pytest.mark.clause(META)
def test_construction_that_reads_tensor_data_fails_on_meta_naming_the_call() -> None:
    result = _result(
        check(_seeded(NeedsDataInInit), Module, example_inputs=_inputs(), factory=NeedsDataInInit), META
    )
    assert result.status == "failed", result
    assert "with torch.device('meta'): built = factory() raised" in result.message
    assert ".item()" in result.message


@pytest.mark.clause(META)
def test_a_buffer_allocated_on_the_cpu_during_a_meta_build_is_named() -> None:
    result = _result(
        check(_seeded(TableFromNumpy), Module, example_inputs=_inputs(), factory=TableFromNumpy), META
    )
    assert result.status == "failed", result
    assert "'offset'" in result.message
    assert "torch.from_numpy" in result.message


@pytest.mark.clause(META, FUNCTIONAL)
def test_tied_weights_pass_the_functional_call_and_meta_clauses() -> None:
    tokens = (torch.tensor([[0, 3, 6], [1, 2, 5]]),)
    report = check(_seeded(TiedEmbedding), Module, example_inputs=tokens, factory=TiedEmbedding)
    for check_id in (FUNCTIONAL, META):
        assert _result(report, check_id).status == "passed", report
    assert report.passed, report


@pytest.mark.clause(FUNCTIONAL)
def test_an_output_that_ignores_a_shift_of_the_parameters_is_not_flagged() -> None:
    # The swapped call is compared with a copy changed in place, not asked to differ from m's output.
    report = check(_seeded(SignOfWeights), Module, example_inputs=_inputs())
    assert _result(report, FUNCTIONAL).status == "passed", report


@pytest.mark.clause(FUNCTIONAL)
def test_a_random_module_compares_functional_calls_with_the_generators_seeded_alike() -> None:
    report = check(_seeded(lambda: NoisyLinear(3, 2)), Module, example_inputs=_inputs(), deterministic=False)
    assert _result(report, FUNCTIONAL).status == "passed", report


@pytest.mark.clause(FUNCTIONAL)
def test_a_module_without_floating_point_state_skips_functional_call() -> None:
    result = _result(check(nn.ReLU(), Module, example_inputs=_inputs()), FUNCTIONAL)
    assert result.status == "skipped"
    assert "no floating-point parameter or buffer" in result.message


@pytest.mark.clause(FUNCTIONAL)
@pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")  # deprecated, still supported
@pytest.mark.parametrize(
    ("wrap", "named"),
    [
        (lambda m: torch.jit.script(m), "a TorchScript module (torch.jit.script or torch.jit.trace)"),
        (
            lambda m: torch.jit.trace(m, _inputs()),
            "a TorchScript module (torch.jit.script or torch.jit.trace)",
        ),
        (lambda m: nn.DataParallel(m), "nn.DataParallel (call it on m.module)"),
    ],
    ids=["script", "trace", "DataParallel"],
)
def test_what_functional_call_refuses_by_design_is_skipped_naming_it(wrap: Any, named: str) -> None:
    torch.manual_seed(0)
    result = _result(check(wrap(nn.Linear(3, 2)), Module, example_inputs=_inputs()), FUNCTIONAL)
    assert result.status == "skipped", result
    assert result.message.startswith(f"torch.func.functional_call refuses {named} by design"), result.message


@pytest.mark.clause("module.builds_on_meta_device")
@pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")  # deprecated, still supported
def test_a_torchscript_factory_skips_the_meta_build_naming_torchs_refusal() -> None:
    def build() -> Any:
        return torch.jit.script(nn.Linear(3, 2))

    result = _result(
        check(build(), Module, example_inputs=_inputs(), factory=build), "module.builds_on_meta_device"
    )
    assert result.status == "skipped", result
    assert "whose to_empty torch refuses by design" in result.message


@pytest.mark.clause(COMPILE, EXPORT)
@pytest.mark.parametrize(("check_id", "option"), [(COMPILE, "compile=True"), (EXPORT, "export=True")])
def test_compile_and_export_are_off_by_default_and_say_how_to_turn_them_on(
    check_id: str, option: str
) -> None:
    result = _result(check(nn.Linear(3, 2), Module, example_inputs=_inputs()), check_id)
    assert result.status == "skipped"
    assert option in result.message


@pytest.mark.clause(COMPILE, EXPORT)
def test_compile_and_export_pass_on_a_module_with_keyword_arguments() -> None:
    class Scaled(nn.Linear):
        def forward(self, x: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
            return super().forward(x) * scale

    report = check(
        _seeded(lambda: Scaled(3, 2)),
        Module,
        example_inputs=_inputs(),
        example_kwargs={"scale": 2.0},
        compile=True,
        export=True,
    )
    for check_id in (COMPILE, EXPORT):
        assert _result(report, check_id).status == "passed", report


@pytest.mark.clause(COMPILE, EXPORT)
def test_a_random_module_compiles_and_exports_comparing_structure_only() -> None:
    report = check(
        _seeded(lambda: NoisyLinear(3, 2)),
        Module,
        example_inputs=_inputs(),
        deterministic=False,
        compile=True,
        export=True,
    )
    for check_id in (COMPILE, EXPORT):
        assert _result(report, check_id).status == "passed", report


@pytest.mark.clause(FUNCTIONAL)
def test_a_tensor_type_that_cannot_add_is_left_unchanged_not_an_internal_error() -> None:
    # The change of functional_call_matches_call (+ 0.5) is torchcontract's, not a contract: a tensor
    # type without it keeps its values on both sides, and the other tensors are still changed.
    result = _result(check(_seeded(ScaledByNoAdd), Module, example_inputs=_inputs()), FUNCTIONAL)
    assert result.status == "passed", result
    assert "left unchanged (their tensor type cannot add 0.5): scale" in result.message


@pytest.mark.clause(COMPILE)
def test_a_difference_only_after_dynamo_is_said_to_come_from_aot_autograd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A stand-in for AOTAutograd mis-tracing a module: a backend that adds 1 to every graph output.
    # TorchDynamo alone ("eager") matches, so the message names the later stage.
    from torchcontract.conformance.checks.module import compiled as module_checks

    def off_by_one(graph: Any, example_inputs: Any) -> Any:
        def run(*args: Any) -> Any:
            return [output + 1 for output in graph(*args)]

        return run

    off_by_one.__name__ = "aot_eager"
    monkeypatch.setattr(module_checks, "COMPILE_BACKEND", off_by_one)
    report = check(_seeded(lambda: nn.Linear(3, 2)), Module, example_inputs=_inputs(), compile=True)
    result = _result(report, COMPILE)
    assert result.status == "failed", report
    assert "with backend='eager' (TorchDynamo's graphs run as captured) it matches" in result.message
    assert "AOTAutograd" in result.message


@pytest.mark.clause(COMPILE)
def test_a_difference_in_dynamo_capture_names_the_eager_backend() -> None:
    result = _result(
        check(
            _seeded(lambda: CompileOnlyPathDropsBias(3, 2)), Module, example_inputs=_inputs(), compile=True
        ),
        COMPILE,
    )
    assert result.status == "failed"
    assert "backend='eager'" in result.message
    assert "with backend='aot_eager' too" in result.message


@pytest.mark.clause(EXPORT)
def test_torch_warnings_while_exporting_become_a_note_not_output(recwarn: pytest.WarningsRecorder) -> None:
    report = check(
        nn.GRU(3, 4, batch_first=True), Module, example_inputs=(torch.zeros(2, 5, 3),), export=True
    )
    result = _result(report, EXPORT)
    assert result.status == "passed", report
    assert "torch.export warned" in result.message
    assert not [w for w in recwarn if "during export" in str(w.message)]


@pytest.mark.clause(REPR)
def test_repr_passes_on_modules_with_and_without_extra_repr() -> None:
    for module in (nn.Linear(3, 2), ReprWithoutExtra(), nn.Sequential(nn.Linear(3, 2), nn.ReLU())):
        result = _result(check(module, Module, example_inputs=_inputs()), REPR)
        assert result.status == "passed", result


def test_the_numpy_reference_modules_skip_the_torch_only_clauses_and_pass_repr() -> None:
    from torchcontract.reference_impl import Linear

    report = check(
        Linear(3, 2, rng=np.random.default_rng(0)),
        Module,
        example_inputs=(np.ones((4, 3), dtype=np.float32),),
    )
    assert _result(report, REPR).status == "passed"
    for check_id in (FUNCTIONAL, META, COMPILE, EXPORT):
        assert _result(report, check_id).status == "skipped"
    assert "torch.nn.Module" in _result(report, FUNCTIONAL).message
    assert report.passed, report


def test_the_new_clauses_leave_the_module_as_they_found_it() -> None:
    module = _seeded(PositionalScaleWithReset)
    before = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    frequencies = module.frequencies.clone()
    check(
        module, Module, example_inputs=_inputs(), factory=PositionalScaleWithReset, compile=True, export=True
    )
    after = module.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert torch.equal(module.frequencies, frequencies)
    assert not math.isnan(float(module.frequencies.sum()))


def test_compile_export_and_functional_call_run_once_per_dtype_of_the_matrix() -> None:
    report = check(
        _seeded(lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))),
        Module,
        example_inputs=_inputs(),
        compile=True,
        export=True,
        dtypes=(torch.float32, torch.float64),
    )
    assert report.passed, report
    labels = {result.label: result.status for result in report.results}
    for check_id in (FUNCTIONAL, COMPILE, EXPORT):
        for dtype in ("float32", "float64"):
            assert labels[f"{check_id}[{dtype}]"] == "passed", report
    assert labels[REPR] == "passed"
    assert labels[META] == "skipped"  # no factory; and it is not per-dtype


@pytest.mark.clause(FUNCTIONAL)
def test_a_transposed_view_cached_in_init_fails_functional_call() -> None:
    # The audit's experiment 12: `weight.detach().t()` kept from __init__ is a view of the weight's
    # storage, so in-place changes reach it (a copy changed in place computes with them) and
    # functional_call's swapped tensors do not.
    class CachedTranspose(nn.Linear):
        def __init__(self) -> None:
            super().__init__(3, 2)
            self.weight_t = self.weight.detach().t()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.weight_t + self.bias

    result = _result(check(_seeded(CachedTranspose), Module, example_inputs=_inputs()), FUNCTIONAL)
    assert result.status == "failed", result
    assert "it returned m's own output" not in result.message  # the bias is swapped: partly ignored
    assert "references functional_call does not swap" in result.message


@pytest.mark.clause("module.to_dtype")
def test_a_distribution_output_is_compared_in_float64_by_its_attributes() -> None:
    # gpytorch's likelihoods return distributions: to_dtype converts the float32 reference's loc and
    # scale too, instead of reporting the dtypes it compares as a difference.
    class NormalHead(nn.Linear):
        def forward(self, x: torch.Tensor) -> Any:
            out = super().forward(x)
            return torch.distributions.Normal(out, torch.ones_like(out))

    report = check(_seeded(lambda: NormalHead(3, 2)), Module, example_inputs=_inputs())
    assert _result(report, "module.to_dtype").status == "passed", report


@pytest.mark.clause(FUNCTIONAL)
def test_the_changed_tensors_ask_for_gradients_as_the_modules_own_do() -> None:
    # With tensors that do not require grad, nn.TransformerEncoderLayer takes its fused fast path in
    # eval mode, whose numerics differ from the path m takes holding its parameters (2e-5 here).
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)
    inputs = (torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(3)),)
    for _ in range(3):  # the report's torch targets draw their inputs from one generator
        report = check(layer, Module, example_inputs=inputs)
        assert _result(report, FUNCTIONAL).status == "passed", report
        inputs = (torch.randn(2, 5, 16) * 3,)


def test_a_structure_difference_describes_the_outputs_themselves() -> None:
    from torchcontract.conformance.checks.module._shared import structure_difference

    found = structure_difference((torch.zeros(2), torch.zeros(2)), torch.zeros(2))
    assert found is not None
    assert "tuple" in found, found
    assert "float32" in found, found
    assert structure_difference(torch.zeros(2), torch.ones(3)) is None
