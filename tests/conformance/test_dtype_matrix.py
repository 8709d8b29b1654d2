"""The dtype matrix (``dtypes=``): the per-dtype clauses of a torch module run once per dtype, on a
deep copy converted with ``.to(dtype)`` (made once per target and dtype, by the engine), and their
results, expected failures and reports name the dtype; a target without it is as before."""

from __future__ import annotations

import json
from typing import Any

import pytest

from torchcontract.conformance import CHECKS, Report, RunReport, Target, check, checks_for, report_schema
from torchcontract.protocols import CallableModule, MapDataset, Module

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

PER_DTYPE = {
    "callable_module.call_returns",
    "callable_module.eval_is_deterministic",
    "callable_module.call_matches_forward",
    "callable_module.call_preserves_inputs",
    "callable_module.accepts_non_contiguous_inputs",
    "module.deepcopy_is_independent",
    "module.state_dict_round_trip",
    "module.device_parity",
    "module.device_round_trip",
    "module.channels_last_matches_contiguous",
    "module.train_forward_runs",
    "module.backward_reaches_parameters",
    "module.functional_call_matches_call",
    "module.compile_matches_eager",
    "module.compile_gradients_match_eager",
    "module.export_matches_eager",
}
# Per-dtype clauses that skip here: CUDA only, opt-in (compile=True, export=True), or for 4-D/5-D inputs.
SKIPPED_HERE = {
    "module.device_parity",
    "module.device_round_trip",
    "module.channels_last_matches_contiguous",
    "module.compile_matches_eager",
    "module.compile_gradients_match_eager",
    "module.export_matches_eager",
}
# The per-dtype clauses that a clause run once depends on (callable_module.call_runs_forward_once,
# module.to_device, module.to_dtype, module.builds_on_meta_device, ...): decided on the module as it is
# too, and reported without a dtype.
AS_IS = {
    "callable_module.call_returns",
    "callable_module.eval_is_deterministic",
    "module.deepcopy_is_independent",
    "module.state_dict_round_trip",
    "module.train_forward_runs",
    "module.functional_call_matches_call",
}
BOTH = (torch.float32, torch.float64)


def _mlp() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def _inputs() -> tuple[Any, ...]:
    return (torch.randn(5, 3, generator=torch.Generator().manual_seed(1)),)


class CastsToFloat32(torch.nn.Module):
    """Broken in float64: forward casts its input to float32 (``x.float()``)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, x: Any) -> Any:
        return self.lin(x.float())


class PlainFloat32Attribute(torch.nn.Module):
    """Broken in float64: forward makes a float32 tensor (no dtype=), keeps it as a plain attribute
    (no buffer, which ``.to()`` would convert) and multiplies the output by it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, x: Any) -> Any:
        self.mix = torch.eye(2)
        return self.lin(x) @ self.mix


class RefusesDtypes(torch.nn.Module):
    """m.to(dtype) raises (a module pinned to its dtype); m.to(device) works."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def to(self, *args: Any, **kwargs: Any) -> Any:
        if any(isinstance(arg, torch.dtype) for arg in [*args, *kwargs.values()]):
            raise TypeError("this module stays in float32")
        return super().to(*args, **kwargs)

    def forward(self, x: Any) -> Any:
        return self.lin(x)


def _by_label(report: Report) -> dict[str, Any]:
    return {result.label: result for result in report.results}


def test_the_per_dtype_checks_are_the_numerical_module_clauses() -> None:
    assert {spec.check_id for spec in CHECKS.values() if spec.per_dtype} == PER_DTYPE
    assert not CHECKS["module.to_dtype"].per_dtype  # it is itself about float32 -> float64


@pytest.mark.parametrize("dtypes", [BOTH, (torch.float16, torch.bfloat16)], ids=["full", "half"])
def test_a_torch_mlp_passes_every_per_dtype_check_in_each_dtype(dtypes: tuple[Any, ...]) -> None:
    report = check(_mlp(), Module, example_inputs=_inputs(), dtypes=dtypes)
    assert report.passed, report
    names = [str(dtype).removeprefix("torch.") for dtype in dtypes]
    results = _by_label(report)
    for spec in checks_for(Module):
        if spec.check_id in PER_DTYPE:
            # Decided on the module as it is too where a clause run once depends on it.
            assert (spec.check_id in results) is (spec.check_id in AS_IS)
            for name in names:
                result = results[f"{spec.check_id}[{name}]"]
                assert result.dtype == name
                assert result.status in ("passed", "skipped"), result
                if spec.check_id not in SKIPPED_HERE:
                    assert result.status == "passed", result
        else:
            assert results[spec.check_id].dtype is None
    # One result per (check, dtype), in the order of the checks, dtypes inside.
    assert len(report.results) == len(checks_for(Module)) + (len(names) - 1) * len(PER_DTYPE) + len(AS_IS)
    assert report.options == {"dtypes": names}


@pytest.mark.parametrize("broken", [CastsToFloat32, PlainFloat32Attribute])
def test_a_module_fixed_to_float32_fails_a_per_dtype_clause_in_float64_only(broken: type[Any]) -> None:
    report = check(broken(), Module, example_inputs=_inputs(), dtypes=BOTH)
    results = _by_label(report)
    assert results["callable_module.call_returns[float32]"].status == "passed"
    failed = results["callable_module.call_returns[float64]"]
    assert failed.status == "failed", report
    assert failed.is_violation
    assert "in float64: m is copy.deepcopy(m).to(torch.float64)" in failed.message
    assert "reproduce: m(*inputs)" in failed.message
    violations = {result.label for result in report.results if result.is_violation}
    assert violations == {"callable_module.call_returns[float64]"}, report
    # Its dependents in float64 are skipped, naming the prerequisite in that dtype.
    dependent = results["callable_module.eval_is_deterministic[float64]"]
    assert dependent.status == "skipped"
    assert "prerequisite callable_module.call_returns[float64] failed" in dependent.message
    assert all(results[f"{check_id}[float32]"].status != "failed" for check_id in PER_DTYPE)


def test_the_same_module_without_dtypes_passes_and_reports_as_before() -> None:
    report = check(CastsToFloat32(), Module, example_inputs=_inputs())
    assert all(result.dtype is None for result in report.results)
    assert [result.check_id for result in report.results] == [c.check_id for c in checks_for(Module)]
    assert report.options == {}
    entry = report.to_dict()["targets"][0]
    assert all("dtype" not in result for result in entry["results"])  # byte for byte as before
    assert "[float" not in str(report)


def test_a_module_that_cannot_convert_skips_the_per_dtype_checks_naming_the_conversion() -> None:
    report = check(RefusesDtypes(), Module, example_inputs=_inputs(), dtypes=BOTH)
    results = _by_label(report)
    for check_id in PER_DTYPE:
        for name in ("float32", "float64"):
            result = results[f"{check_id}[{name}]"]
            assert result.status == "skipped", result
            if check_id in SKIPPED_HERE:
                continue  # skipped first for what the target lacks (a CUDA device, an opt-in)
            assert f"copy.deepcopy(m).to(torch.{name}) raised TypeError: this module stays" in result.message
            assert "module.to_dtype" in result.message
    # module.to_dtype is the clause that reports it (recommended); nothing is an internal error.
    assert results["module.to_dtype"].status == "failed"
    assert not report.errors
    assert results["module.to_device"].status == "passed"


def test_the_conversion_is_made_once_per_target_and_dtype() -> None:
    calls: list[Any] = []

    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def to(self, *args: Any, **kwargs: Any) -> Any:
            calls.extend(arg for arg in args if isinstance(arg, torch.dtype))
            return super().to(*args, **kwargs)

        def forward(self, x: Any) -> Any:
            return self.lin(x)

    report = check(Counting(), Module, example_inputs=_inputs(), dtypes=BOTH)
    assert report.passed, report
    # Once per dtype for the matrix, once more by module.to_dtype's own float64 copy.
    assert calls == [torch.float32, torch.float64, torch.float64]


def test_the_inputs_are_converted_when_floating_and_kept_otherwise() -> None:
    seen: list[tuple[Any, Any, Any]] = []

    class Records(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x: Any, index: Any, *, scale: Any) -> Any:
            seen.append((x.dtype, index.dtype, scale.dtype))
            return self.lin(x)[index] * scale

    target = Target(
        Records(),
        CallableModule,
        example_inputs=(_inputs()[0], torch.tensor([0, 2])),
        example_kwargs={"scale": torch.tensor(2.0)},
        dtypes=(torch.float64,),
    )
    result = target.session(dtype="float64").result("callable_module.call_returns")
    assert result.status == "passed", result
    assert seen == [(torch.float64, torch.int64, torch.float64)]
    assert target.example_inputs[0].dtype == torch.float32  # the target's own inputs are untouched


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("float64", "not 'float64'"),
        ((), "non-empty tuple"),
        ([torch.float64], "non-empty tuple"),
        (torch.float64, "non-empty tuple"),
        (("float64",), "'float64' is not a floating-point torch dtype"),
        ((torch.int64,), "torch.int64 is not a floating-point torch dtype"),
        ((torch.complex64,), "torch.complex64 is not a floating-point"),
        ((torch.float32, torch.float32), "float32 more than once"),
    ],
)
def test_dtypes_takes_a_tuple_of_floating_point_torch_dtypes(value: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        Target(_mlp(), Module, example_inputs=_inputs(), dtypes=value)


def test_dtypes_is_for_torch_module_targets() -> None:
    with pytest.raises(TypeError, match=r"CallableModule or Module target.*not a MapDataset"):
        Target([1, 2, 3], MapDataset, dtypes=BOTH)
    with pytest.raises(TypeError, match=r"needs a torch.nn.Module, not"):
        Target(lambda x: x, CallableModule, example_inputs=(1.0,), dtypes=BOTH)
    assert Target(_mlp(), CallableModule, example_inputs=_inputs(), dtypes=BOTH).options.dtype_names == (
        "float32",
        "float64",
    )
    # dtypes=None is the default, for any target.
    assert Target([1, 2], MapDataset, dtypes=None).options.dtypes is None


def test_an_expected_failure_applies_to_every_dtype_or_to_one() -> None:
    every = check(
        CastsToFloat32(),
        Module,
        example_inputs=_inputs(),
        dtypes=BOTH,
        expected_failures={"callable_module.call_returns": "casts to float32"},
    )
    results = _by_label(every)
    assert results["callable_module.call_returns[float64]"].status == "xfailed"
    assert results["callable_module.call_returns[float32]"].status == "xpassed"

    one = Target(
        CastsToFloat32(),
        Module,
        example_inputs=_inputs(),
        dtypes=BOTH,
        expected_failures={"callable_module.call_returns[float64]": "casts to float32"},
    )
    assert one.stale_expected_failures == []
    results = _by_label(check(one))
    assert results["callable_module.call_returns[float64]"].status == "xfailed"
    assert results["callable_module.call_returns[float32]"].status == "passed"


def test_an_expected_failure_for_a_dtype_outside_the_matrix_is_stale() -> None:
    target = Target(
        _mlp(),
        Module,
        example_inputs=_inputs(),
        dtypes=BOTH,
        expected_failures={
            "callable_module.call_returns[float16]": "not in dtypes",
            "module.to_dtype[float64]": "not a per-dtype check",
        },
    )
    assert target.stale_expected_failures == [
        "callable_module.call_returns[float16]",
        "module.to_dtype[float64]",
    ]
    one_dtype = {"callable_module.call_returns[float64]": "x"}
    plain = Target(_mlp(), Module, example_inputs=_inputs(), expected_failures=one_dtype)
    assert plain.stale_expected_failures == ["callable_module.call_returns[float64]"]


def test_the_report_names_the_dtype_and_validates_against_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    report = check(CastsToFloat32(), Module, example_inputs=_inputs(), dtypes=BOTH)
    data = json.loads(report.to_json())
    jsonschema.Draft202012Validator(report_schema()).validate(data)
    rows = data["targets"][0]["results"]
    assert {row.get("dtype") for row in rows} == {None, "float32", "float64"}
    assert data["targets"][0]["options"] == {"dtypes": ["float32", "float64"]}
    assert RunReport.from_dict(data).reports[0].results == report.results
    text = str(report)
    assert "FAIL    callable_module.call_returns[float64]" in text
    assert "ok      callable_module.call_returns[float32]" in text
    bad = json.loads(report.to_json())
    bad["targets"][0]["results"][0]["dtype"] = "int64"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(report_schema()).validate(bad)


def test_the_markdown_summary_names_the_dtype() -> None:
    from torchcontract.conformance._report.markdown import render_markdown
    from torchcontract.conformance._report.outcomes import Policy
    from torchcontract.conformance._report.verdict import judge_run

    report = check(CastsToFloat32(), Module, example_inputs=_inputs(), dtypes=BOTH)
    text = render_markdown(judge_run(RunReport((report,)), Policy()))
    assert "| `callable_module.call_returns[float64]` | required | failed |" in text
    assert "| `callable_module.call_returns[float32]` | required | passed |" in text


def test_isolated_checks_run_in_each_dtype() -> None:
    from torchcontract.conformance._core.isolation import ISOLATION_AVAILABLE

    if not ISOLATION_AVAILABLE:
        pytest.skip("isolation needs os.fork")
    report = check(CastsToFloat32(), Module, example_inputs=_inputs(), dtypes=BOTH, isolate=True)
    results = _by_label(report)
    assert results["callable_module.call_returns[float64]"].status == "failed"
    assert results["callable_module.call_returns[float32]"].status == "passed"
    assert results["module.to_dtype"].status == "failed"


@pytest.mark.parametrize(
    ("dtype", "close", "far"),
    [("float16", 5e-4, 5e-3), ("bfloat16", 1e-2, 5e-2), ("float32", 1e-6, 1e-4)],
)
def test_comparisons_use_the_tolerances_of_their_dtype(dtype: str, close: float, far: float) -> None:
    """assert_close's defaults: float16 rtol=1e-3, bfloat16 rtol=1.6e-2, float32 rtol=1.3e-6."""
    from torchcontract.conformance._values import close_difference

    base = torch.full((4,), 100.0, dtype=getattr(torch, dtype))
    assert close_difference(base, base * (1 + close)) is None
    found = close_difference(base, base * (1 + far))
    assert found is not None
    assert f"({dtype})" in found
