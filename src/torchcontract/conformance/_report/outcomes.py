"""The one vocabulary in which the plugin and the CLI count and show results.

A result's *status* is the check's (:data:`~torchcontract.conformance._results.STATUSES`, what the JSON
report holds); its *outcome* is what the status means for the run under its :class:`Policy`: a failed
recommended check is ``warned`` (it passes, with a warning) unless the run is strict, where it is
``failed``. pytest counts a ``warned`` test as passed, with a ``ConformanceWarning``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from torchcontract.conformance._results import CheckResult

__all__ = ["OUTCOMES", "Outcome", "Policy", "Problem", "counts_text", "outcome", "tally"]

Outcome = Literal["passed", "failed", "error", "unverified", "warned", "skipped", "xfailed", "xpassed"]
# In the order of every count line and table column.
OUTCOMES: tuple[Outcome, ...] = (
    "passed",
    "failed",
    "error",
    "unverified",
    "warned",
    "skipped",
    "xfailed",
    "xpassed",
)


@dataclass(frozen=True)
class Policy:
    """What a run counts as failing beyond ``Report.passed``.

    ``strict``: a failed (or unverified) recommended check fails (``--conformance-strict``, the CLI's
    ``--strict``). ``allow_empty``: a target whose every check that ran was skipped may pass
    (``--conformance-allow-empty``); otherwise a run that verified nothing fails. ``xfail_strict``: an
    expected failure declared in code that passes fails the run (pytest's ``xfail_strict``; an entry of
    a baseline file that passes always does).
    """

    strict: bool = False
    allow_empty: bool = False
    xfail_strict: bool = False


@dataclass(frozen=True)
class Problem:
    """One reason a target, or a run, fails.

    ``summary``: a few words for the closing line ("map_dataset.x failed"). ``detail``: the whole
    sentence, with what to do, where no result row already shows it (a baseline entry still TODO, a
    stale expected failure); empty for a result's failure, whose row carries the message. ``marker``:
    how the terminal text tags the detail (``TODO``, ``STALE``, ...).
    """

    summary: str
    detail: str = ""
    marker: str = ""


def outcome(result: CheckResult, policy: Policy) -> Outcome:
    """``result``'s outcome under ``policy``."""
    if result.status in ("failed", "unverified") and result.severity == "recommended" and not policy.strict:
        return "warned"
    return result.status


def tally(results: Iterable[CheckResult], policy: Policy) -> dict[Outcome, int]:
    """How many results have each outcome, every outcome named, in :data:`OUTCOMES` order."""
    counts: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)
    for result in results:
        counts[outcome(result, policy)] += 1
    return counts


def counts_text(counts: Mapping[Outcome, int]) -> str:
    """``"13 passed, 1 failed, 1 warned, 3 skipped"``: the outcomes that occurred, in order."""
    return ", ".join(f"{n} {word}" for word, n in counts.items() if n) or "no results"
