"""The verdict of each target and of a run, for the pytest plugin and the CLI alike.

A target's verdict starts from ``Report.passed`` (no required clause failed or is unverified, no
internal error) and adds what a run of a test suite or of the command line also fails on: a failed
recommended check under a strict policy, an expected failure that names no check (or, under
``xfail_strict``, one declared in code that passes), the problems of its baseline table, and a target
whose every check that ran was skipped (a run that verified nothing is not green, unless the policy
allows it). A run fails when a target fails or when the run itself has a problem (a baseline table that
names no target, a file that could not be written).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from torchcontract.conformance._report.outcomes import Policy, Problem, counts_text, outcome, tally

if TYPE_CHECKING:
    from torchcontract.conformance._report.plan import BaselineUse
    from torchcontract.conformance._results import Report, RunReport

__all__ = ["NOTHING_VERIFIED", "JudgedRun", "Verdict", "judge", "judge_run"]

NOTHING_VERIFIED = "ran zero conformance checks (every check that ran was skipped): nothing was verified"
# How many of a failing target's reasons the closing line names before "and N more".
_SHOWN_REASONS = 2


@dataclass(frozen=True)
class Verdict:
    """A target's verdict: it passed when nothing is wrong; ``internal_error``: torchcontract's own
    code failed in one of its checks (nothing is known about the object there)."""

    problems: tuple[Problem, ...] = ()
    internal_error: bool = False

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def word(self) -> Literal["PASSED", "FAILED", "ERROR"]:
        """How every output shows the verdict."""
        if self.internal_error:
            return "ERROR"
        return "PASSED" if self.passed else "FAILED"

    @classmethod
    def of_report(cls, report: Report) -> Verdict:
        """``Report.passed`` as a verdict, without a run's rules (what ``print(check(...))`` shows)."""
        failing = tuple(
            Problem(f"{result.label} {result.status}") for result in report.results if result.blocks_pass
        )
        return cls(failing, bool(report.errors))


def judge(report: Report, policy: Policy, baseline: BaselineUse | None = None) -> Verdict:
    """``report``'s verdict under ``policy``, with the problems of its baseline table."""
    problems: list[Problem] = []
    for result in report.results:
        word = outcome(result, policy)
        if word == "error":
            problems.append(Problem(f"internal error in {result.label}"))
        elif word in ("failed", "unverified"):
            lead = " (recommended, strict)" if result.severity == "recommended" else ""
            problems.append(Problem(f"{result.label} {word}{lead}"))
        elif (
            word == "xpassed"
            and policy.xfail_strict
            and not (baseline and baseline.owns(result.check_id, result.dtype))
        ):
            problems.append(
                Problem(
                    f"{result.label} passed but is an expected failure",
                    f"{result.label} passed but is declared an expected failure (xfail_strict): remove the "
                    "declaration",
                    "XPASS",
                )
            )
    problems.extend(
        Problem(
            f"expected failure {stale!r} matches no check",
            f"expected failure {stale!r} matches no check of {report.protocol}; remove or rename it so it "
            "cannot hide a regression",
            "STALE",
        )
        for stale in report.stale_expected_failures
        if baseline is None or stale not in baseline.from_file
    )
    if baseline is not None:
        problems.extend(baseline.problems(report))
    if not policy.allow_empty and report.results and all(r.status == "skipped" for r in report.results):
        problems.append(Problem("nothing verified", NOTHING_VERIFIED, "EMPTY"))
    return Verdict(tuple(problems), bool(report.errors))


@dataclass(frozen=True)
class JudgedRun:
    """A run's reports with their verdicts (one each, in order) and the problems of the run itself."""

    run: RunReport
    verdicts: tuple[Verdict, ...]
    problems: tuple[Problem, ...] = ()
    policy: Policy = dataclasses.field(default_factory=Policy)

    @property
    def passed(self) -> bool:
        return not self.problems and all(verdict.passed for verdict in self.verdicts)

    @property
    def internal_error(self) -> bool:
        return any(verdict.internal_error for verdict in self.verdicts)

    @property
    def word(self) -> Literal["PASSED", "FAILED", "ERROR"]:
        if self.internal_error:
            return "ERROR"
        return "PASSED" if self.passed else "FAILED"

    def pairs(self) -> list[tuple[Report, Verdict]]:
        return list(zip(self.run.reports, self.verdicts, strict=True))

    def closing_line(self, prefix: str = "torchcontract") -> str:
        """The last line a person reads: the verdict and why, naming each failing target's first
        reasons and each problem of the run."""
        reports = self.run.reports
        counts = counts_text(tally((r for report in reports for r in report.results), self.policy))
        noun = "target" if len(reports) == 1 else "targets"
        if self.passed:
            return f"{prefix}: PASSED: {len(reports)} {noun} ({counts})"
        reasons = []
        for report, verdict in self.pairs():
            if verdict.passed:
                continue
            shown = [problem.summary for problem in verdict.problems[:_SHOWN_REASONS]]
            more = len(verdict.problems) - len(shown)
            reasons.append(f"{report.target}: {', '.join(shown)}" + (f" and {more} more" if more else ""))
        reasons.extend(problem.summary for problem in self.problems)
        failing = sum(not verdict.passed for verdict in self.verdicts)
        lead = f"{failing} of {len(reports)} {noun} failed" if failing else "the run failed"
        return f"{prefix}: {self.word}: {lead}: {'; '.join(reasons)} ({counts})"


def judge_run(
    run: RunReport,
    policy: Policy,
    baselines: Mapping[tuple[str, str], BaselineUse] | None = None,
    problems: Sequence[Problem] = (),
) -> JudgedRun:
    """Every report of ``run`` judged under ``policy`` (``baselines``: (target name, protocol name) ->
    what its baseline table changed), with the run's own ``problems``."""
    uses = baselines or {}
    verdicts = tuple(
        judge(report, policy, uses.get((report.target, report.protocol))) for report in run.reports
    )
    return JudgedRun(run, verdicts, tuple(problems), policy)
