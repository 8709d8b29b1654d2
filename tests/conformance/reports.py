"""Making and reading reports in the tests."""

from __future__ import annotations

from typing import Any

from torchcontract.conformance import Report, check


def status(report: Report, check_id: str) -> tuple[str, str]:
    """The status and message of one check's result."""
    result = next(r for r in report.results if r.check_id == check_id)
    return result.status, result.message


def statuses(report: Report) -> dict[str, str]:
    """The status of every check's result, by check id."""
    return {result.check_id: result.status for result in report.results}


def check_then_release(obj: Any, protocol: Any, **options: Any) -> Report:
    """``check(obj, protocol, **options)`` of an object whose calls wait on its ``release`` event,
    which is set afterwards however check() ends: the calls check() gave up on then return, and their
    threads end with the test."""
    try:
        return check(obj, protocol, **options)
    finally:
        obj.release.set()
