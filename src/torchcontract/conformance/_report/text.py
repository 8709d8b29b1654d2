"""The terminal text of a run, in the words of :mod:`.outcomes`: a target's block (one line per check,
with the messages of those that did not pass), the overview table, the per-target line of the pytest
plugin's summary, and the details of what did not pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torchcontract.conformance._report.outcomes import OUTCOMES, Outcome, Policy, counts_text, outcome, tally
from torchcontract.conformance._report.verdict import Verdict

if TYPE_CHECKING:
    from torchcontract.conformance._results import Report

__all__ = ["details", "overview_table", "report_block", "target_line"]

# check()'s: a failed recommended check warns.
_API = Policy()
# How each outcome is tagged in a target's block.
_MARKERS: dict[Outcome, str] = {
    "passed": "ok",
    "failed": "FAIL",
    "error": "ERROR",
    "unverified": "UNVERIF",
    "warned": "WARN",
    "skipped": "skip",
    "xfailed": "xfailed",
    "xpassed": "xpassed",
}
# The outcomes whose messages are worth reading: every one but a pass or a skip.
_NOTABLE = ("failed", "error", "unverified", "warned", "xpassed")


def _problem_lines(verdict: Verdict) -> list[str]:
    return [f"  {problem.marker:<7} {problem.detail}" for problem in verdict.problems if problem.detail]


def report_block(report: Report, verdict: Verdict | None = None, policy: Policy | None = None) -> str:
    """``report`` as a block of lines: a header with the verdict and the counts, then one line per
    check (with the message of each that did not pass), then the problems of its verdict that no line
    shows. Without ``verdict``: ``Report.passed``'s, and the stale expected failures."""
    shown = verdict if verdict is not None else Verdict.of_report(report)
    policy = policy if policy is not None else _API
    counts = counts_text(tally(report.results, policy))
    lines = [f"{report.target} as {report.protocol} on {report.device}: {shown.word} ({counts})"]
    for result in report.results:
        word = outcome(result, policy)
        severity = "" if result.severity == "required" else " (recommended)"
        lines.append(f"  {_MARKERS[word]:<7} {result.label}{severity}")
        if result.status != "passed" and result.message:
            lines.extend(f"          {line}" for line in result.message.splitlines())
    if verdict is None:
        lines.extend(
            f"  {'STALE':<7} expected failure {stale!r} matches no check of {report.protocol}"
            for stale in report.stale_expected_failures
        )
    else:
        lines.extend(_problem_lines(verdict))
    return "\n".join(lines)


def target_line(report: Report, verdict: Verdict, policy: Policy) -> str:
    """One line for a target: ``"pairs (MapDataset): PASSED: 14 passed, 1 warned, 3 skipped"``, and
    the first reasons of a failing one."""
    line = (
        f"{report.target} ({report.protocol}): {verdict.word}: {counts_text(tally(report.results, policy))}"
    )
    if verdict.problems:
        reasons = [problem.summary for problem in verdict.problems[:3]]
        more = len(verdict.problems) - len(reasons)
        line += f" ({', '.join(reasons)}" + (f" and {more} more)" if more else ")")
    return line


def overview_table(pairs: Sequence[tuple[Report, Verdict]], policy: Policy) -> str:
    """One row per target: its name, protocol, the count of each outcome and its verdict."""
    headers = ["target", "protocol", *OUTCOMES, "verdict"]
    rows = [
        [
            report.target,
            report.protocol,
            *map(str, tally(report.results, policy).values()),
            verdict.word,
        ]
        for report, verdict in pairs
    ]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, ["-" * width for width in widths], *rows]
    ]
    return "\n".join(lines)


def details(pairs: Sequence[tuple[Report, Verdict]], policy: Policy) -> str:
    """The checks of every target that did not pass or skip, each with its message, and the problems
    of each verdict that no check shows."""
    lines = []
    for report, verdict in pairs:
        for result in report.results:
            word = outcome(result, policy)
            if word in _NOTABLE:
                severity = "" if result.severity == "required" else " (recommended)"
                lines.append(f"{report.target}: {result.label}{severity}: {word}")
                lines.extend(f"    {line}" for line in result.message.splitlines())
        lines.extend(f"{report.target}: {problem.detail}" for problem in verdict.problems if problem.detail)
    return "\n".join(lines)
