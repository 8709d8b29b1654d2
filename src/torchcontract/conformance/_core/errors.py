"""How a check ends, as exceptions, and the warning of the suite: a leaf, which every layer may import.

A check function ends by returning (passed) or by raising one of :class:`CheckFailure`,
:class:`CheckSkipped` or :class:`CheckUnverified` (``ctx.fail``, ``ctx.skip``, ``ctx.unverified``);
:class:`HungCall` is raised in the check's thread when a call into the object, bounded in a thread of
its own, did not return. Any other exception is torchcontract's own (an internal ``error`` result),
unless it escaped from a call into the object (:func:`unexpected` describes that one).
"""

from __future__ import annotations

import re

from torchcontract.conformance._runtime.origin import raised_at

__all__ = [
    "GRACE_S",
    "ISSUES_URL",
    "CheckFailure",
    "CheckSkipped",
    "CheckUnverified",
    "ConformanceWarning",
    "HungCall",
    "plain_message",
    "unexpected",
]

# A hung call cannot be interrupted, so the thread running a check gets a little longer than the
# budget that the check itself watches, to tell "slow" (a failure) from "hung" (stop this object).
GRACE_S = 2.0

# Where an internal error of torchcontract (never the object's failure) asks to be reported.
ISSUES_URL = "https://github.com/torchcontract/torchcontract/issues"


# A terminal's escape sequences (colours, bold: "\x1b[1m"), which some libraries put in their exceptions'
# messages (torch.load's weights-only error): CSI sequences, OSC sequences, and any other lone escape.
_TERMINAL_CODES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-_])?")


def plain_message(text: str) -> str:
    """``text`` without terminal escape sequences: a result's message is read in logs, JUnit XML, JSON
    and Markdown, where they show as garbage or hide what follows."""
    return _TERMINAL_CODES.sub("", text)


class ConformanceWarning(UserWarning):
    """A failed recommended check, or an expected failure that names no check."""

    # Named by its public path in tracebacks and warning filters (-W error::...), not by this module's.
    __module__ = "torchcontract.conformance"


class CheckFailure(Exception):
    """Raised inside a check (by ``ctx.fail``): the object violates the check's clause."""


class CheckSkipped(Exception):
    """Raised inside a check (by ``ctx.skip``): the clause does not apply, and why."""


class CheckUnverified(Exception):
    """Raised inside a check (by ``ctx.unverified``): the clause applies but could not be verified
    (the time budget ran out first). Not a pass: a required clause left unverified fails the report."""


class HungCall(BaseException):
    """A call into the object, run in a thread of its own, did not return within the budget."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def unexpected(what: str, error: BaseException) -> str:
    """The failure message of an object call ``what`` that raised ``error``: where it was raised (in
    the object's code: a built-in's exception names no place), and the call as the reproducer."""
    location = raised_at(error)
    where = f" ({location})" if location else ""
    return (
        f"{what} raised {type(error).__name__}: {error}{where}; expected it to succeed.\n  reproduce: {what}"
    )
