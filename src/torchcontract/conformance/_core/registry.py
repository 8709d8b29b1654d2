"""The registry of checks: each check is a small function whose metadata is data."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeVar, get_args

from torchcontract import protocols
from torchcontract.conformance._core.errors import ConformanceWarning

__all__ = [
    "CHECKS",
    "PROTOCOLS",
    "RENAMED",
    "Check",
    "Need",
    "Severity",
    "checks_for",
    "current_id",
    "protocol_by_name",
    "protocol_id",
    "register_check",
]

Severity = Literal["required", "recommended"]
# What a check needs beyond the object itself: an installed torch, a CUDA device, example inputs,
# worker processes, a process group, the target's world_size (the clauses across ranks).
# What a check needs before it can say anything about the object; the engine skips a check whose
# needs are not met, naming the missing one, before any snapshot or call (session.missing_needs):
# "accelerator": compares a CUDA device with the CPU (a per-device check, skipped on device "cpu");
# "factory", "compile", "export": the target's factory= and the opt-in declarations of the same names.
Need = Literal[
    "torch",
    "cuda",
    "accelerator",
    "example_inputs",
    "workers",
    "distributed",
    "world_size",
    "factory",
    "compile",
    "export",
]
# A check function takes the Context (``_core.context``, which ranks above the registry: a context
# knows the Check it runs) and returns None; the decorator returns the function as it is typed.
CheckFunction = Callable[[Any], None]
_F = TypeVar("_F", bound=CheckFunction)

PROTOCOLS: Mapping[str, type[Any]] = MappingProxyType(
    {
        "CallableModule": protocols.CallableModule,
        "Module": protocols.Module,
        "MapDataset": protocols.MapDataset,
        "IterableDataset": protocols.IterableDataset,
        "Sampler": protocols.Sampler,
        "Loader": protocols.Loader,
        "CollateFn": protocols.CollateFn,
        "Stateful": protocols.Stateful,
    }
)
# A Module is a CallableModule: its targets run both protocols' checks.
_PARENTS: Mapping[type[Any], tuple[type[Any], ...]] = {protocols.Module: (protocols.CallableModule,)}
_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def protocol_id(protocol: type[Any]) -> str:
    """``MapDataset`` -> ``map_dataset``: the prefix of its check ids."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", protocol.__name__).lower()


def protocol_by_name(name: str) -> type[Any]:
    """The protocol called ``name`` (``MapDataset`` or ``map_dataset``); KeyError naming the choices."""
    for protocol_name, protocol in PROTOCOLS.items():
        if name in (protocol_name, protocol_id(protocol)):
            return protocol
    raise KeyError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")


@dataclass(frozen=True)
class Check:
    """One registered check: the clause of SPEC.md with the same id, and the function that tests it."""

    check_id: str
    protocol: type[Any]
    severity: Severity
    rule: str
    needs: frozenset[Need]
    requires: tuple[str, ...]
    per_device: bool
    func: CheckFunction
    # The torchcontract version that added the check (SPEC.md, "Stable ids").
    since: str = "0.1.0"
    # Runs once per dtype of the target's dtypes= option (a Module or CallableModule), on a converted copy.
    per_dtype: bool = False

    @property
    def protocol_name(self) -> str:
        return self.protocol.__name__


_REGISTRY: dict[str, Check] = {}
_BUILTIN_LOADED = False
# Renamed checks (SPEC.md, "Stable ids"): old id -> (new id, the version that renamed it). An old id
# still names its check for one minor release, with a warning; none has been renamed yet.
_RENAMED: dict[str, tuple[str, str]] = {}
RENAMED: Mapping[str, tuple[str, str]] = MappingProxyType(_RENAMED)


def current_id(check_id: str) -> str:
    """``check_id``, or the id of the check it was renamed to, with a warning naming both."""
    renamed = _RENAMED.get(check_id)
    if renamed is None:
        return check_id
    new_id, version = renamed
    warnings.warn(
        f"check id {check_id!r} was renamed {new_id!r} in torchcontract {version}; the old id works for "
        "this minor release only: use the new one",
        ConformanceWarning,
        stacklevel=3,
    )
    return new_id


def _load_builtin_checks() -> None:
    """Register the built-in checks on first use of the registry: importing the package stays cheap
    (the pytest plugin is imported at every pytest start), and any way into the registry sees them."""
    global _BUILTIN_LOADED
    if not _BUILTIN_LOADED:
        _BUILTIN_LOADED = True
        import torchcontract.conformance.checks  # noqa: F401  (registers them)


class _Registry(Mapping[str, Check]):
    """check id -> :class:`Check`, read-only, built-in checks first (loaded on first access)."""

    def __getitem__(self, check_id: str) -> Check:
        _load_builtin_checks()
        return _REGISTRY[check_id]

    def __iter__(self) -> Iterator[str]:
        _load_builtin_checks()
        return iter(_REGISTRY)

    def __len__(self) -> int:
        _load_builtin_checks()
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return f"CHECKS({len(self)} checks)"


CHECKS: Mapping[str, Check] = _Registry()


def register_check(
    check_id: str,
    *,
    protocol: type[Any],
    severity: Severity,
    needs: tuple[Need, ...] = (),
    requires: tuple[str, ...] = (),
    per_device: bool = False,
    per_dtype: bool = False,
    since: str = "0.1.0",
) -> Callable[[_F], _F]:
    """Register ``func(ctx)`` as the check ``check_id`` for targets of ``protocol``.

    The first paragraph of the function's docstring is the check's one-line rule. It signals a violation with
    ``ctx.fail(...)`` and non-applicability with ``ctx.skip(...)``; returning normally means passed.
    ``requires`` names checks whose failure makes this one meaningless: it is then skipped, naming
    them. ``per_device`` checks run once per device (``device=`` of :func:`check`); ``per_dtype``
    checks of a (Callable)Module once per dtype of the target's ``dtypes=`` option, on a deep copy
    converted with ``.to(dtype)`` (and once, on the module as it is, without it). ``since``: the
    torchcontract version that added the check (ids are stable: SPEC.md, "Stable ids").
    """
    _load_builtin_checks()
    if not _ID_PATTERN.match(check_id):
        raise ValueError(f"check id {check_id!r} must be dotted lower_snake_case, e.g. 'map_dataset.x'")
    if protocol not in PROTOCOLS.values():
        raise TypeError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    if severity not in get_args(Severity):
        raise ValueError(f"severity must be 'required' or 'recommended', not {severity!r}")
    unknown_needs = set(needs) - set(get_args(Need))
    if unknown_needs:
        raise ValueError(f"unknown needs {sorted(unknown_needs)}; choose from {get_args(Need)}")
    if per_dtype and protocol not in (protocols.CallableModule, protocols.Module):
        raise ValueError(
            f"{check_id}: per_dtype is for CallableModule and Module checks (dtypes= converts a module)"
        )
    missing = [name for name in requires if name not in _REGISTRY]
    if missing:
        raise ValueError(f"{check_id} requires unregistered checks {missing}; register them first")

    def decorator(func: _F) -> _F:
        if check_id in _REGISTRY:
            raise ValueError(f"a check with id {check_id!r} is already registered")
        paragraph = (func.__doc__ or "").strip().split("\n\n")[0]
        rule = " ".join(line.strip() for line in paragraph.splitlines())
        if not rule:
            raise ValueError(f"check {check_id} needs a docstring: its first paragraph is the rule")
        _REGISTRY[check_id] = Check(
            check_id=check_id,
            protocol=protocol,
            severity=severity,
            rule=rule,
            needs=frozenset(needs),
            requires=tuple(requires),
            per_device=per_device,
            func=func,
            since=since,
            per_dtype=per_dtype,
        )
        return func

    return decorator


def _lineage(protocol: type[Any]) -> Iterator[type[Any]]:
    for parent in _PARENTS.get(protocol, ()):
        yield from _lineage(parent)
    yield protocol


def checks_for(protocol: type[Any]) -> list[Check]:
    """Every check that applies to a target of ``protocol``, inherited protocols' checks first."""
    _load_builtin_checks()
    lineage = list(_lineage(protocol))
    return sorted(
        (check for check in _REGISTRY.values() if check.protocol in lineage),
        key=lambda check: lineage.index(check.protocol),
    )
