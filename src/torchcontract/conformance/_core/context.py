"""The check-author API: what a check function gets (:class:`Context`), and what checks share.

A check is a function ``check(ctx)`` registered with :func:`~.registry.register_check`; this module
is the only one of the engine that checks import (with the registry, for the decorator):

- :class:`Context`: the object and what is known about it; ``ctx.call``/``ctx.attempt`` for every
  touch of the object (the expression is the reproducer, and what a hang names); ``ctx.fail``,
  ``ctx.skip``, ``ctx.unverified`` and ``ctx.note`` to report; the time budget; the sampled indices;
  work shared by the checks of a target (:meth:`Context.shared`, keyed by a :class:`SharedKey`);
- the reasons a check is skipped when its target does not declare what it needs (``WORLD_SIZE_OFF``,
  ``FACTORY_OFF``, ...), so that a check that decides it itself says it alike;
- :func:`global_rng_states` / :func:`restore_global_rng_states`, for a check that must leave the
  global random state as it found it.

The engine's session (:mod:`.session`) makes one context per check it runs; nothing here knows the
session or :class:`~.target.Target`: a context reads its target through :class:`CheckedTarget`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, Generic, NoReturn, Protocol, TypeVar, final

import numpy as np

from torchcontract.conformance._core.errors import (
    GRACE_S,
    CheckFailure,
    CheckSkipped,
    CheckUnverified,
    HungCall,
    unexpected,
)
from torchcontract.conformance._core.options import Options
from torchcontract.conformance._core.registry import Check
from torchcontract.conformance._runtime import calls
from torchcontract.conformance._values import tensor_module

__all__ = [
    "ACCELERATOR_OFF",
    "COMPILE_OFF",
    "EXPORT_OFF",
    "FACTORY_OFF",
    "GRADCHECK_OFF",
    "OWN_WORK_LIMIT",
    "WORLD_SIZE_OFF",
    "CheckedTarget",
    "Context",
    "SharedKey",
    "global_rng_states",
    "restore_global_rng_states",
    "runs_in_calling_thread",
]

T = TypeVar("T")

# Why a check whose need the target does not meet is skipped (see registry.Need); the session skips
# such a check before it runs, and a check that finds the need unmet itself says the same.
WORLD_SIZE_OFF = (
    "distributed checks are off: give world_size=N (pytest: --conformance-world-size N, CLI: -o world_size=N)"
)
FACTORY_OFF = (
    "needs the target's factory=, a zero-argument callable that builds a fresh instance (a deep copy "
    "cannot stand in for one: it is not built on the meta device, nor initialised afresh)"
)
COMPILE_OFF = "opt-in: declare compile=True to check torch.compile (slow: seconds per module)"
EXPORT_OFF = "opt-in: declare export=True to check torch.export (slow: seconds per module)"
GRADCHECK_OFF = (
    "opt-in: declare gradcheck=True to compare the gradients with finite differences in float64 "
    "(torch.autograd.gradcheck and gradgradcheck; slow: float64 forward and double-backward passes)"
)
ACCELERATOR_OFF = "compares a CUDA device with the CPU; runs with device='cuda'"

# torchcontract's own work in a check (comparing what the object returned) is not charged to the
# budget, up to this many times the budget: beyond it, the check is given up on as if it hung (and,
# with no object call in progress, reported as torchcontract's own internal error).
OWN_WORK_LIMIT = 10


@final
class SharedKey(Generic[T]):
    """The key of one kind of work that the checks of a target share (:meth:`Context.shared`), such as
    one recorded epoch. A key object, not a string: two modules cannot collide on a name, and the
    type of the value is known where it is read. Create each key once, at module level.

    ``per_run=True`` for work that holds only while nothing but the engine runs between the checks: a
    value read from the object's state (its output), shared within one run of the target's checks
    (``check()``, where the engine puts the object back after each check that may change it), and
    computed afresh by each check outside a run (the pytest plugin, where the user's code runs between
    the checks and may change the object).

    ``calls_object=True`` (implies ``per_run``) for such work that calls the object, which may change it
    (a module's forward pass): within a run the engine puts the object back as soon as the value is
    computed, so a check that reads the value and otherwise works on copies declares
    ``touches="copies"`` and costs no restore of its own."""

    __slots__ = ("calls_object", "name", "per_run")

    def __init__(self, name: str, *, per_run: bool = False, calls_object: bool = False) -> None:
        self.name = name
        self.per_run = per_run or calls_object
        self.calls_object = calls_object

    def __repr__(self) -> str:
        return f"SharedKey({self.name!r})"


class CheckedTarget(Protocol):
    """What a check reads of the target it checks (a :class:`~.target.Target`)."""

    @property
    def obj(self) -> object: ...
    @property
    def protocol(self) -> type[Any]: ...
    @property
    def name(self) -> str: ...
    @property
    def example_inputs(self) -> object: ...
    @property
    def example_kwargs(self) -> dict[str, object]: ...
    @property
    def options(self) -> Options: ...


def runs_in_calling_thread(spec: Check) -> bool:
    """Whether ``spec`` runs in the calling thread (it starts processes: DataLoader workers, the ranks
    of a process group), each of its object calls bounded in a thread of its own."""
    return bool({"workers", "distributed"} & spec.needs)


def global_rng_states() -> tuple[object, ...]:
    """The state of Python's, NumPy's and (when loaded) torch's global random generators."""
    torch = tensor_module()
    torch_state = torch.random.get_rng_state() if torch is not None else None
    return (random.getstate(), np.random.get_state(), torch_state)


def restore_global_rng_states(states: tuple[object, ...]) -> None:
    """Put back what :func:`global_rng_states` returned."""
    # In a check given up on (it hung), never: check() has returned, the RNG is the caller's again.
    calls.stop_if_abandoned()
    python_state, numpy_state, torch_state = states
    random.setstate(python_state)  # type: ignore[arg-type]
    np.random.set_state(numpy_state)  # type: ignore[arg-type]
    torch = tensor_module()
    if torch is not None and torch_state is not None:
        torch.random.set_rng_state(torch_state)


class Context:
    """What a check function gets: the object, what is known about it, and ways to report.

    ``ctx.call(what, fn, ...)`` calls the object: ``what`` is the one-line expression that reproduces
    the call (``"ds[12]"``), shown if it raises or hangs; ``ctx.attempt`` returns the exception
    instead of failing. ``ctx.fail(message, reproduce=...)``, ``ctx.skip(reason)`` and
    ``ctx.unverified(reason)`` end the check; ``ctx.note(text)`` adds to a pass's message.
    """

    def __init__(
        self,
        spec: Check,
        target: CheckedTarget,
        *,
        device: str,
        dtype: str | None,
        time_budget_s: float,
        shared: MutableMapping[SharedKey[Any], Any],
        in_run: bool = False,
        put_back: Callable[[], list[str]] | None = None,
    ) -> None:
        self.spec = spec
        self.target = target
        self.obj: Any = target.obj
        self.options = target.options
        self.example_inputs: Any = target.example_inputs
        self.example_kwargs: dict[str, Any] = target.example_kwargs
        self.device = device
        # The dtype of a per-dtype check of a target with dtypes= ("float64"); None otherwise.
        self.dtype = dtype
        # The last object call that returned (None before the first): context for internal errors.
        self.last_call: str | None = None
        self.notes: list[str] = []
        self._time_budget_s = time_budget_s
        self._shared = shared
        self._in_run = in_run
        # Within a run, the engine's restore of the run's snapshot (what could not be restored, named):
        # called after computing shared work that calls the object (SharedKey's calls_object).
        self._put_back = put_back
        self._deadline = time.monotonic() + time_budget_s
        # The thread that runs the check's body (bind_thread): its own work is credited to the budget.
        self._thread_id: int | None = None
        # The worker and process-group clauses run in the calling thread (they start processes):
        # their object calls get a thread each, so that a hang is bounded there too.
        self._bound_each_call = runs_in_calling_thread(spec)
        self._rng = np.random.default_rng(self.options.seed)

    def bind_thread(self) -> None:
        """Called by the engine in the thread that runs the check: the budget is that thread's (its
        own work is credited back), and in a check that runs in the calling thread, every call of the
        object's code that torchcontract's helpers make (``==``, ``hash``, ``repr`` of an item) is
        bounded like the object calls (:meth:`invoke`)."""
        self._thread_id = threading.get_ident()
        if self._bound_each_call:
            calls.bind_runner(self.invoke)

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

    def undecided(self, reason: str) -> NoReturn:
        """End the check as unverified: the clause applies, and what the check could find decides
        neither way. ``reason`` says what was found and what was missing to decide."""
        raise CheckUnverified(reason)

    def note(self, text: str) -> None:
        """Something a passed result should say (e.g. that only a sample was checked)."""
        self.notes.append(text)

    # -- calling the object -----------------------------------------------------------------------

    def raised(self, what: str, error: BaseException) -> NoReturn:
        """Fail the check: the object raised ``error`` while doing ``what``."""
        raise CheckFailure(unexpected(what, error)) from error

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, a call into the object; if it raises, the check fails naming
        ``what`` (a hang names it too)."""
        try:
            return self.invoke(what, fn, *args, **kwargs)
        except (CheckFailure, CheckSkipped, CheckUnverified):
            raise
        except Exception as error:
            raise CheckFailure(unexpected(what, error)) from error

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
            with calls.object_call(what):
                result = fn(*args, **kwargs)
        except (CheckFailure, CheckSkipped, CheckUnverified):
            raise
        except Exception as error:
            raise CheckFailure(unexpected(what, error)) from error
        self.last_call = what
        return result

    def invoke(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` as a call into the object, raising what it raises. In a check that
        runs in the calling thread (the worker clauses), the call runs in a thread of its own,
        bounded by what is left of the budget: a hang there cannot stop ``check()`` either."""
        if not self._bound_each_call:
            with calls.object_call(what):
                result = fn(*args, **kwargs)
            self.last_call = what
            return result
        outcome: list[tuple[bool, Any]] = []

        def run() -> None:
            try:
                with calls.object_call(what):
                    outcome.append((True, fn(*args, **kwargs)))
            except BaseException as error:
                outcome.append((False, error))
            finally:
                calls.release(threading.get_ident())

        thread = threading.Thread(target=run, name=f"torchcontract:{self.spec.check_id}:call", daemon=True)
        thread.start()
        try:
            thread.join(max(self.time_left(), 0.0) + GRACE_S)
        finally:
            if thread.is_alive():  # hung, or this thread was interrupted: nothing more runs there
                calls.abandon(thread)
        if thread.is_alive() or not outcome:
            raise HungCall(what)
        ok, value = outcome[0]
        if not ok:
            raise value
        self.last_call = what
        result_value: T = value
        return result_value

    # -- budgets ----------------------------------------------------------------------------------

    def time_left(self) -> float:
        """Seconds left of the budget: the object's calls are charged to it, torchcontract's own
        comparisons are not (:class:`~torchcontract.conformance._runtime.calls.own_work`)."""
        limit = OWN_WORK_LIMIT * self.time_budget_s
        return self._deadline + min(calls.credit(self._thread_id), limit) - time.monotonic()

    def out_of_time(self) -> bool:
        return self.time_left() <= 0

    @property
    def time_budget_s(self) -> float:
        return self._time_budget_s

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
        """Work shared by the checks of one target (e.g. one recorded epoch), computed once (for a
        ``per_run`` key, once per run; for a ``calls_object`` key, the object put back after computing
        it in a check declared to touch only copies: see :class:`SharedKey`). Work that raises is not
        kept."""
        if key.per_run and not self._in_run:
            return compute()
        cache = self._shared
        if key not in cache:
            if key.calls_object and self._put_back is not None:
                try:
                    cache[key] = compute()
                finally:
                    problems = self._put_back()
                    if problems:
                        self.note(f"could not restore {', '.join(problems[:3])} after {key.name}")
            else:
                cache[key] = compute()
        value: T = cache[key]
        return value
