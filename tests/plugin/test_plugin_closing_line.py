"""What a person reads last agrees with pytest's exit status: a run that fails for a reason no test
carries (a target that verified nothing, a baseline table naming no target) shows that reason as an
error pytest counts in its final line and lists in its short summary; a baseline table is judged
against the targets the session collected, and only where it collected the whole suite; skips point
at the user's test; a warning is named by its public class."""

from __future__ import annotations

import re
import textwrap

import pytest

from .test_plugin import DATASETS, QUIET

PAST_END = "map_dataset.index_past_end_raises_index_error"
NEGATIVE = "map_dataset.negative_index_mirrors_python"
FAST = ("-m", "not conformance_slow")


def _suite(pytester: pytest.Pytester) -> None:
    """A suite of two conformance test files (one target each) and a baseline for both, set in the
    ini file."""
    for name, target in (("test_pairs", 'Target(Pairs(), MapDataset, name="pairs")'),
                         ("test_wrapping", 'Target(Wrapping(), MapDataset, name="wrapping")')):  # fmt: skip
        body = f"""
        @parametrize_with_checks([{target}])
        def test_conformance(target, check):
            check(target)
        """
        pytester.makepyfile(**{name: textwrap.dedent(DATASETS) + textwrap.dedent(body)})
    (pytester.path / "baseline.toml").write_text(f'["wrapping"]\n"{PAST_END}" = "wraps round on purpose"\n')
    pytester.makeini("[pytest]\nconformance_baseline = baseline.toml\n")


def test_a_table_of_a_target_in_another_test_file_is_no_failure_of_a_run_given_one_file(
    pytester: pytest.Pytester,
) -> None:
    _suite(pytester)
    whole = pytester.runpytest(*FAST, *QUIET)
    assert whole.ret == pytest.ExitCode.OK, whole.stdout.str()
    one = pytester.runpytest("test_pairs.py", *FAST, *QUIET)
    assert one.ret == pytest.ExitCode.OK, one.stdout.str()
    one.stdout.fnmatch_lines(['*table [[]"wrapping"[]] names no target of this run*not judged*'])
    # Deselected, it is still a target of the session: its table is not stale.
    deselected = pytester.runpytest("-k", "pairs", *FAST, *QUIET)
    assert deselected.ret == pytest.ExitCode.OK, deselected.stdout.str()
    assert "names no target" not in deselected.stdout.str()


def test_a_table_naming_no_target_fails_the_whole_suite_and_pytests_last_lines_say_so(
    pytester: pytest.Pytester,
) -> None:
    _suite(pytester)
    (pytester.path / "baseline.toml").write_text(
        f'["wrapping"]\n"{PAST_END}" = "wraps"\n["renamed"]\n"{PAST_END}" = "was wrapping"\n'
    )
    result = pytester.runpytest(*FAST, *QUIET)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = result.stdout.lines
    # The last line counts it, and the short summary above it names it.
    assert " 1 error " in lines[-1], lines[-1]
    assert not re.search(r"\d failed", lines[-1])  # no test failed: the run did
    result.stdout.fnmatch_lines(
        [
            "*short test summary info*",
            'ERROR baseline.toml - table [[]"renamed"[]] names no target of this run*',
        ]
    )
    # Off: -o conformance_baseline= (pytest's ini override), or an empty --conformance-baseline=.
    for off in (("-o", "conformance_baseline="), ("--conformance-baseline=",)):
        unset = pytester.runpytest(*FAST, *off, *QUIET)
        assert unset.ret == pytest.ExitCode.TESTS_FAILED  # wrapping's failure is no longer known
        assert "names no target" not in unset.stdout.str()
        assert unset.parseoutcomes()["failed"] == 1


def test_a_run_that_verified_nothing_says_why_in_its_last_lines(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    result = pytester.runpytest("-k", "getitems", *QUIET)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert " 2 errors " in result.stdout.lines[-1], result.stdout.lines[-1]
    result.stdout.fnmatch_lines(
        [
            "*short test summary info*",
            "ERROR test_pairs.py::test_conformance - pairs (MapDataset) ran zero*",
            "ERROR test_wrapping.py::test_conformance - wrapping (MapDataset) ran zero*",
        ]
    )
    assert pytester.runpytest("-k", "getitems", "--conformance-allow-empty", *QUIET).ret == pytest.ExitCode.OK


def test_skips_are_grouped_under_the_users_test_file(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    result = pytester.runpytest("-rs", *FAST, *QUIET)
    skips = [line for line in result.stdout.lines if line.startswith("SKIPPED")]
    assert skips, result.stdout.str()
    assert all("test_pairs.py:" in line or "test_wrapping.py:" in line for line in skips), skips
    assert "_parametrize.py" not in result.stdout.str()


def test_a_warning_turned_error_is_named_by_its_public_class(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    result = pytester.runpytest(
        "-k",
        "wrapping and negative_index",
        "-W",
        "error::torchcontract.conformance.ConformanceWarning",
        *QUIET,
    )
    result.assert_outcomes(failed=1)
    assert f"torchcontract.conformance.ConformanceWarning: {NEGATIVE}" in result.stdout.str()
    assert "_engine.ConformanceWarning" not in result.stdout.str()
