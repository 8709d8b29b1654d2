"""Reading a report in the tests."""

from __future__ import annotations

from torchcontract.conformance import Report


def status(report: Report, check_id: str) -> tuple[str, str]:
    """The status and message of one check's result."""
    result = next(r for r in report.results if r.check_id == check_id)
    return result.status, result.message
