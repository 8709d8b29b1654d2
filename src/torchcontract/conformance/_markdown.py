"""A Markdown summary of a conformance run, fit for a CI job summary (``$GITHUB_STEP_SUMMARY``).

One overview table (one row per target), then one table per target: check, severity, outcome and
the first line of the message. Used by the pytest plugin (``--conformance-summary-md``), where the
outcomes are pytest's, and by the CLI (``--format markdown``), where they are the checks' statuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Row", "TargetSummary", "render"]

_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class Row:
    check_id: str
    severity: str
    outcome: str
    message: str = ""


@dataclass
class TargetSummary:
    target: str
    protocol: str
    verdict: str
    rows: list[Row] = field(default_factory=list)

    def counts(self, outcomes: Sequence[str]) -> dict[str, int]:
        return {outcome: sum(row.outcome == outcome for row in self.rows) for outcome in outcomes}


def _cell(text: str) -> str:
    """One table cell: the first line, bounded, with the characters that break a table escaped."""
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > _MESSAGE_CHARS:
        first = first[: _MESSAGE_CHARS - 1] + "…"
    return first.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("`", "'")


def render(summaries: Sequence[TargetSummary], outcomes: Sequence[str], title: str) -> str:
    """The Markdown text; ``outcomes`` are the count columns of the overview, in order."""
    lines = [f"## {title}", ""]
    if not summaries:
        return "\n".join([*lines, "No conformance checks ran.", ""])
    lines.append("| target | protocol | verdict | " + " | ".join(outcomes) + " |")
    lines.append("|---|---|---|" + "---|" * len(outcomes))
    for summary in summaries:
        counts = summary.counts(outcomes)
        lines.append(
            f"| {_cell(summary.target)} | {summary.protocol} | {summary.verdict} | "
            + " | ".join(str(counts[outcome]) for outcome in outcomes)
            + " |"
        )
    for summary in summaries:
        lines.extend(["", f"### {_cell(summary.target)} ({summary.protocol}): {summary.verdict}", ""])
        lines.extend(["| check | severity | outcome | message |", "|---|---|---|---|"])
        lines.extend(
            f"| `{row.check_id}` | {row.severity} | {row.outcome} | {_cell(row.message)} |"
            for row in summary.rows
        )
    lines.append("")
    return "\n".join(lines)
