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
    "Touches",
    "checks_for",
    "current_id",
    "protocol_by_name",
    "protocol_id",
    "register_check",
]

Severity = Literal["required", "recommended"]
# What a check needs beyond the object itself, before it can say anything about the object; the
# engine skips a check whose needs are not met, naming the missing one, before any snapshot or call
# (session.missing_needs): an installed torch, a CUDA device, example inputs, DataLoader worker
# processes, a process group, the target's world_size (the clauses across ranks);
# "accelerator": compares a CUDA device with the CPU (a per-device check, skipped on device "cpu");
# "factory", "compile", "export", "gradcheck": the target's factory= and the opt-in declarations of the
# same names;
# "fresh_interpreter": rebuilds the object in torchcontract's fresh interpreter (which a run with
# such a check starts early, overlapping the checks before it).
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
    "gradcheck",
    "fresh_interpreter",
]
# What a check may change of the object, which decides what the engine snapshots before the check and
# puts back after it (session.Session, one place for every check):
# "object" (the default, safe for a check that declares nothing): anything reachable from it; its whole
#   state is snapshotted and restored (checks._preserve);
# "copies": nothing of the object itself: the check calls the object only to copy it (copy.deepcopy(m))
#   or to read it (m.state_dict(), m.named_parameters(), repr(m)), and every call that may change state
#   goes to a copy; within one run nothing is put back after it (the run's last restore still is), and
#   the test suite holds it to that (tests/engine/test_declared_touches.py);
# "itself": the check puts back what it changes itself (the sampler, loader and Stateful checks
#   iterate a working copy, restoring the object when it cannot be copied: checks._state.restored).
Touches = Literal["object", "copies", "itself"]
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
_VERSION_PATTERN = re.compile(r"^\d+(\.\d+)*([a-z0-9.+-]*)$")


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
    since: str
    # Runs once per dtype of the target's dtypes= option (a Module or CallableModule), on a converted copy.
    per_dtype: bool = False
    # What it may change of the object (:data:`Touches`): what the engine snapshots and restores.
    touches: Touches = "object"

    @property
    def protocol_name(self) -> str:
        return self.protocol.__name__


_REGISTRY: dict[str, Check] = {}
# check function -> its id, for requires= given as functions.
_IDS: dict[CheckFunction, str] = {}
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
    check_id: str | None = None,
    *,
    protocol: type[Any],
    severity: Severity,
    since: str,
    needs: tuple[Need, ...] = (),
    requires: tuple[CheckFunction | str, ...] = (),
    per_device: bool = False,
    per_dtype: bool = False,
    touches: Touches = "object",
) -> Callable[[_F], _F]:
    """Register ``func(ctx)`` as a check for targets of ``protocol``, the clause of SPEC.md with its id.

    The id is ``<protocol id>.<function name>`` (``map_dataset.len_is_non_negative_int`` for a
    function ``len_is_non_negative_int`` registered for ``MapDataset``): a built-in check declares none.
    A check of another package may give one as ``check_id`` (``"mylib.loader_has_batches"``). The first
    paragraph of the function's docstring is the check's one-line rule. It signals a violation with
    ``ctx.fail(...)`` and non-applicability with ``ctx.skip(...)``; returning normally means passed.

    ``since``: the torchcontract version (or, for another package's check, that package's) that added
    the check; ids are stable (SPEC.md, "Stable ids"). ``needs``: what the check needs beyond the object
    (:data:`Need`); a check whose needs the target does not meet is skipped, naming them. ``requires``:
    the checks (their functions, registered before, or their ids) whose failure makes this one
    meaningless: it is then skipped, naming them. ``per_device`` checks run once per device
    (``device=`` of :func:`check`); ``per_dtype`` checks of a (Callable)Module once per dtype of the
    target's ``dtypes=`` option, on a deep copy converted with ``.to(dtype)`` (and once, on the module
    as it is, without it). ``touches``: what the check may change of the object (:data:`Touches`),
    which decides what the engine snapshots before it and puts back after it: by default everything
    (``"object"``); ``"copies"`` for a check that changes only deep copies of the object;
    ``"itself"`` for one that puts back what it changes itself.
    """
    _load_builtin_checks()
    if check_id is not None and not _ID_PATTERN.match(check_id):
        raise ValueError(f"check id {check_id!r} must be dotted lower_snake_case, e.g. 'map_dataset.x'")
    if protocol not in PROTOCOLS.values():
        raise TypeError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    if severity not in get_args(Severity):
        raise ValueError(f"severity must be 'required' or 'recommended', not {severity!r}")
    version: object = since  # typed str, but a caller may pass anything
    if not isinstance(version, str) or not _VERSION_PATTERN.match(version):
        raise ValueError(f"since must be the version that added the check, such as '0.2.0', not {since!r}")
    unknown_needs = set(needs) - set(get_args(Need))
    if unknown_needs:
        raise ValueError(f"unknown needs {sorted(unknown_needs)}; choose from {get_args(Need)}")
    if touches not in get_args(Touches):
        raise ValueError(f"touches must be one of {get_args(Touches)}, not {touches!r}")
    prerequisites = tuple(_registered_id(required) for required in requires)

    def decorator(func: _F) -> _F:
        full_id = check_id if check_id is not None else f"{protocol_id(protocol)}.{func.__name__}"
        if not _ID_PATTERN.match(full_id):
            raise ValueError(f"check id {full_id!r} must be dotted lower_snake_case: rename {func.__name__}")
        if per_dtype and protocol not in (protocols.CallableModule, protocols.Module):
            raise ValueError(
                f"{full_id}: per_dtype is for CallableModule and Module checks (dtypes= converts a module)"
            )
        if full_id in _REGISTRY:
            raise ValueError(f"a check with id {full_id!r} is already registered")
        paragraph = (func.__doc__ or "").strip().split("\n\n")[0]
        rule = " ".join(line.strip() for line in paragraph.splitlines())
        if not rule:
            raise ValueError(f"check {full_id} needs a docstring: its first paragraph is the rule")
        _REGISTRY[full_id] = Check(
            check_id=full_id,
            protocol=protocol,
            severity=severity,
            rule=rule,
            needs=frozenset(needs),
            requires=prerequisites,
            per_device=per_device,
            func=func,
            since=since,
            per_dtype=per_dtype,
            touches=touches,
        )
        _IDS[func] = full_id
        return func

    return decorator


def _registered_id(required: CheckFunction | str) -> str:
    """The id of a prerequisite given as its check function or its id; ValueError when it is no
    registered check (prerequisites are registered first)."""
    if isinstance(required, str):
        if required not in _REGISTRY:
            raise ValueError(f"requires the unregistered check {required!r}; register it first")
        return required
    found = _IDS.get(required)
    if found is None:
        name = getattr(required, "__qualname__", repr(required))
        raise ValueError(f"requires {name}, which is not a registered check function; register it first")
    return found


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
