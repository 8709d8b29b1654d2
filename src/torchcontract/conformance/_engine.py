"""Running checks: targets, options, time budgets, prerequisites and expected failures."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
import random
import threading
import time
import traceback
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar, final

import numpy as np

from torchcontract.conformance import _calls, _compiler_cache, _dtypes, _fresh_interpreter, _isolation
from torchcontract.conformance._arguments import (
    DEFAULT_TIME_BUDGET_S,
    MAX_TIME_BUDGET_S,
    MAX_WORLD_SIZE,
    started_ranks_problem,
    time_budget_argument,
    validate_device,
    validate_time_budget,
    world_size_problem,
)
from torchcontract.conformance._registry import CHECKS, PROTOCOLS, Check, checks_for, current_id
from torchcontract.conformance._results import CheckResult, Report, Status
from torchcontract.conformance._values import describe, tensor_module
from torchcontract.protocols import CallableModule, CollateFn, Loader, Module

__all__ = [
    "DEFAULT_TIME_BUDGET_S",
    "MAX_TIME_BUDGET_S",
    "CheckFailure",
    "CheckSkipped",
    "CheckUnverified",
    "ConformanceWarning",
    "Context",
    "Options",
    "SharedKey",
    "Target",
    "check",
    "global_rng_states",
    "restore_global_rng_states",
    "time_budget_argument",
    "validate_device",
    "validate_time_budget",
]

T = TypeVar("T")


@final
class SharedKey(Generic[T]):
    """The key of one kind of work that the checks of a target share (:meth:`Context.shared`), such as
    one recorded epoch. A key object, not a string: two modules cannot collide on a name, and the
    type of the value is known where it is read. Create each key once, at module level."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"SharedKey({self.name!r})"


# A hung call cannot be interrupted, so the thread running a check gets a little longer than the
# budget that the check itself watches, to tell "slow" (a failure) from "hung" (stop this object).
_GRACE_S = 2.0


class ConformanceWarning(UserWarning):
    """A failed recommended check, or an expected failure that names no check."""

    # Named by its public path in tracebacks and warning filters (-W error::...), not by this module's.
    __module__ = "torchcontract.conformance"


class CheckFailure(Exception):
    """Raised inside a check (by ``ctx.fail``): the object violates the check's clause."""


class CheckSkipped(Exception):
    """Raised inside a check (by ``ctx.skip``): the clause does not apply, and why."""


class _HungCall(BaseException):
    """A call into the object, run in a thread of its own, did not return within the budget."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class CheckUnverified(Exception):
    """Raised inside a check (by ``ctx.unverified``): the clause applies but could not be verified
    (the time budget ran out first). Not a pass: a required clause left unverified fails the report."""


@dataclass(frozen=True)
class Options:
    """What a target says about itself, and how thoroughly to check it.

    deterministic: the same index/input gives an equal sample/output (False: randomised data).
    infinite: an iterable dataset or loader whose stream never ends; only a prefix is checked.
    thorough: visit every index and every item instead of a sample (slow on big objects).
    max_items: how many items of a stream (or a long iteration) are checked.
    sample_size: how many indices between the first and the last are checked.
    seed: seeds the choice of sampled indices (checks never use global random state).
    data_source_len: the length of a sampler's data source, when the sampler does not expose it.
    replacement: whether a sampler draws with replacement (default: its ``replacement`` attribute).
    ordered: whether a loader's batches follow its dataset's order (default: inferred from its
        ``sampler``/``shuffle`` attributes where it has them).
    num_workers: worker processes for the checks that load through torch's DataLoader (at least 2).
    world_size: turns the distributed checks on, with this many ranks (pytest:
        ``--conformance-world-size``).
    shards: ``shards(rank, world_size)`` builds the sampler or loader of one rank; inferred for
        samplers shaped like torch's ``DistributedSampler``.
    error_index: an index at which a map-style dataset raises (a corrupt sample, say), for
        ``map_dataset.worker_errors_keep_their_type`` (default: ``len(ds)``); the other checks do not
        visit it among their sampled indices.
    isolate: run the target's checks in a child process, so that a crash (a segmentation fault,
        ``os._exit``, a kill) or a hang that holds the GIL fails a check instead of ending the run
        (pytest: ``--conformance-isolate``; CLI: ``--isolate``).

    Declarations of documented designs (SPEC.md, "Declarations"), instead of xfailing a clause:
    uneven_shards: a sharded (evaluation) sampler or loader gives ranks unequal lengths on purpose,
        with no padding: the equal-length clauses do not apply, and every index must be on exactly
        one rank.
    max_padding: at most this many indices are repeated across all ranks (or within one pass of a
        sampler) as documented padding, to a multiple of the world size or of the batch size
        (default: world_size - 1 across ranks, none in one pass).
    reshuffles_each_pass: a seeded order that changes on every pass by design: the clauses that
        expect each pass in the same order do not apply; those on samples and counts still do.
    transforms_samples: a collate function (or a loader's) that transforms the samples (renames
        keys, packs samples into one row): only the clauses that hold for any collate function apply.
    factory: a zero-argument callable that builds a fresh, differently initialised instance of a
        module; ``module.state_dict_round_trip`` loads the state dict into it.
    unused_parameters: a module with parameters that a forward pass does not use by design (a branch
        switched off, a head used only in some steps; DistributedDataParallel's
        ``find_unused_parameters=True``): ``module.backward_reaches_parameters`` notes them instead
        of failing.
    parity_tolerance: ``(rtol, atol)`` for ``module.device_parity``, for every floating-point dtype
        (default: ``torch.testing.assert_close``'s defaults for each dtype).
    compile: turns on ``module.compile_matches_eager`` (``torch.compile`` with the "eager" and
        "aot_eager" backends; off by default, as compiling takes seconds per module).
    export: turns on ``module.export_matches_eager`` (``torch.export.export`` with the example
        inputs; off by default, for the same reason).
    collate_fn: the collate function a dataset is loaded with (default: torch's ``default_collate``),
        for ``map_dataset.samples_collate``: a dataset of variable-length samples declares the
        padding collate it is meant for, and the clause checks that one.
    dtypes: for a Module or CallableModule (a ``torch.nn.Module``), a tuple of floating-point torch
        dtypes (``(torch.float32, torch.float64)``): the per-dtype clauses (those whose verdict depends
        on the numerics of a call) run once per dtype, on ``copy.deepcopy(m).to(dtype)`` with the
        floating-point tensors of the example arguments converted alike (default None: once, on the
        module as it is).
    """

    deterministic: bool = True
    infinite: bool = False
    thorough: bool = False
    max_items: int = 1000
    sample_size: int = 16
    seed: int = 0
    data_source_len: int | None = None
    replacement: bool | None = None
    ordered: bool | None = None
    num_workers: int = 2
    world_size: int | None = None
    shards: Callable[[int, int], Any] | None = None
    isolate: bool = False
    # Declarations of documented designs (SPEC.md, "Declarations").
    uneven_shards: bool = False
    max_padding: int | None = None
    reshuffles_each_pass: bool = False
    transforms_samples: bool = False
    error_index: int | None = None
    factory: Callable[[], Any] | None = None
    unused_parameters: bool = False
    parity_tolerance: tuple[float, float] | None = None
    collate_fn: Callable[[list[Any]], Any] | None = None
    compile: bool = False
    export: bool = False
    dtypes: tuple[Any, ...] | None = None

    @classmethod
    def from_kwargs(cls, options: Mapping[str, object]) -> Options:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(unknown)}; valid options: {', '.join(fields)}")
        for name, value in options.items():
            default = fields[name].default
            if name == "shards":
                if value is not None and not callable(value):
                    raise TypeError(
                        f"option shards must be a callable (rank, world_size) -> object, not {value!r}"
                    )
                continue
            if name == "factory":
                if value is not None and not callable(value):
                    raise TypeError(f"option factory must be a zero-argument callable, not {value!r}")
                continue
            if name == "collate_fn":
                if value is not None and not callable(value):
                    raise TypeError(f"option collate_fn must be a callable (samples) -> batch, not {value!r}")
                continue
            if name == "dtypes":
                _dtypes.validate_dtypes(value)
                continue
            if name == "parity_tolerance":
                if value is not None and not _tolerance_pair(value):
                    raise TypeError(
                        f"option parity_tolerance must be (rtol, atol), two non-negative finite numbers, "
                        f"not {value!r}"
                    )
                continue
            if isinstance(default, bool) or name in ("replacement", "ordered"):
                valid = isinstance(value, bool) or (value is None and default is None)
            else:
                valid = (isinstance(value, int) and not isinstance(value, bool)) or (
                    value is None and default is None
                )
                if valid and isinstance(value, int) and value < 0:
                    valid = False
            if not valid:
                raise TypeError(f"option {name}={value!r} is not valid: expected {fields[name].type}")
        if options.get("max_items", 1) == 0:
            raise TypeError("option max_items must be at least 1")
        if options.get("num_workers", 2) in (0, 1):
            raise TypeError("option num_workers must be at least 2 (the checks compare workers)")
        world_size = options.get("world_size")
        if world_size is not None and world_size in (0, 1):
            raise TypeError("option world_size must be at least 2")
        if isinstance(world_size, int) and world_size > MAX_WORLD_SIZE:
            raise ValueError(f"option world_size {world_size_problem(world_size)}")
        if options.get("uneven_shards") is True and options.get("max_padding"):
            raise TypeError(
                "option uneven_shards=True declares shards without padding: max_padding must be None or 0"
            )
        return cls(**options)  # type: ignore[arg-type]

    def changed(self) -> dict[str, Any]:
        """The options that differ from their defaults (for reports)."""
        described = ("shards", "factory")
        changed = {
            f.name: describe(getattr(self, f.name)) if f.name in described else getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        }
        if "dtypes" in changed:
            changed["dtypes"] = list(self.dtype_names)
        return changed

    @property
    def dtype_names(self) -> tuple[str, ...]:
        """The names of ``dtypes`` (``("float32", "float64")``); () without a dtype matrix."""
        return _dtypes.dtype_names(self.dtypes)


def _tolerance_pair(value: object) -> bool:
    if not isinstance(value, tuple) or len(value) != 2:
        return False
    return all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0 for x in value
    )


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
    """

    obj: object
    protocol: type[Any]
    name: str
    example_inputs: object
    example_kwargs: dict[str, object]
    expected_failures: dict[str, str]
    options: Options
    # The cached state of checking this target, per (device, budget, dtype): see session().
    _sessions: dict[tuple[str, float, str | None], _Session] = dataclasses.field(repr=False)
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
    def stale_expected_failures(self) -> list[str]:
        """Expected-failure ids that match no check of this target's protocol (``id[dtype]``: no
        per-dtype check of a dtype in its ``dtypes``)."""
        known = {c.check_id for c in self.checks}
        known.update(
            f"{c.check_id}[{name}]" for c in self.checks if c.per_dtype for name in self.options.dtype_names
        )
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
    ) -> _Session:
        """The cached state of checking this target on ``device`` (results, shared work, hangs): the
        pytest plugin runs one check per test, and each check's prerequisites only once. ``dtype``
        (one of ``options.dtype_names``): the session of the per-dtype checks in that dtype."""
        _validate_run_arguments(device, time_budget_s)
        self._validate_started_ranks()
        if dtype is not None and dtype not in self.options.dtype_names:
            raise ValueError(f"dtype {dtype!r} is not one of target {self.name!r}'s dtypes")
        base = self.session(device, time_budget_s) if dtype is not None else None
        with self._lock:
            key = (device, float(time_budget_s), dtype)
            if key not in self._sessions:
                self._sessions[key] = _Session(self, device, float(time_budget_s), dtype=dtype, base=base)
            return self._sessions[key]

    def _validate_started_ranks(self) -> None:
        """A loader's process-group clauses start ``world_size`` processes outside a process group
        (under torchrun, the job's own group is used): ValueError beyond what torchcontract starts."""
        world_size = self.options.world_size
        if self.protocol is not Loader or world_size is None or started_ranks_problem(world_size) is None:
            return
        from torchcontract.conformance._process_group import in_process_group, launched

        if not (in_process_group() or launched()):
            raise ValueError(f"target {self.name!r}: world_size {started_ranks_problem(world_size)}")

    def prestart_fresh_interpreter(self, session: _Session, chosen: Iterable[Check]) -> None:
        """Start the fresh interpreter without waiting for it when one of the ``chosen`` checks will
        use it in this process: its start (importing torch, when the object uses it) overlaps the
        checks before the clause that needs it. Not for an isolated target (its child starts its own)."""
        if not self.options.isolate and any(
            _fresh_interpreter.uses(c.func) and _missing_needs(c, session) is None for c in chosen
        ):
            _fresh_interpreter.prestart(_fresh_interpreter.imports_for(self.obj))

    def run(
        self,
        device: str = "cpu",
        time_budget_s: float = DEFAULT_TIME_BUDGET_S,
        select: Callable[[Check], bool] | None = None,
    ) -> Report:
        """Run this target's checks (those ``select`` accepts) and return the report. Each run starts
        afresh: an object fixed since the last run is checked again."""
        _validate_run_arguments(device, time_budget_s)
        self._validate_started_ranks()
        session = _Session(self, device, float(time_budget_s))
        sessions: dict[str | None, _Session] = {None: session}
        for name in self.options.dtype_names:
            sessions[name] = _Session(self, device, float(time_budget_s), dtype=name, base=session)
        chosen = [c for c in self.checks if select is None or select(c)]
        self.prestart_fresh_interpreter(session, chosen)
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


# ----------------------------------------------------------------------------------------------------
# sessions and contexts


class _Session:
    """Checking one target on one device: memoised results, shared work, and whether it hung.

    With ``dtype`` (one of the target's ``dtypes``), the session of its per-dtype checks in that dtype:
    they run on the module converted once, here (:meth:`_converted`); their prerequisites that are not
    per-dtype are the ``base`` session's (the module as it is), and a hang in either stops both."""

    def __init__(
        self,
        target: Target,
        device: str,
        time_budget_s: float,
        *,
        dtype: str | None = None,
        base: _Session | None = None,
    ) -> None:
        # Weak: the target owns its sessions, and a cycle between them would keep the checked object
        # (and the iterators the checks made) alive until a cyclic garbage collection.
        self._target = weakref.ref(target)
        self.device = device
        self.time_budget_s = time_budget_s
        self.dtype = dtype
        self.base = base
        self.results: dict[str, CheckResult] = {}
        self.shared: dict[SharedKey[Any], Any] = {}
        self._hung: str | None = None
        # In dtype: (the converted module, inputs, kwargs), or why the conversion failed; None before.
        self._conversion: tuple[Any, tuple[Any, ...], dict[str, Any]] | str | None = None
        # check id -> why it was not run, for checks skipped because a prerequisite failed; their
        # own dependents are skipped for the same reason.
        self.blocked: dict[str, str] = {}
        self._lock = threading.RLock()

    @property
    def hung(self) -> str | None:
        """Why the object's remaining checks stop (it hung in one), or None."""
        return self.base.hung if self.base is not None else self._hung

    @hung.setter
    def hung(self, reason: str | None) -> None:
        if self.base is not None:
            self.base.hung = reason
        else:
            self._hung = reason

    def _owner(self, check_id: str) -> _Session:
        """The session that decides ``check_id``: this one, or for a check that is not per-dtype, the
        base session of a dtype session."""
        if self.base is not None and not CHECKS[check_id].per_dtype:
            return self.base
        return self

    def result(self, check_id: str) -> CheckResult:
        owner = self._owner(check_id)
        if owner is not self:
            return owner.result(check_id)
        with self._lock:
            if check_id not in self.results:
                if self.target.options.isolate and not _isolation.in_child():
                    # Every check of the target in one child process (shared work is shared there).
                    ids = [
                        c.check_id
                        for c in self.target.checks
                        if c.check_id not in self.results and self._owner(c.check_id) is self
                    ]
                    self.results.update(_isolation.run_isolated(self, ids))
                else:
                    self.results[check_id] = self._run(CHECKS[check_id])
            return self.results[check_id]

    @property
    def target(self) -> Target:
        target = self._target()
        if target is None:
            raise RuntimeError("the Target of this session no longer exists")
        return target

    def release_shared_work(self) -> None:
        """Drop the work the checks shared (recorded epochs with their iterators, a sampler's indices)
        once every result is in. The target and its sessions form a reference cycle, so without this
        an iterator lives until the next cyclic garbage collection: a DataLoader with persistent
        workers then takes 5 s to shut them down, and holds them until it does."""
        with self._lock:
            self.shared.clear()

    def prerequisite_failure(self, check_id: str) -> str | None:
        """Why ``check_id``'s result makes a dependent check meaningless, or None."""
        owner = self._owner(check_id)
        if owner is not self:
            return owner.prerequisite_failure(check_id)
        result = self.result(check_id)
        name = result.label
        if result.status in ("failed", "xfailed"):
            return f"not run: prerequisite {name} failed"
        if result.status in ("error", "unverified"):
            return f"not verified: prerequisite {name} could not be verified ({result.status})"
        # Transitively: a prerequisite skipped because its own prerequisite failed blocks this one too.
        return self.blocked.get(check_id)

    def _run(self, spec: Check) -> CheckResult:
        started = time.perf_counter()
        status, message = self._outcome(spec)
        return self.make_result(spec.check_id, status, message, duration_s=time.perf_counter() - started)

    def make_result(self, check_id: str, status: Status, message: str, *, duration_s: float) -> CheckResult:
        """The result of ``check_id``, with this target's expected failures applied."""
        spec = CHECKS[check_id]
        dtype = self.dtype if spec.per_dtype else None
        expected = self.target.expected_failure(spec.check_id, dtype)
        if expected is not None and status == "failed":
            status, message = "xfailed", f"expected failure ({expected}): {message}"
        elif expected is not None and status == "passed":
            status = "xpassed"
            message = f"expected to fail ({expected}) but passed; remove it from expected_failures"
        return CheckResult(
            check_id=spec.check_id,
            protocol=spec.protocol_name,
            severity=spec.severity,
            status=status,
            message=message,
            duration_s=round(duration_s, 6),
            device=self.device if spec.per_device else None,
            dtype=dtype,
        )

    def _outcome(self, spec: Check) -> tuple[Status, str]:
        missing = _missing_needs(spec, self)
        if missing:
            return "skipped", missing
        if self.hung is not None:
            # Not a skip: the clause may well apply, and nothing about it was verified.
            return "unverified", self.hung
        for prerequisite in spec.requires:
            reason = self.prerequisite_failure(prerequisite)
            if reason:
                self.blocked[spec.check_id] = reason
                # A failed prerequisite already fails the run; one that could not be verified does
                # not, so neither can its dependents be.
                return ("unverified" if reason.startswith("not verified") else "skipped"), reason
        return self._run_bounded(spec)

    def _run_bounded(self, spec: Check) -> tuple[Status, str]:
        ctx = Context(self, spec)
        outcome: list[tuple[Status, str]] = []
        states = global_rng_states()

        interrupted: list[BaseException] = []

        def body() -> None:
            ctx.bind_thread()
            try:
                if self.dtype is not None:
                    ctx.use(*self._converted(ctx))
                # torch.compile and torch.export leave a cache directory and a variable behind.
                with _compiler_cache.left_as_found(active=bool({"compile", "export"} & spec.needs)):
                    spec.func(ctx)
                outcome.append(("passed", "; ".join(ctx.notes)))
            except CheckFailure as failure:
                outcome.append(("failed", self._in_dtype(str(failure))))
            except CheckSkipped as skipped:
                outcome.append(("skipped", str(skipped)))
            except CheckUnverified as unverified:
                outcome.append(("unverified", str(unverified)))
            except _HungCall as hung:
                outcome.append(("failed", self._hang(spec, hung.what)))
            except KeyboardInterrupt as interrupt:  # Ctrl-C leaves check() at once
                interrupted.append(interrupt)
            except _fresh_interpreter.HelperFailed as failed:  # torchcontract's own process, not the object
                outcome.append(("error", _helper_error(spec, failed)))
            except BaseException as error:
                what = _calls.call_of(error)
                if what is not None:  # SystemExit and the like from the object: its failure
                    outcome.append(("failed", _unexpected(what, error)))
                else:
                    outcome.append(("error", _internal_error(spec, ctx, error)))
            finally:
                _calls.release(threading.get_ident())

        if _in_calling_thread(spec):
            # Checks that start processes run in the calling thread (forking a process that runs
            # other threads is unsafe) and bound their waits themselves (DataLoader's timeout; the
            # process group's deadline, after torchcontract's own fresh interpreter has started,
            # which no bound of the check's thread could leave out).
            try:
                body()
            finally:
                restore_global_rng_states(states)
            if interrupted:
                raise interrupted[0]
            return outcome[0]
        worker = threading.Thread(target=body, name=f"torchcontract:{spec.check_id}", daemon=True)
        worker.start()
        try:
            _wait_for_check(worker, self.time_budget_s)
        finally:
            if worker.is_alive():
                # Hung (or this thread was interrupted): given up on before anything is put back, so
                # that the check's thread never touches the object or the global RNG again.
                _calls.abandon(worker)
            restore_global_rng_states(states)
        if interrupted:
            raise interrupted[0]
        if worker.is_alive() or not outcome:
            thread_id = worker.ident
            hung = _calls.current_call(thread_id) if thread_id is not None else None
            budget = f"{self.time_budget_s:g} s"
            if hung is None:
                # No object call was in progress: the check's own code (or an implicit call into
                # the object that is not marked as one) did not finish. Not the object's failure.
                self.hung = (
                    f"not verified: {spec.check_id} did not finish within {budget} "
                    f"(after {ctx.last_call}), so checks on this object stop"
                )
                return "error", (
                    f"internal error of torchcontract: {spec.check_id} did not finish within the time "
                    f"budget of {budget}, and no call into the object was in progress (the last one "
                    f"that returned: {ctx.last_call}). This is a bug in torchcontract, not a verdict "
                    f"on the object; please report it at {ISSUES_URL}"
                )
            return "failed", self._hang(spec, hung)
        return outcome[0]

    def _converted(self, ctx: Context) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        """The module and example arguments in this session's dtype, converted on first use (once
        per target and dtype; a check of this session runs only while its result() holds the lock);
        a skip, naming the conversion, when it raised."""
        assert self.dtype is not None
        if self._conversion is None:
            self._conversion = _dtypes.convert(ctx, self.dtype)
        if isinstance(self._conversion, str):
            ctx.skip(self._conversion)
        return self._conversion

    def _in_dtype(self, message: str) -> str:
        """A failure message of a per-dtype check, with what ``m`` and the inputs were in its dtype."""
        if self.dtype is None:
            return message
        return (
            f"{message}\n  in {self.dtype}: m is copy.deepcopy(m).to(torch.{self.dtype}), and every "
            f"floating-point tensor of the inputs is x.to(torch.{self.dtype})"
        )

    def _hang(self, spec: Check, what: str) -> str:
        """Record that ``what`` hung in ``spec`` (the object's remaining checks are unverified) and
        return the hung check's message."""
        budget = f"{self.time_budget_s:g} s"
        self.hung = (
            f"not verified: {self.target.name} hung in {spec.check_id} ({what} did not return "
            f"within {budget}); a hung call cannot be interrupted, so checks on this object stop"
        )
        return (
            f"{what} did not return within the time budget of {budget}; expected every "
            f"call to return.\n  reproduce: {what}"
        )


# torchcontract's own work in a check (comparing what the object returned) is not charged to the
# budget, up to this many times the budget: beyond it, the check is given up on as if it hung (and,
# with no object call in progress, reported as torchcontract's own internal error).
_OWN_WORK_LIMIT = 10


def _wait_for_check(worker: threading.Thread, budget_s: float) -> None:
    """Wait for the check running in ``worker``: its budget plus the grace period, plus the time its
    own work took (:func:`_calls.credit`, at most ``_OWN_WORK_LIMIT`` budgets)."""
    deadline = time.monotonic() + budget_s + _GRACE_S
    limit = _OWN_WORK_LIMIT * budget_s
    while True:
        remaining = deadline + min(_calls.credit(worker.ident), limit) - time.monotonic()
        if remaining <= 0:
            return
        worker.join(remaining)
        if not worker.is_alive():
            return


def _unexpected(what: str, error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return (
        f"{what} raised {type(error).__name__}: {error}{where}; expected it to succeed.\n  reproduce: {what}"
    )


ISSUES_URL = "https://github.com/torchcontract/torchcontract/issues"


def _internal_error(spec: Check, ctx: Context, error: BaseException) -> str:
    """The message of an ``error`` result: torchcontract's own code raised, so nothing is known
    about the object. Says so, with the traceback, and asks for a report."""
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
    return (
        f"internal error of torchcontract in {spec.check_id}: {type(error).__name__}: {error} "
        f"(after {ctx.last_call}). This is a bug in torchcontract, not a verdict on the object; "
        f"please report it with this traceback at {ISSUES_URL}\n{trace}"
    )


def _in_calling_thread(spec: Check) -> bool:
    """Whether ``spec`` runs in the calling thread (it starts processes: DataLoader workers, the ranks
    of a process group), each of its object calls bounded in a thread of its own."""
    return bool({"workers", "distributed"} & spec.needs)


def _helper_error(spec: Check, failed: BaseException) -> str:
    """The message of an ``error`` result whose cause is torchcontract's own helper process (the fresh
    interpreter) failing: nothing is known about the object."""
    return (
        f"internal error of torchcontract in {spec.check_id}: {failed}. Nothing is known about the object; "
        f"if this happens again, please report it at {ISSUES_URL}"
    )


WORLD_SIZE_OFF = (
    "distributed checks are off: give world_size=N (pytest: --conformance-world-size N, CLI: -o world_size=N)"
)


# Why a check whose need the target does not meet is skipped (see _registry.Need).
FACTORY_OFF = (
    "needs the target's factory=, a zero-argument callable that builds a fresh instance (a deep copy "
    "cannot stand in for one: it is not built on the meta device, nor initialised afresh)"
)
COMPILE_OFF = "opt-in: declare compile=True to check torch.compile (slow: seconds per module)"
EXPORT_OFF = "opt-in: declare export=True to check torch.export (slow: seconds per module)"
ACCELERATOR_OFF = "compares a CUDA device with the CPU; runs with device='cuda'"


def _missing_needs(spec: Check, session: _Session) -> str | None:
    if {"torch", "workers", "distributed"} & spec.needs:
        if importlib.util.find_spec("torch") is None:
            return "needs torch, which is not installed (pip install 'torchcontract[torch]')"
        if spec.protocol_name not in ("Module", "CallableModule"):
            # The data clauses that need torch use its utilities (default_collate, DataLoader,
            # torch.save) whatever the object: imported here, before the check's time budget starts,
            # torch's first import (seconds) is torchcontract's cost, never the object's (nor a hang).
            # A module's torch clauses skip a module that is not torch's, and import nothing.
            import torch.utils.data
    if "distributed" in spec.needs:
        import torch.distributed

        if not torch.distributed.is_available():
            return "needs torch.distributed, which this torch build lacks"
    daemonic = _daemonic_process()
    if daemonic is not None and _starts_processes(spec):
        return (
            f"check() runs in a daemonic process ({daemonic}), which may not have children, and this "
            "clause starts processes (DataLoader workers, a fresh interpreter, the ranks of a process "
            "group): run check() in a main process, or in a process that is not a daemon"
        )
    if "example_inputs" in spec.needs and session.target.example_inputs is None:
        return "needs example_inputs: give example_inputs=... (the arguments of a call, or a list of samples)"
    if "world_size" in spec.needs and session.target.options.world_size is None:
        return WORLD_SIZE_OFF
    options = session.target.options
    if "factory" in spec.needs and options.factory is None:
        return FACTORY_OFF
    if "compile" in spec.needs and not options.compile:
        return COMPILE_OFF
    if "export" in spec.needs and not options.export:
        return EXPORT_OFF
    if "accelerator" in spec.needs and session.device.split(":")[0] == "cpu":
        return ACCELERATOR_OFF
    if (spec.per_device and session.device.startswith("cuda")) or "cuda" in spec.needs:
        if importlib.util.find_spec("torch") is None:
            return "needs torch with a CUDA device; torch is not installed"
        import torch

        if not torch.cuda.is_available():
            return "needs a CUDA device, and none is available (torch.cuda.is_available() is False)"
    return None


def _daemonic_process() -> str | None:
    """The name of this process when it is a daemonic ``multiprocessing`` process (a DataLoader
    worker is one: ``multiprocessing`` refuses it children, "daemonic processes are not allowed to
    have children"), else None."""
    import multiprocessing

    process = multiprocessing.current_process()
    return process.name if process.daemon else None


def _starts_processes(spec: Check) -> bool:
    """Whether ``spec`` starts processes: DataLoader workers, torchcontract's fresh interpreter, or
    the ranks of a process group (not inside one that exists already, where it runs collectively)."""
    if "workers" in spec.needs or _fresh_interpreter.uses(spec.func):
        return True
    if "distributed" in spec.needs:
        from torchcontract.conformance._process_group import in_process_group

        return not in_process_group()
    return False


def global_rng_states() -> tuple[object, ...]:
    torch = tensor_module()
    torch_state = torch.random.get_rng_state() if torch is not None else None
    return (random.getstate(), np.random.get_state(), torch_state)


def restore_global_rng_states(states: tuple[object, ...]) -> None:
    # In a check given up on (it hung), never: check() has returned, the RNG is the caller's again.
    _calls.stop_if_abandoned()
    python_state, numpy_state, torch_state = states
    random.setstate(python_state)  # type: ignore[arg-type]
    np.random.set_state(numpy_state)  # type: ignore[arg-type]
    torch = tensor_module()
    if torch is not None and torch_state is not None:
        torch.random.set_rng_state(torch_state)


class Context:
    """What a check function gets: the object, what is known about it, and ways to report.

    ``ctx.call(what, fn, ...)`` calls the object: ``what`` is the one-line expression that reproduces
    the call (``"ds[12]"``), shown if it raises or hangs. ``ctx.fail(message, reproduce=...)`` and
    ``ctx.skip(reason)`` end the check.
    """

    def __init__(self, session: _Session, spec: Check) -> None:
        self._session = session
        self.spec = spec
        self.target = session.target
        self.obj: Any = session.target.obj
        self.options = session.target.options
        self.example_inputs: Any = session.target.example_inputs
        self.example_kwargs: dict[str, Any] = session.target.example_kwargs
        self.device = session.device
        # The dtype of a per-dtype check of a target with dtypes= ("float64"); None otherwise.
        self.dtype = session.dtype
        # The last object call that returned (None before the first): context for internal errors.
        self.last_call: str | None = None
        self.notes: list[str] = []
        self._deadline = time.monotonic() + session.time_budget_s
        # The thread that runs the check's body (bind_thread): its own work is credited to the budget.
        self._thread_id: int | None = None
        # The worker and process-group clauses run in the calling thread (they start processes):
        # their object calls get a thread each, so that a hang is bounded there too.
        self._bound_each_call = _in_calling_thread(spec)
        self._rng = np.random.default_rng(self.options.seed)

    def bind_thread(self) -> None:
        """Called by the engine in the thread that runs the check: the budget is that thread's (its
        own work is credited back), and in a check that runs in the calling thread, every call of the
        object's code that torchcontract's helpers make (``==``, ``hash``, ``repr`` of an item) is
        bounded like the object calls (:meth:`invoke`)."""
        self._thread_id = threading.get_ident()
        if self._bound_each_call:
            _calls.bind_runner(self.invoke)

    def use(self, obj: Any, example_inputs: tuple[Any, ...], example_kwargs: dict[str, Any]) -> None:
        """Check ``obj`` with these example arguments instead of the target's (the engine's converted
        module of a per-dtype check)."""
        self.obj, self.example_inputs, self.example_kwargs = obj, example_inputs, example_kwargs

    # -- reporting --------------------------------------------------------------------------------

    def fail(self, message: str, *, reproduce: str | None = None) -> NoReturn:
        """End the check as failed. ``message`` says what happened and what was expected."""
        if reproduce:
            message = f"{message}\n  reproduce: {reproduce}"
        raise CheckFailure(message)

    def skip(self, reason: str) -> NoReturn:
        """End the check as skipped: the clause does not apply to this object, and why."""
        raise CheckSkipped(reason)

    def unverified(self, reason: str) -> NoReturn:
        """End the check as unverified: the clause applies but the time budget ran out before it
        could be decided. ``reason`` says what was being waited for."""
        raise CheckUnverified(f"the time budget of {self.time_budget_s:g} s ran out {reason}")

    def note(self, text: str) -> None:
        """Something a passed result should say (e.g. that only a sample was checked)."""
        self.notes.append(text)

    # -- calling the object -----------------------------------------------------------------------

    def raised(self, what: str, error: BaseException) -> NoReturn:
        """Fail the check: the object raised ``error`` while doing ``what``."""
        raise CheckFailure(_unexpected(what, error)) from error

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, a call into the object; if it raises, the check fails naming
        ``what`` (a hang names it too)."""
        try:
            return self.invoke(what, fn, *args, **kwargs)
        except (CheckFailure, CheckSkipped, CheckUnverified):
            raise
        except Exception as error:
            raise CheckFailure(_unexpected(what, error)) from error

    def attempt(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | Exception:
        """``fn(*args, **kwargs)``, a call into the object, returning the exception it raised instead
        of raising it."""
        try:
            return self.invoke(what, fn, *args, **kwargs)
        except (CheckFailure, CheckSkipped, CheckUnverified):
            raise
        except Exception as error:
            return error

    def call_starting_processes(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """:meth:`call` for a call that forks worker processes (``iter(DataLoader(...))``): always in
        this thread, since forking while another thread runs is unsafe; the DataLoader's own
        ``timeout`` bounds its waits."""
        try:
            with _calls.object_call(what):
                result = fn(*args, **kwargs)
        except (CheckFailure, CheckSkipped, CheckUnverified):
            raise
        except Exception as error:
            raise CheckFailure(_unexpected(what, error)) from error
        self.last_call = what
        return result

    def invoke(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` as a call into the object, raising what it raises. In a check that
        runs in the calling thread (the worker clauses), the call runs in a thread of its own,
        bounded by what is left of the budget: a hang there cannot stop ``check()`` either."""
        if not self._bound_each_call:
            with _calls.object_call(what):
                result = fn(*args, **kwargs)
            self.last_call = what
            return result
        outcome: list[tuple[bool, Any]] = []

        def run() -> None:
            try:
                with _calls.object_call(what):
                    outcome.append((True, fn(*args, **kwargs)))
            except BaseException as error:
                outcome.append((False, error))
            finally:
                _calls.release(threading.get_ident())

        thread = threading.Thread(target=run, name=f"torchcontract:{self.spec.check_id}:call", daemon=True)
        thread.start()
        try:
            thread.join(max(self.time_left(), 0.0) + _GRACE_S)
        finally:
            if thread.is_alive():  # hung, or this thread was interrupted: nothing more runs there
                _calls.abandon(thread)
        if thread.is_alive() or not outcome:
            raise _HungCall(what)
        ok, value = outcome[0]
        if not ok:
            raise value
        self.last_call = what
        result_value: T = value
        return result_value

    # -- budgets ----------------------------------------------------------------------------------

    def time_left(self) -> float:
        """Seconds left of the budget: the object's calls are charged to it, torchcontract's own
        comparisons are not (:class:`_calls.own_work`)."""
        limit = _OWN_WORK_LIMIT * self.time_budget_s
        return self._deadline + min(_calls.credit(self._thread_id), limit) - time.monotonic()

    def out_of_time(self) -> bool:
        return self.time_left() <= 0

    @property
    def time_budget_s(self) -> float:
        return self._session.time_budget_s

    def sample_indices(self, length: int) -> list[int]:
        """The indices a check visits in ``range(length)``: all of them when the range is small or
        ``thorough=True``, else the first, the last and ``sample_size`` seeded picks in between."""
        size = self.options.sample_size
        if self.options.thorough or length <= size + 2:
            return self._without_error_index(list(range(length)))
        # O(size) for any length (Floyd's algorithm inside Generator.choice), and the same picks as
        # choosing from np.arange(1, length - 1).
        middle = self._rng.choice(length - 2, size=size, replace=False) + 1
        return self._without_error_index([0, *sorted(int(i) for i in middle), length - 1])

    def _without_error_index(self, indices: list[int]) -> list[int]:
        """``indices`` less the target's ``error_index`` (where it declares that ds raises)."""
        return [i for i in indices if i != self.options.error_index]

    def shared(self, key: SharedKey[T], compute: Callable[[], T]) -> T:
        """Work shared by the checks of one target (e.g. one recorded epoch), computed once."""
        cache = self._session.shared
        if key not in cache:
            cache[key] = compute()
        value: T = cache[key]
        return value
