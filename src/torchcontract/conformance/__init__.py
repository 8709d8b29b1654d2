"""Behavioural conformance checks for the protocols in :mod:`torchcontract.protocols`.

``check(obj, protocol, ...)`` runs every check registered for ``protocol`` and returns a
:class:`Report`; ``CHECKS`` is the registry (one entry per clause of SPEC.md, same ids).
"""

from torchcontract.conformance import checks as _checks  # registers the built-in checks
from torchcontract.conformance._engine import (
    DEFAULT_TIME_BUDGET_S,
    ConformanceWarning,
    Context,
    Options,
    Target,
    check,
)
from torchcontract.conformance._pytest import parametrize_with_checks
from torchcontract.conformance._registry import (
    CHECKS,
    PROTOCOLS,
    Check,
    checks_for,
    protocol_by_name,
    register_check,
)
from torchcontract.conformance._results import CheckResult, Report, RunReport, report_schema
from torchcontract.conformance.checks.distributed import check_distributed

del _checks

__all__ = [
    "CHECKS",
    "DEFAULT_TIME_BUDGET_S",
    "PROTOCOLS",
    "Check",
    "CheckResult",
    "ConformanceWarning",
    "Context",
    "Options",
    "Report",
    "RunReport",
    "Target",
    "check",
    "check_distributed",
    "checks_for",
    "parametrize_with_checks",
    "protocol_by_name",
    "register_check",
    "report_schema",
]
