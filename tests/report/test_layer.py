"""The reporting layer's rules, each decided once: a result's outcome under a policy, a target's
verdict and its reasons, how a baseline applies to a target, what a run writes as a baseline, and the
closing line."""

from __future__ import annotations

from torchcontract.conformance import CheckResult, Report, RunReport, Target
from torchcontract.conformance._report.outcomes import Policy, counts_text, outcome, tally
from torchcontract.conformance._report.plan import plan_baseline, written_baseline
from torchcontract.conformance._report.verdict import judge, judge_run
from torchcontract.protocols import MapDataset

PAST_END = "map_dataset.index_past_end_raises_index_error"
NEGATIVE = "map_dataset.negative_index_mirrors_python"
PICKLE = "map_dataset.pickle_round_trip"


def _result(check_id: str, status: str, severity: str = "required", dtype: str | None = None) -> CheckResult:
    return CheckResult(check_id, "MapDataset", severity, status, "why", 0.0, dtype=dtype)  # type: ignore[arg-type]


def _report(*results: CheckResult, stale: tuple[str, ...] = (), name: str = "t") -> Report:
    return Report(name, "MapDataset", "cpu", results, stale_expected_failures=stale)


def test_a_failed_recommended_check_is_warned_unless_strict() -> None:
    warned = _result(NEGATIVE, "failed", "recommended")
    assert outcome(warned, Policy()) == "warned"
    assert outcome(warned, Policy(strict=True)) == "failed"
    assert outcome(_result(NEGATIVE, "unverified", "recommended"), Policy()) == "warned"
    report = _report(_result(PAST_END, "passed"), warned, _result(PICKLE, "skipped"))
    assert counts_text(tally(report.results, Policy())) == "1 passed, 1 warned, 1 skipped"
    assert judge(report, Policy()).passed
    assert judge(report, Policy(strict=True)).word == "FAILED"
    assert [p.summary for p in judge(report, Policy(strict=True)).problems] == [
        f"{NEGATIVE} failed (recommended, strict)"
    ]


def test_a_run_fails_on_what_report_passed_does_not_see() -> None:
    assert judge(_report(_result(PAST_END, "skipped")), Policy()).word == "FAILED"  # nothing verified
    assert judge(_report(_result(PAST_END, "skipped")), Policy(allow_empty=True)).passed
    stale = judge(_report(_result(PAST_END, "passed"), stale=("map_dataset.len_ok",)), Policy())
    assert [p.marker for p in stale.problems] == ["STALE"]
    xpassed = _report(_result(PAST_END, "xpassed"))
    assert judge(xpassed, Policy()).passed
    assert not judge(xpassed, Policy(xfail_strict=True)).passed
    assert judge(_report(_result(PAST_END, "error")), Policy()).word == "ERROR"


class Pairs:
    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> tuple[int, int]:
        if not -6 <= index < 6:
            raise IndexError(index)
        return (index % 6, (index % 6) ** 2)


def test_a_baseline_entry_still_todo_fails_unless_the_code_declares_it() -> None:
    baseline = {"t": {PAST_END: "TODO", NEGATIVE: "TODO", "map_dataset.nope": "TODO", PICKLE: "known"}}
    declared = Target(Pairs(), MapDataset, name="t", expected_failures={NEGATIVE: "declared in code"})
    planned, use = plan_baseline(declared, baseline, "b.toml")
    assert use is not None
    # The code's declaration wins over the file's TODO; a TODO naming no check is stale, not TODO.
    assert use.todo == {PAST_END}
    assert set(planned.expected_failures) == {NEGATIVE, PICKLE, "map_dataset.nope"}
    assert planned.expected_failures[NEGATIVE] == "declared in code"
    assert use.from_file == {PICKLE, "map_dataset.nope"}
    assert use.owns(PICKLE)
    assert not use.owns(NEGATIVE)
    assert declared.expected_failures == {NEGATIVE: "declared in code"}  # the user's Target is as it was
    report = _report(_result(PAST_END, "failed"), _result(PICKLE, "xpassed"), stale=("map_dataset.nope",))
    summaries = [problem.summary for problem in judge(report, Policy(), use).problems]
    assert summaries == [
        f"{PAST_END} failed",
        f"baseline entry '{PAST_END}' is still TODO",
        f"baseline entry '{PICKLE}' passes now",
        "baseline entry 'map_dataset.nope' matches no check",
    ]


def test_a_written_baseline_keeps_known_reasons_and_names_a_dtype() -> None:
    run = RunReport(
        (
            _report(
                _result(PAST_END, "failed"),
                _result(NEGATIVE, "failed", "recommended"),
                _result(PICKLE, "xfailed"),
                _result("map_dataset.samples_collate", "failed", dtype="float64"),
            ),
        )
    )
    current = {"t": {PICKLE: "pickles a lock"}}
    assert written_baseline(run, current, Policy()) == {
        "t": {PAST_END: "TODO", PICKLE: "pickles a lock", "map_dataset.samples_collate[float64]": "TODO"}
    }
    strict = written_baseline(run, current, Policy(strict=True))
    assert strict["t"][NEGATIVE] == "TODO"


def test_the_closing_line_names_each_failing_targets_first_reasons() -> None:
    run = RunReport(
        (
            _report(_result(PAST_END, "passed"), name="fine"),
            _report(
                _result(PAST_END, "failed"),
                _result(PICKLE, "failed"),
                _result("map_dataset.samples_collate", "unverified"),
                name="broken",
            ),
        )
    )
    judged = judge_run(run, Policy())
    assert judged.closing_line("torchcontract check") == (
        "torchcontract check: FAILED: 1 of 2 targets failed: broken: "
        f"{PAST_END} failed, {PICKLE} failed and 1 more (1 passed, 2 failed, 1 unverified)"
    )
    assert judge_run(RunReport((run.reports[0],)), Policy()).closing_line() == (
        "torchcontract: PASSED: 1 target (1 passed)"
    )
