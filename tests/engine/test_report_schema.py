"""One report layout: check()'s report, the CLI's --json and the plugin's --conformance-report all
validate against the JSON Schema that `torchcontract schema` prints, and count in one place."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.plugin.test_plugin import DATASETS, QUIET
from torchcontract.conformance import (
    PROTOCOLS,
    ConformanceWarning,
    Report,
    RunReport,
    Target,
    check,
    report_schema,
)
from torchcontract.conformance._core.registry import _ID_PATTERN
from torchcontract.conformance._results import SCHEMA_VERSION, STATUSES, environment
from torchcontract.conformance.cli import main
from torchcontract.protocols import CollateFn, MapDataset

from ..user_modules import SQUARES, user_module, write_user_module


class Squares:
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        if not -8 <= index < 8:
            raise IndexError(index)
        return (index % 8) ** 2


class Wrapping(Squares):
    """Broken: never raises IndexError."""

    def __getitem__(self, index: int) -> int:
        return (index % 8) ** 2


def _validate(data: Any) -> None:
    jsonschema.Draft202012Validator(report_schema()).validate(data)


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = report_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_schema_agrees_with_the_code() -> None:
    schema = report_schema()
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert tuple(schema["$defs"]["status"]["enum"]) == STATUSES
    assert tuple(schema["$defs"]["counts"]["required"]) == STATUSES
    assert set(schema["$defs"]["protocol"]["enum"]) == set(PROTOCOLS)
    assert schema["$defs"]["result"]["properties"]["check_id"]["pattern"] == _ID_PATTERN.pattern
    assert set(schema["properties"]["environment"]["required"]) == set(environment())


def test_the_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == report_schema()


@pytest.fixture(scope="module")
def reports() -> tuple[Report, Report, Report]:
    """A passing target with a stale expected failure and an xfail, a passing CollateFn, a failing one."""
    expected = {"map_dataset.len_ok": "a stale id", "map_dataset.index_past_end_raises_index_error": "known"}
    with pytest.warns(ConformanceWarning, match="map_dataset.len_ok"):
        declared = check(Target(Wrapping(), MapDataset, name="declared", expected_failures=expected, seed=3))
    passing = check(Target(np_stack, CollateFn, name="stack", example_inputs=[[1, 2], [3, 4]]))
    return declared, passing, check(Wrapping(), MapDataset)


def np_stack(samples: list[list[int]]) -> list[list[int]]:
    return [list(sample) for sample in samples]


def test_the_schema_refuses_what_is_not_a_report(reports: tuple[Report, ...]) -> None:
    data = json.loads(reports[-1].to_json())
    _validate(data)
    for broken in (
        {**data, "schema_version": 2},
        {key: value for key, value in data.items() if key != "counts"},
        {**data, "reports": data["targets"]},
        {**data, "targets": [{**data["targets"][0], "results": [{"check_id": "x"}]}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            _validate(broken)


def test_check_reports_validate_and_count_in_one_place(reports: tuple[Report, ...]) -> None:
    for report in reports:
        _validate(json.loads(report.to_json()))
    data = json.loads(RunReport(reports).to_json())
    _validate(data)
    assert [entry["target"] for entry in data["targets"]] == ["declared", "stack", "Wrapping"]
    assert [entry["passed"] for entry in data["targets"]] == [True, True, False]
    assert data["passed"] is False
    entry = data["targets"][0]
    assert entry["options"] == {"seed": 3}
    assert entry["stale_expected_failures"] == ["map_dataset.len_ok"]
    assert entry["counts"]["xfailed"] == 1
    assert data["counts"] == {
        status: sum(entry["counts"][status] for entry in data["targets"]) for status in STATUSES
    }
    assert sum(data["counts"].values()) == sum(len(report.results) for report in reports)


def test_a_run_report_reads_back_what_it_wrote(tmp_path: Path, reports: tuple[Report, ...]) -> None:
    run = RunReport(reports)
    path = tmp_path / "out" / "report.json"
    run.write(path)
    again = RunReport.from_dict(json.loads(path.read_text()))
    assert again.to_dict() == run.to_dict()
    with pytest.raises(ValueError, match="schema version 2"):
        RunReport.from_dict({**run.to_dict(), "schema_version": 2})


# -- the CLI ------------------------------------------------------------------------------------------

MODULE = user_module(
    """
    from torchcontract.conformance import Target
    from torchcontract.protocols import MapDataset
""",
    SQUARES,
    """
    squares = Squares()
""",
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return write_user_module(tmp_path, monkeypatch, "schemadata", MODULE)


@pytest.mark.parametrize(("attribute", "status"), [("squares", 0), ("Wrapping", 1)])
def test_the_cli_check_json_validates(project: Path, attribute: str, status: int) -> None:
    path = project / "check.json"
    args = ["check", f"schemadata:{attribute}", "--protocol", "MapDataset", "-o", "seed=1", "--json"]
    assert main([*args, str(path)]) == status
    data = json.loads(path.read_text())
    _validate(data)
    assert data["passed"] is (status == 0)
    assert data["targets"][0]["options"] == {"seed": 1}


def test_the_cli_report_json_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A small set of targets instead of the reference and torch (tests/cli/test_report.py runs those).
    from torchcontract.conformance._targets import defaults as _default_targets

    small = [
        Target(Squares(), MapDataset, name="squares"),
        Target(Wrapping(), MapDataset, name="wrapping", expected_failures={"map_dataset.x": "stale"}),
    ]
    monkeypatch.setattr(_default_targets, "default_targets", lambda workdir: small)
    path = tmp_path / "report.json"
    assert main(["report", "--json", str(path)]) == 1
    data = json.loads(path.read_text())
    _validate(data)
    assert [entry["target"] for entry in data["targets"]] == ["squares", "wrapping"]
    assert [entry["passed"] for entry in data["targets"]] == [True, False]
    assert data["targets"][1]["stale_expected_failures"] == ["map_dataset.x"]


# -- the pytest plugin ----------------------------------------------------------------------------------

PLUGIN_TESTS = """
    @parametrize_with_checks(
        [
            Target(Pairs(), MapDataset, name="pairs", seed=4),
            Target(Wrapping(), MapDataset, name="wrapping"),
            Target(
                Wrapping(),
                MapDataset,
                name="declared",
                expected_failures={
                    "map_dataset.index_past_end_raises_index_error": "known",
                    "map_dataset.len_ok": "stale",
                },
            ),
        ]
    )
    def test_conformance(target, check):
        check(target)
"""


def _plugin_report(pytester: pytest.Pytester, *args: str, subprocess: bool = False) -> dict[str, Any]:
    pytester.makepyfile(test_conformance=textwrap.dedent(DATASETS) + textwrap.dedent(PLUGIN_TESTS))
    path = pytester.path / "out" / "report.json"
    run = pytester.runpytest_subprocess if subprocess else pytester.runpytest
    run(f"--conformance-report={path}", *args, *QUIET)
    data: dict[str, Any] = json.loads(path.read_text())
    _validate(data)
    return data


def test_the_plugin_report_validates(pytester: pytest.Pytester) -> None:
    data = _plugin_report(pytester)
    assert data["schema_version"] == SCHEMA_VERSION
    assert [entry["target"] for entry in data["targets"]] == ["pairs", "wrapping", "declared"]
    pairs, wrapping, declared = data["targets"]
    assert pairs["passed"] is True
    assert pairs["options"] == {"seed": 4}
    assert wrapping["passed"] is False
    assert data["passed"] is False
    assert declared["stale_expected_failures"] == ["map_dataset.len_ok"]
    assert declared["counts"]["xfailed"] >= 1
    assert data["counts"] == {
        status: sum(entry["counts"][status] for entry in data["targets"]) for status in STATUSES
    }


def test_the_plugin_report_under_xdist_validates(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed")
    data = _plugin_report(pytester, "-n", "2", subprocess=True)
    assert sorted(entry["target"] for entry in data["targets"]) == ["declared", "pairs", "wrapping"]
    declared = next(entry for entry in data["targets"] if entry["target"] == "declared")
    assert declared["stale_expected_failures"] == ["map_dataset.len_ok"]
    assert data["environment"]["torchcontract"] is not None
