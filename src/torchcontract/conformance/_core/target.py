"""What to check, and the entry point: :class:`Target` (an object, its protocol and what is known about
it, immutable) and :func:`check`.

A target caches the state of checking it, one :class:`~.session.Session` per (device, budget, dtype):
the pytest plugin runs one check per test, and each check's prerequisites only once. ``check()`` and
:meth:`Target.run` start afresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torchcontract.conformance._core import dtypes as _dtypes
from torchcontract.conformance._core.arguments import (
    DEFAULT_TIME_BUDGET_S,
    launched,
    started_ranks_problem,
    validate_device,
    validate_time_budget,
)
from torchcontract.conformance._core.errors import ConformanceWarning
from torchcontract.conformance._core.options import Options
from torchcontract.conformance._core.process_group import in_process_group
from torchcontract.conformance._core.registry import CHECKS, PROTOCOLS, Check, checks_for, current_id
from torchcontract.conformance._core.session import Session, missing_needs
from torchcontract.conformance._results import Report
from torchcontract.conformance._runtime import compiler_cache, fresh
from torchcontract.conformance._values import describe, tensor_module
from torchcontract.protocols import CallableModule, CollateFn, Loader, Module

__all__ = ["ARGUMENTS_HELP", "DEFAULT_TIME_BUDGET_S", "Target", "check"]

# The arguments of Target (and check()) that are not options, documented beside the options in the
# table of target options (README and the docs' how-to index: tools/generated_docs.py renders it).
ARGUMENTS_HELP = {
    "example_inputs": (
        "a (Callable)Module: the positional arguments of one call (required); a CollateFn: a list of "
        "samples (required)"
    ),
    "example_kwargs": (
        "a (Callable)Module: keyword arguments (a mapping with str keys) passed in every call alongside "
        "`example_inputs`, e.g. for a `forward` with keyword-only arguments"
    ),
    "expected_failures": (
        "`{check_id: reason}`: known failures, which still run and show as xfailed (xpassed once fixed)"
    ),
}


def _module_like(protocol: type[Any]) -> bool:
    return protocol in (CallableModule, Module)


_TARGET_FIELDS = (
    "obj", "protocol", "name", "example_inputs", "example_kwargs", "expected_failures", "options",
)  # fmt: skip


@dataclass(frozen=True, init=False, eq=False, repr=False)
class Target:
    """An object to check against a protocol, with what the checks need to know about it.

    ``example_inputs``: for a (Callable)Module, the positional arguments of one call (a tuple; any
    other value is one argument); for a CollateFn, the list of samples to collate. Required for those
    protocols. ``example_kwargs``: for a (Callable)Module, keyword arguments (a mapping with str keys)
    passed in every call alongside ``example_inputs``, e.g. for a ``forward`` with keyword-only
    arguments (``m(*example_inputs, **example_kwargs)``). ``expected_failures``: ``{check_id: reason}``
    for known violations; each still runs and shows as xfailed (xpassed if it passes). ``options``: see
    :class:`Options`, as keyword arguments or as one ``options=Options(...)``; for a Module,
    ``factory`` is a zero-argument callable that builds a fresh, differently initialised instance,
    which ``module.state_dict_round_trip`` loads the state dict into
    (``Target(model, Module, example_inputs=(x,), factory=lambda: MyNet(hidden=16))``).

    A target is immutable: :meth:`replace` returns a changed copy (``target.replace(world_size=2)``),
    so that ``check()``, the CLI and the pytest plugin never change the user's own object. Targets
    compare by identity (comparing them would compare the checked objects, outside any check).

    >>> from torchcontract.protocols import Sampler
    >>> target = Target(range(4), Sampler, name="indices", data_source_len=4)
    >>> target.options.data_source_len
    4
    >>> target.run().passed
    True
    >>> target.replace(name="more").name, target.name
    ('more', 'indices')
    """

    obj: object
    protocol: type[Any]
    name: str
    example_inputs: object
    example_kwargs: dict[str, object]
    expected_failures: dict[str, str]
    options: Options
    # The cached state of checking this target, per (device, budget, dtype): see session().
    _sessions: dict[tuple[str, float, str | None], Session] = dataclasses.field(repr=False)
    _lock: threading.Lock = dataclasses.field(repr=False)

    def __init__(
        self,
        obj: object,
        protocol: type[Any],
        *,
        name: str | None = None,
        example_inputs: object = None,
        example_kwargs: Mapping[str, object] | None = None,
        expected_failures: Mapping[str, str] | None = None,
        options: Options | None = None,
        **option_kwargs: object,
    ) -> None:
        if protocol not in PROTOCOLS.values():
            raise TypeError(
                f"protocol must be one of torchcontract.protocols' {', '.join(PROTOCOLS)}, not {protocol!r}"
            )
        if options is not None:
            if not isinstance(options, Options):
                raise TypeError(f"options must be an Options, not {describe(options)}")
            if option_kwargs:
                raise TypeError(
                    f"give the options either as options=Options(...) or as keyword arguments, not both "
                    f"(got options= and {', '.join(sorted(option_kwargs))})"
                )
        else:
            options = Options.from_kwargs(option_kwargs)
        if options.dtypes is not None:
            _validate_dtype_target(obj, protocol)
        values = {
            "obj": obj,
            "protocol": protocol,
            "name": _non_empty_str(name, "name") if name is not None else _default_name(obj),
            "example_inputs": _normalise_inputs(protocol, example_inputs),
            "example_kwargs": _validate_example_kwargs(protocol, example_kwargs),
            "expected_failures": _validate_expected_failures(expected_failures, options),
            "options": options,
            "_sessions": {},
            "_lock": threading.Lock(),
        }
        for attribute, value in values.items():
            object.__setattr__(self, attribute, value)

    def replace(self, **changes: object) -> Target:
        """A new target with ``changes``: any of the constructor's arguments (``name=``,
        ``expected_failures=``, ``options=``, ...) or single options (``world_size=2``); this one
        is unchanged. The new target starts with no cached results."""
        option_names = {f.name for f in dataclasses.fields(Options)}
        unknown = sorted(set(changes) - set(_TARGET_FIELDS) - option_names)
        if unknown:
            raise TypeError(
                f"Target.replace() got unknown argument(s) {', '.join(unknown)}; valid: "
                f"{', '.join(_TARGET_FIELDS)}, or an option ({', '.join(sorted(option_names))})"
            )
        option_changes = {key: value for key, value in changes.items() if key in option_names}
        options = changes.get("options", self.options)
        if option_changes:
            if "options" in changes:
                raise TypeError("Target.replace() takes options= or single options, not both")
            if not isinstance(options, Options):  # pragma: no cover - self.options always is
                raise TypeError(f"options must be an Options, not {describe(options)}")
            current = {f.name: getattr(options, f.name) for f in dataclasses.fields(Options)}
            options = Options.from_kwargs({**current, **option_changes})
        values: dict[str, Any] = {name: changes.get(name, getattr(self, name)) for name in _TARGET_FIELDS}
        values["options"] = options
        return Target(values.pop("obj"), values.pop("protocol"), **values)

    def __repr__(self) -> str:
        return f"Target({self.name!r}, {self.protocol.__name__})"

    @property
    def checks(self) -> list[Check]:
        return checks_for(self.protocol)

    @property
    def known_check_ids(self) -> frozenset[str]:
        """The ids an expected failure of this target may name (in code or in a baseline file): each
        check of its protocol, and ``check_id[dtype]`` for a per-dtype check in each of its dtypes."""
        known = {spec.check_id for spec in self.checks}
        known.update(
            f"{spec.check_id}[{dtype}]" for spec in self.checks for dtype in self.dtypes_of(spec) if dtype
        )
        return frozenset(known)

    @property
    def stale_expected_failures(self) -> list[str]:
        """Expected-failure ids that match no check of this target's protocol (``id[dtype]``: no
        per-dtype check of a dtype in its ``dtypes``)."""
        known = self.known_check_ids
        return [check_id for check_id in self.expected_failures if check_id not in known]

    def expected_failure(self, check_id: str, dtype: str | None = None) -> str | None:
        """The reason ``check_id`` (in ``dtype``, for a per-dtype check) is expected to fail, or None:
        a key ``check_id[float64]`` for that dtype, else ``check_id`` for every dtype."""
        if dtype is not None:
            reason = self.expected_failures.get(f"{check_id}[{dtype}]")
            if reason is not None:
                return reason
        return self.expected_failures.get(check_id)

    def dtypes_of(self, spec: Check) -> tuple[str | None, ...]:
        """The dtypes ``spec`` runs in on this target: each of ``dtypes`` for a per-dtype check,
        else ``(None,)`` (once, on the module as it is). A per-dtype check that a check run once
        depends on is decided on the module as it is too, and reported so (``None`` first): a
        verdict rests only on results the report shows."""
        names = self.options.dtype_names
        if not (spec.per_dtype and names):
            return (None,)
        if spec.check_id in _prerequisites_as_is(self.protocol):
            return (None, *names)
        return names

    def stale_message(self, check_id: str) -> str:
        known = [c.check_id for c in self.checks]
        close = difflib.get_close_matches(check_id, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        elsewhere = CHECKS.get(check_id)
        if elsewhere is not None:
            hint = f" (it is a check of {elsewhere.protocol_name}, not of {self.protocol.__name__})"
        return (
            f"expected_failures of target {self.name!r} names {check_id!r}, which matches no check "
            f"of {self.protocol.__name__}{hint}; remove or rename it so it cannot hide a regression"
        )

    def session(
        self, device: str = "cpu", time_budget_s: float = DEFAULT_TIME_BUDGET_S, dtype: str | None = None
    ) -> Session:
        """The cached state of checking this target on ``device`` (results, shared work, hangs): the
        pytest plugin runs one check per test, and each check's prerequisites only once. ``dtype``
        (one of ``options.dtype_names``): the session of the per-dtype checks in that dtype."""
        self.validate_run(device, time_budget_s)
        if dtype is not None and dtype not in self.options.dtype_names:
            raise ValueError(f"dtype {dtype!r} is not one of target {self.name!r}'s dtypes")
        base = self.session(device, time_budget_s) if dtype is not None else None
        with self._lock:
            key = (device, float(time_budget_s), dtype)
            if key not in self._sessions:
                self._sessions[key] = Session(self, device, float(time_budget_s), dtype=dtype, base=base)
            return self._sessions[key]

    def validate_run(self, device: object, time_budget_s: object) -> None:
        """Raise ValueError (TypeError for a value of the wrong type) if this target cannot be checked
        on ``device`` within ``time_budget_s`` seconds per check: what :meth:`run` and :meth:`session`
        refuse before any check runs, for a front-end to report as a usage error first."""
        _validate_run_arguments(device, time_budget_s)
        self._validate_started_ranks()

    def _validate_started_ranks(self) -> None:
        """A loader's process-group clauses start ``world_size`` processes outside a process group
        (under torchrun, the job's own group is used): ValueError beyond what torchcontract starts."""
        world_size = self.options.world_size
        if self.protocol is not Loader or world_size is None or started_ranks_problem(world_size) is None:
            return
        if not (in_process_group() or launched()):
            raise ValueError(f"target {self.name!r}: world_size {started_ranks_problem(world_size)}")

    def prestart_fresh_interpreter(self, session: Session, chosen: Iterable[Check]) -> None:
        """Start the fresh interpreter without waiting for it when one of the ``chosen`` checks will
        use it in this process: its start (importing torch, when the object uses it) overlaps the
        checks before the clause that needs it. Not for an isolated target (its child starts its own)."""
        if not self.options.isolate and any(
            "fresh_interpreter" in c.needs and missing_needs(c, self, session.device) is None for c in chosen
        ):
            fresh.prestart(fresh.imports_for(self.obj))

    def run(
        self,
        device: str = "cpu",
        time_budget_s: float = DEFAULT_TIME_BUDGET_S,
        select: Callable[[Check], bool] | None = None,
    ) -> Report:
        """Run this target's checks (those ``select`` accepts) and return the report. Each run starts
        afresh: an object fixed since the last run is checked again."""
        self.validate_run(device, time_budget_s)
        session = Session(self, device, float(time_budget_s))
        sessions: dict[str | None, Session] = {None: session}
        for name in self.options.dtype_names:
            sessions[name] = Session(self, device, float(time_budget_s), dtype=name, base=session)
        chosen = [c for c in self.checks if select is None or select(c)]
        self.prestart_fresh_interpreter(session, chosen)
        with contextlib.ExitStack() as run:
            run.enter_context(compiler_cache.recompilations_undone())
            for each in sessions.values():
                run.enter_context(each.one_run())
            results = tuple(sessions[dtype].result(c.check_id) for c in chosen for dtype in self.dtypes_of(c))
        for each in sessions.values():
            each.release_shared_work()
        return Report(
            target=self.name,
            protocol=self.protocol.__name__,
            device=device,
            results=results,
            stale_expected_failures=tuple(self.stale_expected_failures),
            options=self.options.changed(),
        )


def _prerequisites_as_is(protocol: type[Any]) -> frozenset[str]:
    """The per-dtype checks of ``protocol`` that a check run once (not per dtype) depends on, directly
    or through other prerequisites: the base session decides them on the module as it is."""
    found: set[str] = set()
    pending = [required for spec in checks_for(protocol) if not spec.per_dtype for required in spec.requires]
    while pending:
        check_id = pending.pop()
        if check_id not in found:
            found.add(check_id)
            pending.extend(CHECKS[check_id].requires)
    return frozenset(check_id for check_id in found if CHECKS[check_id].per_dtype)


def _default_name(obj: object) -> str:
    named = isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__"))
    kind = obj if named else type(obj)
    return getattr(kind, "__qualname__", type(obj).__name__)


def _non_empty_str(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{what} must be a non-empty str, not {value!r}")
    return value


def _normalise_inputs(protocol: type[Any], example_inputs: object) -> object:
    if _module_like(protocol):
        if example_inputs is None:
            raise TypeError(
                f"checking a {protocol.__name__} needs example_inputs: the positional arguments of one "
                "call, e.g. example_inputs=(torch.randn(4, 3),)"
            )
        return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    if protocol is CollateFn and (not isinstance(example_inputs, list) or not example_inputs):
        raise TypeError(
            "checking a CollateFn needs example_inputs: a non-empty list of samples to collate, "
            f"got {describe(example_inputs)}"
        )
    return example_inputs


def _validate_example_kwargs(protocol: type[Any], example_kwargs: object) -> dict[str, object]:
    if example_kwargs is None:
        return {}
    if not isinstance(example_kwargs, Mapping) or not all(isinstance(key, str) for key in example_kwargs):
        raise TypeError(
            f"example_kwargs must be a mapping with str keys (keyword arguments of every call), not "
            f"{describe(example_kwargs)}"
        )
    if example_kwargs and not _module_like(protocol):
        raise TypeError(f"example_kwargs is for a CallableModule or Module, not a {protocol.__name__}")
    return dict(example_kwargs)


def _validate_dtype_target(obj: object, protocol: type[Any]) -> None:
    """``dtypes=`` converts a torch module: TypeError for any other protocol or object."""
    if not _module_like(protocol):
        raise TypeError(
            f"option dtypes is for a CallableModule or Module target (a torch.nn.Module, converted with "
            f".to(dtype)), not a {protocol.__name__}"
        )
    torch = tensor_module()
    if torch is None or not isinstance(obj, torch.nn.Module):
        raise TypeError(
            f"option dtypes converts the module with copy.deepcopy(m).to(dtype): it needs a "
            f"torch.nn.Module, not {describe(obj)}"
        )


def _validate_expected_failures(expected: Mapping[str, str] | None, options: Options) -> dict[str, str]:
    if expected is None:
        return {}
    if not isinstance(expected, Mapping):
        raise TypeError(f"expected_failures must be a mapping {{check_id: reason}}, not {expected!r}")
    items: list[tuple[object, object]] = list(expected.items())
    for check_id, reason in items:
        _non_empty_str(check_id, "each expected_failures key (a check id)")
        _non_empty_str(reason, f"expected_failures[{check_id!r}] (the reason it fails)")
    # A renamed check's old id still applies, with a warning (SPEC.md, "Stable ids"); so does it in a
    # key for one dtype of a dtype matrix, "check_id[float64]".
    validated = {}
    for key, reason in expected.items():
        check_id, dtype = _dtypes.split_key(key) if options.dtypes is not None else (key, None)
        validated[current_id(check_id) + (f"[{dtype}]" if dtype is not None else "")] = reason
    return validated


def _validate_run_arguments(device: object, time_budget_s: object) -> None:
    validate_device(device)
    validate_time_budget(time_budget_s)


def check(
    obj: object,
    protocol: type[Any] | None = None,
    *,
    example_inputs: object = None,
    example_kwargs: Mapping[str, object] | None = None,
    device: str = "cpu",
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    expected_failures: Mapping[str, str] | None = None,
    **options: object,
) -> Report:
    """Run every check registered for ``protocol`` on ``obj`` and return the :class:`Report`.

    Never raises because the object misbehaves: a crash, a wrong answer or a hang (beyond
    ``time_budget_s`` seconds per check) is a failed check with a message; an exception of
    torchcontract's own code is an ``error`` result (an internal error, never the object's failure).
    Raises TypeError or ValueError only for unusable arguments. ``obj`` may also be a
    :class:`Target` (then give no other target arguments).
    Expected-failure ids that match no check are reported with a :class:`ConformanceWarning`.

    >>> from torchcontract.protocols import Sampler
    >>> check(range(10), Sampler, data_source_len=10).passed
    True
    >>> report = check([0, 1, 2, 3], Sampler, data_source_len=3)  # index 3 is out of range
    >>> report.passed, [result.check_id for result in report.failures]
    (False, ['sampler.yields_indices_in_range'])
    """
    if isinstance(obj, Target):
        if (
            protocol is not None
            or example_inputs is not None
            or example_kwargs is not None
            or expected_failures
            or options
        ):
            raise TypeError("check(target) takes the target's settings from the Target itself")
        target = obj
    else:
        if protocol is None:
            raise TypeError("check(obj, protocol) needs the protocol to check obj against")
        target = Target(
            obj,
            protocol,
            example_inputs=example_inputs,
            example_kwargs=example_kwargs,
            expected_failures=expected_failures,
            # Not as keyword arguments: an option could not then be named like an argument of Target.
            options=Options.from_kwargs(options),
        )
    for stale in target.stale_expected_failures:
        warnings.warn(target.stale_message(stale), ConformanceWarning, stacklevel=2)
    return target.run(device, time_budget_s)
