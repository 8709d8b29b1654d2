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
    from torchcontract.conformance._core.arguments import DEFAULT_TIME_BUDGET_S
    from torchcontract.conformance._core.context import Context
    from torchcontract.conformance._core.errors import ConformanceWarning
    from torchcontract.conformance._core.options import Options
    from torchcontract.conformance._core.registry import (
        CHECKS,
        PROTOCOLS,
        Check,
        checks_for,
        protocol_by_name,
        register_check,
    )
    from torchcontract.conformance._core.target import Target, check
    from torchcontract.conformance._parametrize import parametrize_with_checks
    from torchcontract.conformance._results import CheckResult, Report, RunReport, report_schema

# name -> the module that defines it
_LAZY = {
    "DEFAULT_TIME_BUDGET_S": "_core.arguments",
    "ConformanceWarning": "_core.errors",
    "Context": "_core.context",
    "Options": "_core.options",
    "Target": "_core.target",
    "check": "_core.target",
    "parametrize_with_checks": "_parametrize",
    "CHECKS": "_core.registry",
    "PROTOCOLS": "_core.registry",
    "Check": "_core.registry",
    "checks_for": "_core.registry",
    "protocol_by_name": "_core.registry",
    "register_check": "_core.registry",
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
