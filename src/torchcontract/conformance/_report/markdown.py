"""The Markdown summary of a judged run, fit for a CI job summary (``$GITHUB_STEP_SUMMARY``): the one
rendering that the pytest plugin (``--conformance-summary-md``) and the CLI (``--format markdown``) write.

The verdict and why first (the closing line), one overview table (one row per target: its verdict and
the count of each outcome), the problems of the run, then one table per target: check, severity,
outcome and the first line of the message, with the target's problems that no row shows (a baseline
entry still TODO, a stale expected failure).
"""

from __future__ import annotations

from torchcontract.conformance._report.outcomes import OUTCOMES, outcome, tally
from torchcontract.conformance._report.verdict import JudgedRun

__all__ = ["TITLE", "render_markdown"]

TITLE = "torchcontract conformance"
_MESSAGE_CHARS = 200


def _cell(text: str) -> str:
    """One table cell: the first line, bounded, with the characters that break a table escaped."""
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > _MESSAGE_CHARS:
        first = first[: _MESSAGE_CHARS - 1] + "…"
    return first.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("`", "'")


def render_markdown(judged: JudgedRun, title: str = TITLE) -> str:
    """The Markdown text of ``judged``."""
    lines = [f"## {title}", ""]
    if not judged.run.reports:
        return "\n".join([*lines, "No conformance checks ran.", ""])
    lines.extend([_cell(judged.closing_line(prefix="**torchcontract**")), ""])
    lines.append("| target | protocol | verdict | " + " | ".join(OUTCOMES) + " |")
    lines.append("|---|---|---|" + "---|" * len(OUTCOMES))
    for report, verdict in judged.pairs():
        counts = tally(report.results, judged.policy)
        lines.append(
            f"| {_cell(report.target)} | {report.protocol} | {verdict.word} | "
            + " | ".join(str(counts[word]) for word in OUTCOMES)
            + " |"
        )
    if judged.problems:
        lines.append("")
        lines.extend(f"- {_cell(problem.detail or problem.summary)}" for problem in judged.problems)
    for report, verdict in judged.pairs():
        lines.extend(["", f"### {_cell(report.target)} ({report.protocol}): {verdict.word}", ""])
        details = [problem for problem in verdict.problems if problem.detail]
        if details:
            lines.extend(f"- {_cell(problem.detail)}" for problem in details)
            lines.append("")
        lines.extend(["| check | severity | outcome | message |", "|---|---|---|---|"])
        lines.extend(
            f"| `{result.label}` | {result.severity} | {outcome(result, judged.policy)} | "
            f"{_cell(result.message)} |"
            for result in report.results
        )
    lines.append("")
    return "\n".join(lines)
