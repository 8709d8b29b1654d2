"""The plugin in a third-party suite's pytest and CI setup: a lazy import, strictness, markers,
JUnit properties, the Markdown summary, baselines, a disabled plugin."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

from tests.plugin.test_plugin import DATASETS, QUIET
from torchcontract.conformance import checks_for
from torchcontract.protocols import MapDataset

PAST_END = "map_dataset.index_past_end_raises_index_error"
NEGATIVE = "map_dataset.negative_index_mirrors_python"
PICKLE = "map_dataset.pickle_round_trip"
FAST = ("-m", "not conformance_slow")


def _write(pytester: pytest.Pytester, targets: str) -> None:
    body = f"""
    @parametrize_with_checks([{targets}])
    def test_conformance(target, check):
        check(target)
    """
    pytester.makepyfile(test_conformance=textwrap.dedent(DATASETS) + textwrap.dedent(body))


def test_importing_the_plugin_imports_neither_numpy_nor_the_engine() -> None:
    code = (
        "import sys, torchcontract.conformance.plugin; "
        "print('numpy' in sys.modules, 'torchcontract.conformance._core.target' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_registry_has_the_built_in_checks_whichever_module_comes_first() -> None:
    code = "from torchcontract.conformance._core.registry import CHECKS; print(len(CHECKS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    from torchcontract.conformance import CHECKS

    assert int(out) == len(CHECKS) > 50


def test_a_pytest_run_without_conformance_tests_imports_no_numpy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_plain():
            assert "numpy" not in sys.modules, "something imported numpy"
            assert "torchcontract.conformance._core.target" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess(*QUIET, "-p", "no:randomly")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("option", "complaint"),
    [
        ("--conformance-time-budget=soon", "expected a number of seconds, got 'soon'"),
        ("--conformance-world-size=1", "must be at least 2, got 1"),
        ("--conformance-devices=gpu7", "device 'gpu7' is not a device torch knows"),
        ("--conformance-baseline=missing.toml", "'missing.toml' does not exist"),
    ],
)
def test_a_bad_option_is_a_usage_error_at_parse_time(
    pytester: pytest.Pytester, option: str, complaint: str
) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest(option, *QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"argument --{option.split('=')[0].lstrip('-')}: {complaint}" in result.stderr.str()


def test_xfail_strict_makes_the_xpass_of_a_declared_failure_fail(pytester: pytest.Pytester) -> None:
    _write(pytester, f'Target(Pairs(), MapDataset, name="pairs", expected_failures={{"{PICKLE}": "old"}})')
    lenient = pytester.runpytest("-k", "pickle", *QUIET)
    lenient.assert_outcomes(xpassed=1)
    pytester.makeini("[pytest]\nxfail_strict = true\n")
    strict = pytester.runpytest("-k", "pickle", *QUIET)
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*XPASS(strict)*old*"])


def test_a_failed_recommended_check_warns_fails_under_strict_and_under_W_error(
    pytester: pytest.Pytester,
) -> None:
    # Wrapping's ds[-7] does not raise: a recommended clause.
    _write(pytester, 'Target(Wrapping(), MapDataset, name="wrapping")')
    warned = pytester.runpytest("-k", "negative_index", *QUIET)
    warned.assert_outcomes(passed=1, warnings=1)
    # Passed with a warning, in the words the CLI uses too: "warned", not failed.
    warned.stdout.fnmatch_lines(["wrapping (MapDataset): PASSED: 1 warned"])
    strict = pytester.runpytest("-k", "negative_index", "--conformance-strict", *QUIET)
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines([f"*{NEGATIVE} failed (recommended; fails under --conformance-strict)*"])
    pytester.makeini("[pytest]\nconformance_strict = true\n")
    pytester.runpytest("-k", "negative_index", *QUIET).assert_outcomes(failed=1)
    pytester.makeini("[pytest]\n")
    error = pytester.runpytest(
        "-k", "negative_index", "-W", "error::torchcontract.conformance.ConformanceWarning", *QUIET
    )
    error.assert_outcomes(failed=1)


def test_the_slow_family_is_deselected_by_marker(pytester: pytest.Pytester) -> None:
    _write(pytester, 'Target(Pairs(), MapDataset, name="pairs")')
    result = pytester.runpytest(*FAST, "--collect-only", "-q", *QUIET)
    slow = sum(bool({"workers", "distributed"} & c.needs) for c in checks_for(MapDataset))
    total = len(checks_for(MapDataset))
    result.stdout.fnmatch_lines([f"{total - slow}/{total} tests collected ({slow} deselected)*"])


def test_a_deliberately_narrowed_run_passes_with_allow_empty(pytester: pytest.Pytester) -> None:
    _write(pytester, 'Target(Pairs(), MapDataset, name="pairs")')
    assert pytester.runpytest("-k", "getitems", *QUIET).ret == pytest.ExitCode.TESTS_FAILED
    allowed = pytester.runpytest("-k", "getitems", "--conformance-allow-empty", *QUIET)
    assert allowed.ret == pytest.ExitCode.OK
    assert "ran zero conformance checks" not in allowed.stdout.str()


def test_the_junit_xml_carries_each_checks_properties(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        'Target(Wrapping(), MapDataset, name="wrapping"), Target(Pairs(), MapDataset, name="pairs")',
    )
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest("-k", "index_past_end or negative_index", f"--junitxml={xml}", *QUIET)
    result.assert_outcomes(passed=3, failed=1, warnings=1)
    cases = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        cases[(properties["target"], properties["check_id"])] = properties
    assert len(cases) == 4
    failed = cases[("wrapping", PAST_END)]
    assert failed == {
        "check_id": PAST_END,
        "severity": "required",
        "protocol": "MapDataset",
        "target": "wrapping",
        "device": "cpu",
        "status": "failed",
        "message": failed["message"],
        "outcome": "failed",
    }
    assert "expected IndexError" in failed["message"]
    warned = cases[("wrapping", NEGATIVE)]
    assert (warned["severity"], warned["status"], warned["outcome"]) == ("recommended", "failed", "passed")


def test_the_markdown_summary_has_a_table_per_target_that_agrees_with_pytest(
    pytester: pytest.Pytester,
) -> None:
    _write(
        pytester, 'Target(Wrapping(), MapDataset, name="wrapping"), Target(Pairs(), MapDataset, name="pairs")'
    )
    summary = pytester.path / "out" / "summary.md"
    result = pytester.runpytest(*FAST, f"--conformance-summary-md={summary}", *QUIET)
    outcomes = result.parseoutcomes()
    text = summary.read_text()
    assert text.startswith("## torchcontract conformance")
    assert "### wrapping (MapDataset): FAILED" in text
    assert "### pairs (MapDataset): PASSED" in text
    row = next(line for line in text.splitlines() if f"`{PAST_END}`" in line and "| failed |" in line)
    assert row.startswith(f"| `{PAST_END}` | required | failed | ds[6] returned (0, 0)")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    counted = {word: sum(f"| {word} |" in line for line in rows) for word in ("passed", "warned", "failed")}
    # pytest passes a warned test (with a ConformanceWarning).
    assert counted["passed"] + counted["warned"] == outcomes["passed"]
    assert counted["warned"] == outcomes["warnings"] == 1
    assert counted["failed"] == outcomes["failed"]
    assert sum("| skipped |" in line for line in rows) == outcomes["skipped"]
    # The ini key does the same.
    pytester.makeini("[pytest]\nconformance_summary_md = ini.md\n")
    pytester.runpytest(*FAST, "-k", "pickle", *QUIET)
    assert "### pairs (MapDataset): PASSED" in (pytester.path / "ini.md").read_text()


def test_a_baseline_blesses_failures_and_fails_on_todo_stale_and_unknown_entries(
    pytester: pytest.Pytester,
) -> None:
    _write(
        pytester, 'Target(Wrapping(), MapDataset, name="wrapping"), Target(Pairs(), MapDataset, name="pairs")'
    )
    baseline = pytester.path / "baseline.toml"
    baseline.write_text(f'["wrapping"]\n"{PAST_END}" = "wraps round on purpose"\n')
    blessed = pytester.runpytest(*FAST, f"--conformance-baseline={baseline}", "-rx", *QUIET)
    assert blessed.ret == pytest.ExitCode.OK
    assert blessed.parseoutcomes()["xfailed"] == 1
    blessed.stdout.fnmatch_lines(["*XFAIL*wrapping-map_dataset.index_past_end*wraps round on purpose*"])

    baseline.write_text(
        f'["wrapping"]\n"{PAST_END}" = "TODO"\n"map_dataset.len_ok" = "renamed"\n'
        f'["pairs"]\n"{PICKLE}" = "was broken"\n'
        '["ghost"]\n"map_dataset.len_matches_iteration" = "gone"\n'
    )
    stale = pytester.runpytest(*FAST, f"--conformance-baseline={baseline}", *QUIET)
    assert stale.ret == pytest.ExitCode.TESTS_FAILED
    assert stale.parseoutcomes()["failed"] == 3  # the TODO, the unknown id, the passing check
    text = stale.stdout.str()
    assert f'["wrapping"] "{PAST_END}" = "TODO": write why the check fails' in text
    assert "names 'map_dataset.len_ok', which matches no check of MapDataset" in text
    assert "XPASS(strict)" in text
    assert "was broken" in text
    assert 'table ["ghost"] names no target of this run' in text


def test_write_baseline_writes_the_failures_with_todo_and_keeps_known_reasons(
    pytester: pytest.Pytester,
) -> None:
    from torchcontract.conformance._report.baseline import read_baseline

    _write(
        pytester, 'Target(Wrapping(), MapDataset, name="wrapping"), Target(Pairs(), MapDataset, name="pairs")'
    )
    written = pytester.path / "new.toml"
    pytester.runpytest(*FAST, f"--conformance-write-baseline={written}", *QUIET)
    assert read_baseline(written) == {"wrapping": {PAST_END: "TODO"}}
    # Run on it: the TODO fails until the reason is written; then the run passes.
    assert pytester.runpytest(*FAST, f"--conformance-baseline={written}", *QUIET).ret == 1
    written.write_text(written.read_text().replace('"TODO"', '"wraps"'))
    again = pytester.path / "again.toml"
    result = pytester.runpytest(
        *FAST, f"--conformance-baseline={written}", f"--conformance-write-baseline={again}", *QUIET
    )
    assert result.ret == pytest.ExitCode.OK
    assert read_baseline(again) == {"wrapping": {PAST_END: "wraps"}}


def test_an_unusable_baseline_is_a_usage_error_naming_the_file_and_line(pytester: pytest.Pytester) -> None:
    _write(pytester, 'Target(Pairs(), MapDataset, name="pairs")')
    (pytester.path / "bad.toml").write_text('["pairs"]\n"map_dataset.x" = \n')
    result = pytester.runpytest("--conformance-baseline=bad.toml", *QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    # tomllib (3.11+) and the subset parser of Python 3.10 word it differently; both name file and line.
    assert "baseline bad.toml" in result.stderr.str()
    assert "line 2" in result.stderr.str()


def test_a_disabled_plugin_is_one_clear_collection_error(pytester: pytest.Pytester) -> None:
    _write(pytester, 'Target(Pairs(), MapDataset, name="pairs")')
    result = pytester.runpytest_subprocess("-p", "no:torchcontract", *QUIET)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*1 error*"])
    assert "needs torchcontract's pytest plugin, which is disabled in this run" in result.stdout.str()
    assert "fixture 'target' not found" not in result.stdout.str()
