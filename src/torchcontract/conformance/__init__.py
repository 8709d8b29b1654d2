"""Behavioural conformance checks for the protocols in :mod:`torchcontract.protocols`.

``check(obj, protocol, ...)`` runs every check registered for ``protocol`` and returns a
:class:`Report`; ``CHECKS`` is the registry (one entry per clause of SPEC.md, same ids).

The names are imported on first use (PEP 562), so that importing the pytest plugin, which pytest
does at every start, imports neither the engine nor NumPy. Type checkers see real imports instead of
the module's ``__getattr__``: to them, as at run time, a misspelt name is an error, not ``Any``.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from torchcontract.conformance._check_distributed import check_distributed
    from torchcontract.conformance._engine import (
        DEFAULT_TIME_BUDGET_S,
        ConformanceWarning,
        Context,
        Options,
        Target,
        check,
    )
    from torchcontract.conformance._parametrize import parametrize_with_checks
    from torchcontract.conformance._registry import (
        CHECKS,
        PROTOCOLS,
        Check,
        checks_for,
        protocol_by_name,
        register_check,
    )
    from torchcontract.conformance._results import CheckResult, Report, RunReport, report_schema

# name -> the module that defines it
_LAZY = {
    "DEFAULT_TIME_BUDGET_S": "_engine",
    "ConformanceWarning": "_engine",
    "Context": "_engine",
    "Options": "_engine",
    "Target": "_engine",
    "check": "_engine",
    "parametrize_with_checks": "_parametrize",
    "CHECKS": "_registry",
    "PROTOCOLS": "_registry",
    "Check": "_registry",
    "checks_for": "_registry",
    "protocol_by_name": "_registry",
    "register_check": "_registry",
    "CheckResult": "_results",
    "Report": "_results",
    "RunReport": "_results",
    "report_schema": "_results",
    "check_distributed": "_check_distributed",
}

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


def _import_on_first_use(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _importlib.import_module(f"{__name__}.checks")  # the built-in checks are registered first
    value = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if not _typing.TYPE_CHECKING:
    # Bound at run time only: a module __getattr__ that a type checker sees turns every name, a
    # misspelt one too, into a valid attribute (of its return type).
    __getattr__ = _import_on_first_use
