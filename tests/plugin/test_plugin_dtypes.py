"""The plugin and the dtype matrix: a target with ``dtypes=`` gets one test per (per-dtype check,
dtype), with ids ending in the dtype (after the device, for a check that is per device too); the
other checks, and every check of a target without it, keep their ids."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.plugin.test_plugin import QUIET
from torchcontract.conformance import checks_for
from torchcontract.protocols import Module

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

MODULES = """
    import torch
    from torchcontract.conformance import Target, parametrize_with_checks
    from torchcontract.protocols import Module

    class Casts(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(x.float())

    def mlp():
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))

    X = (torch.randn(5, 3, generator=torch.Generator().manual_seed(1)),)
    BOTH = (torch.float32, torch.float64)
"""
PER_DTYPE = 16  # the per-dtype clauses of a Module (tests/conformance/test_dtype_matrix.py)
AS_IS = 6  # the per-dtype clauses a clause run once depends on: also decided on the module as it is


def _write(pytester: pytest.Pytester, body: str) -> None:
    pytester.makepyfile(test_modules=textwrap.dedent(MODULES) + textwrap.dedent(body))


def test_one_test_per_dtype_with_ids_ending_in_the_dtype(pytester: pytest.Pytester, tmp_path: Path) -> None:
    _write(
        pytester,
        """
        @parametrize_with_checks(
            [
                Target(mlp(), Module, name="mlp", example_inputs=X, dtypes=BOTH),
                Target(mlp(), Module, name="plain", example_inputs=X),
            ]
        )
        def test_conformance(target, check):
            check(target)
        """,
    )
    report = tmp_path / "report.json"
    summary = tmp_path / "summary.md"
    result = pytester.runpytest(
        "-v",
        "--conformance-devices=cpu",
        f"--conformance-report={report}",
        f"--conformance-summary-md={summary}",
        *QUIET,
    )
    result.stdout.fnmatch_lines_random(
        [
            "*test_conformance[[]mlp-callable_module.call_returns-float32[]] PASSED*",
            "*test_conformance[[]mlp-callable_module.call_returns-float64[]] PASSED*",
            # A prerequisite of the clauses run once (call_runs_forward_once), on the module as it is.
            "*test_conformance[[]mlp-callable_module.call_returns[]] PASSED*",
            "*test_conformance[[]mlp-module.device_parity-cpu-float64[]] SKIPPED*",
            "*test_conformance[[]mlp-module.to_device-cpu[]] PASSED*",
            "*test_conformance[[]mlp-callable_module.call_runs_forward_once[]] PASSED*",
            "*test_conformance[[]mlp-module.to_dtype[]] PASSED*",
            # Without dtypes=, the ids of before.
            "*test_conformance[[]plain-callable_module.call_returns[]] PASSED*",
            "*test_conformance[[]plain-module.device_parity-cpu[]] SKIPPED*",
        ]
    )
    assert "plain-callable_module.call_returns-float" not in result.stdout.str()
    checks = len(checks_for(Module))
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] + outcomes.get("skipped", 0) == 2 * checks + PER_DTYPE + AS_IS
    assert result.ret == pytest.ExitCode.OK

    data = json.loads(report.read_text())
    mlp, plain = data["targets"]
    assert mlp["options"] == {"dtypes": ["float32", "float64"]}
    labelled = {(row["check_id"], row.get("dtype")) for row in mlp["results"]}
    assert ("callable_module.call_returns", "float64") in labelled
    assert ("module.device_parity", "float32") in labelled
    assert ("module.to_dtype", None) in labelled
    assert all("dtype" not in row for row in plain["results"])
    assert ("callable_module.call_returns", None) in labelled
    assert len(mlp["results"]) == checks + PER_DTYPE + AS_IS
    text = summary.read_text()
    assert "| `callable_module.call_returns[float64]` | required | passed |" in text
    assert "| `callable_module.call_returns` | required | passed |" in text  # the plain target's


def test_a_failure_in_one_dtype_fails_that_test_and_xfails_by_its_key(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
        @parametrize_with_checks(
            [
                Target(Casts(), Module, name="casts", example_inputs=X, dtypes=BOTH),
                Target(
                    Casts(),
                    Module,
                    name="known",
                    example_inputs=X,
                    dtypes=BOTH,
                    expected_failures={"callable_module.call_returns[float64]": "casts to float32"},
                ),
            ]
        )
        def test_conformance(target, check):
            check(target)
        """,
    )
    result = pytester.runpytest("-v", "-k", "call_returns", *QUIET)
    result.stdout.fnmatch_lines_random(
        [
            "*test_conformance[[]casts-callable_module.call_returns-float32[]] PASSED*",
            "*test_conformance[[]casts-callable_module.call_returns-float64[]] FAILED*",
            "*test_conformance[[]known-callable_module.call_returns-float32[]] PASSED*",
            "*test_conformance[[]known-callable_module.call_returns-float64[]] XFAIL*",
        ]
    )
    result.stdout.fnmatch_lines(["*callable_module.call_returns[[]float64[]] failed:*"])
    result.stdout.fnmatch_lines(["*in float64: m is copy.deepcopy(m).to(torch.float64)*"])
    assert result.parseoutcomes()["failed"] == 1


def test_a_baseline_written_for_a_dtype_names_it(pytester: pytest.Pytester, tmp_path: Path) -> None:
    _write(
        pytester,
        """
        @parametrize_with_checks([Target(Casts(), Module, name="casts", example_inputs=X, dtypes=BOTH)])
        def test_conformance(target, check):
            check(target)
        """,
    )
    baseline = tmp_path / "baseline.toml"
    result = pytester.runpytest("-k", "call_returns", f"--conformance-write-baseline={baseline}", *QUIET)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = baseline.read_text()
    assert '"callable_module.call_returns[float64]" = "TODO"' in text
    assert "call_returns[float32]" not in text
    baseline.write_text(text.replace('"TODO"', '"casts its input to float32"'))
    again = pytester.runpytest("-v", "-k", "call_returns", f"--conformance-baseline={baseline}", *QUIET)
    again.stdout.fnmatch_lines(["*casts-callable_module.call_returns-float64*XFAIL*"])
    assert again.ret == pytest.ExitCode.OK
