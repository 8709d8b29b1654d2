"""The runner: checking one target on one device (:class:`Session`), one check at a time.

A session memoises each check's result, runs its prerequisites first (a check whose prerequisite
failed is skipped, naming it), skips a check whose needs the target does not meet (:func:`missing_needs`),
runs each check in a thread of its own bounded by the time budget (a hung call stops the object's
remaining checks, which are then unverified), tells the object's failures from torchcontract's own
errors, puts the global random state back after each check, and, for a per-dtype check, converts
the module once per dtype. With ``isolate=True`` the checks run in a forked child
(:mod:`.isolation`), which runs this same session there.

The session reads its target through :class:`RunTarget` (what it needs of a
:class:`~.target.Target`, which creates the sessions and ranks above this module).
"""

from __future__ import annotations

import copy
import importlib.util
import threading
import time
import traceback
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from torchcontract.conformance._core import isolation
from torchcontract.conformance._core.context import (
    ACCELERATOR_OFF,
    COMPILE_OFF,
    EXPORT_OFF,
    FACTORY_OFF,
    GRADCHECK_OFF,
    OWN_WORK_LIMIT,
    WORLD_SIZE_OFF,
    CheckedTarget,
    Context,
    SharedKey,
    global_rng_states,
    restore_global_rng_states,
    runs_in_calling_thread,
)
from torchcontract.conformance._core.errors import (
    GRACE_S,
    ISSUES_URL,
    CheckFailure,
    CheckSkipped,
    CheckUnverified,
    HungCall,
    plain_message,
    unexpected,
)
from torchcontract.conformance._core.process_group import in_process_group
from torchcontract.conformance._core.registry import CHECKS, Check
from torchcontract.conformance._results import CheckResult, Status
from torchcontract.conformance._runtime import calls, compiler_cache, fresh
from torchcontract.conformance._values import tensor_module
from torchcontract.conformance._values.convert import copy_of_inputs, in_dtype
from torchcontract.conformance.checks._calling import initialise_lazy_modules
from torchcontract.conformance.checks._preserve import DATA_ARRAY_BYTES, RESTORE, SNAPSHOT, Restorer
from torchcontract.protocols import CallableModule, Module

__all__ = ["RunTarget", "Session", "missing_needs", "starts_processes"]


class RunTarget(CheckedTarget, Protocol):
    """What a session needs of its target: what a check reads, its checks and its expected failures."""

    @property
    def checks(self) -> list[Check]: ...

    def expected_failure(self, check_id: str, dtype: str | None = None) -> str | None: ...


class Session:
    """Checking one target on one device: memoised results, shared work, and whether it hung.

    With ``dtype`` (one of the target's ``dtypes``), the session of its per-dtype checks in that dtype:
    they run on the module converted once, here (:meth:`_converted`); their prerequisites that are not
    per-dtype are the ``base`` session's (the module as it is), and a hang in either stops both."""

    def __init__(
        self,
        target: RunTarget,
        device: str,
        time_budget_s: float,
        *,
        dtype: str | None = None,
        base: Session | None = None,
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
        # Within one run (:meth:`one_run`): the object's snapshot, taken by the first check that may
        # change it and restored after each such check; and whether a check declared not to change it
        # ran since the last restore (the run's end restores it then, whatever it declared).
        self._in_run = False
        self._snapshot: Restorer | None = None
        self._unrestored = False

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

    @property
    def target(self) -> RunTarget:
        target = self._target()
        if target is None:
            raise RuntimeError("the Target of this session no longer exists")
        return target

    @property
    def target_name(self) -> str:
        return self.target.name

    def context(self, spec: Check) -> Context:
        """The :class:`Context` that ``spec`` runs with in this session."""
        return Context(
            spec,
            self.target,
            device=self.device,
            dtype=self.dtype,
            time_budget_s=self.time_budget_s,
            shared=self.shared,
            in_run=self._in_run,
            # A check that may change the object is restored when it ends; one declared to touch only
            # copies has the object put back as soon as shared work that calls it is done.
            put_back=self._put_back if self._in_run and spec.touches == "copies" else None,
        )

    def _put_back(self) -> list[str]:
        """Restore the run's snapshot (taken before the check started: :meth:`_preserving`) after shared
        work that called the object; what could not be restored, named."""
        snapshot = self._snapshot
        if snapshot is None:
            return []
        with calls.object_call(RESTORE):
            return snapshot.restore()

    def runs_in_calling_thread(self, check_id: str) -> bool:
        """Whether ``check_id`` runs in the calling thread, bounding each of its waits by the budget."""
        return runs_in_calling_thread(CHECKS[check_id])

    def _owner(self, check_id: str) -> Session:
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
                if self.target.options.isolate and not isolation.in_child():
                    # Every check of the target in one child process (shared work is shared there).
                    ids = [
                        c.check_id
                        for c in self.target.checks
                        if c.check_id not in self.results and self._owner(c.check_id) is self
                    ]
                    self.results.update(isolation.run_isolated(self, ids))
                else:
                    self.results[check_id] = self._run(CHECKS[check_id])
            return self.results[check_id]

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
            message=plain_message(message),
            duration_s=round(duration_s, 6),
            device=self.device if spec.per_device else None,
            dtype=dtype,
        )

    def _outcome(self, spec: Check) -> tuple[Status, str]:
        missing = missing_needs(spec, self.target, self.device)
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
        ctx = self.context(spec)
        outcome: list[tuple[Status, str]] = []
        states = global_rng_states()

        interrupted: list[BaseException] = []

        def body() -> None:
            ctx.bind_thread()
            try:
                if self.dtype is not None:
                    ctx.use(*self._converted(ctx))
                # torch.compile and torch.export leave a cache directory and a variable behind.
                with (
                    compiler_cache.left_as_found(active=bool({"compile", "export"} & spec.needs)),
                    self._preserving(spec, ctx),
                ):
                    spec.func(ctx)
                outcome.append(("passed", "; ".join(ctx.notes)))
            except CheckFailure as failure:
                outcome.append(("failed", self._in_dtype(str(failure))))
            except CheckSkipped as skipped:
                outcome.append(("skipped", str(skipped)))
            except CheckUnverified as unverified:
                outcome.append(("unverified", str(unverified)))
            except HungCall as hung:
                outcome.append(("failed", self._hang(spec, hung.what)))
            except KeyboardInterrupt as interrupt:  # Ctrl-C leaves check() at once
                interrupted.append(interrupt)
            except fresh.HelperFailed as failed:  # torchcontract's own process, not the object
                outcome.append(("error", _helper_error(spec, failed)))
            except BaseException as error:
                what = calls.call_of(error)
                if what is not None:  # SystemExit and the like from the object: its failure
                    outcome.append(("failed", unexpected(what, error)))
                else:
                    outcome.append(("error", _internal_error(spec, ctx, error)))
            finally:
                calls.release(threading.get_ident())

        if runs_in_calling_thread(spec):
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
                calls.abandon(worker)
            restore_global_rng_states(states)
        if interrupted:
            raise interrupted[0]
        if worker.is_alive() or not outcome:
            thread_id = worker.ident
            hung = calls.current_call(thread_id) if thread_id is not None else None
            if hung is None and thread_id is not None:
                hung = calls.finalizer_in_progress(thread_id, ctx.last_call)
            budget = f"{self.time_budget_s:g} s"
            if hung is None:
                # No object call, nor the object's finalizer, was in progress: the check's own code
                # did not finish. Not the object's failure.
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

    @contextmanager
    def one_run(self) -> Iterator[None]:
        """The checks run in the block are one run of the target's checks (``Target.run``, that is
        ``check()``): nothing but the engine runs between them, so one snapshot of the object, taken
        before the first check that may change it, serves them all, and so does work read from the
        object's state (a :class:`~.context.SharedKey` with ``per_run=True``, dropped when the run
        ends). The snapshot is restored after each check
        that may change the object (``touches="object"``) and at the end of the run if a check
        declared to change only copies ran since (so even a wrong declaration leaves the user's object
        as it was). Outside a run (the pytest plugin: one check per test, the user's code between
        them) each check takes its own snapshot."""
        self._in_run = True
        try:
            yield
        finally:
            self._in_run = False
            with self._lock:
                for key in [key for key in self.shared if key.per_run]:
                    del self.shared[key]
            snapshot, self._snapshot = self._snapshot, None
            if snapshot is not None and self._unrestored and self.hung is None:
                self._restore_at_end(snapshot)
            self._unrestored = False

    @contextmanager
    def _preserving(self, spec: Check, ctx: Context) -> Iterator[None]:
        """What the engine snapshots and restores around ``spec``, decided here for every check from
        its declaration (``touches=`` of register_check, :data:`~.registry.Touches`). A module's
        checks start on a module whose lazy submodules are initialised (a change, put back too); a
        dataset's or collate function's big arrays are data the checks only read (not copied)."""
        if spec.touches == "itself":
            yield
            return
        module = spec.protocol in (CallableModule, Module)
        limit = None if module else DATA_ARRAY_BYTES
        if not self._in_run:
            # Alone, a check's snapshot is its own, whatever it declares: nothing can put it back later.
            with calls.object_call(SNAPSHOT):
                restorer = Restorer(ctx.obj, max_array_bytes=limit)
            restore = True
        else:
            if self._snapshot is None:
                with calls.object_call(SNAPSHOT):
                    self._snapshot = Restorer(ctx.obj, max_array_bytes=limit)
            restorer = self._snapshot
            restore = spec.touches == "object"
        problems: list[str] = []
        try:
            if module and initialise_lazy_modules(ctx):
                restore = True  # the dry run changed the module
            yield
        finally:
            if restore:
                with calls.object_call(RESTORE):
                    problems = restorer.restore()
            self._unrestored = self._in_run and (self._unrestored or not restore)
        if problems:
            ctx.note(f"could not restore {', '.join(problems[:3])} after the check")

    def _restore_at_end(self, snapshot: Restorer) -> None:
        """Restore the run's snapshot in a thread of its own, bounded like a check (it may run the
        object's code: a tensor subclass's ops, a key's ``__eq__``); a hang there is given up on."""

        def restore() -> None:
            try:
                with calls.object_call(RESTORE):
                    snapshot.restore()
            except BaseException:  # the object's or torchcontract's: nothing to report it to
                pass
            finally:
                calls.release(threading.get_ident())

        worker = threading.Thread(target=restore, name="torchcontract:restore", daemon=True)
        worker.start()
        worker.join(self.time_budget_s + GRACE_S)
        if worker.is_alive():
            calls.abandon(worker)

    def _converted(self, ctx: Context) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        """The module and example arguments in this session's dtype, converted on first use (once
        per target and dtype; a check of this session runs only while its result() holds the lock);
        a skip, naming the conversion, when it raised."""
        assert self.dtype is not None
        if self._conversion is None:
            self._conversion = _convert(ctx, self.dtype)
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


def _wait_for_check(worker: threading.Thread, budget_s: float) -> None:
    """Wait for the check running in ``worker``: its budget plus the grace period, plus the time its
    own work took (:func:`~torchcontract.conformance._runtime.calls.credit`, at most
    ``OWN_WORK_LIMIT`` budgets)."""
    deadline = time.monotonic() + budget_s + GRACE_S
    limit = OWN_WORK_LIMIT * budget_s
    while True:
        remaining = deadline + min(calls.credit(worker.ident), limit) - time.monotonic()
        if remaining <= 0:
            return
        worker.join(remaining)
        if not worker.is_alive():
            return


def _internal_error(spec: Check, ctx: Context, error: BaseException) -> str:
    """The message of an ``error`` result: torchcontract's own code raised, so nothing is known
    about the object. Says so, with the traceback, and asks for a report."""
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
    return (
        f"internal error of torchcontract in {spec.check_id}: {type(error).__name__}: {error} "
        f"(after {ctx.last_call}). This is a bug in torchcontract, not a verdict on the object; "
        f"please report it with this traceback at {ISSUES_URL}\n{trace}"
    )


def _helper_error(spec: Check, failed: BaseException) -> str:
    """The message of an ``error`` result whose cause is torchcontract's own helper process (the fresh
    interpreter) failing: nothing is known about the object."""
    return (
        f"internal error of torchcontract in {spec.check_id}: {failed}. Nothing is known about the object; "
        f"if this happens again, please report it at {ISSUES_URL}"
    )


# -- needs: what a check needs beyond the object (registry.Need), or why it is skipped --------------


def missing_needs(spec: Check, target: CheckedTarget, device: str) -> str | None:
    """Why ``spec`` cannot run on ``target`` on ``device`` (a skip, saying what would make it apply),
    or None."""
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
    if daemonic is not None and starts_processes(spec):
        return (
            f"check() runs in a daemonic process ({daemonic}), which may not have children, and this "
            "clause starts processes (DataLoader workers, a fresh interpreter, the ranks of a process "
            "group): run check() in a main process, or in a process that is not a daemon"
        )
    if "example_inputs" in spec.needs and target.example_inputs is None:
        return "needs example_inputs: give example_inputs=... (the arguments of a call, or a list of samples)"
    options = target.options
    if "world_size" in spec.needs and options.world_size is None:
        return WORLD_SIZE_OFF
    if "factory" in spec.needs and options.factory is None:
        return FACTORY_OFF
    if "compile" in spec.needs and not options.compile:
        return COMPILE_OFF
    if "export" in spec.needs and not options.export:
        return EXPORT_OFF
    if "gradcheck" in spec.needs and not options.gradcheck:
        return GRADCHECK_OFF
    if "accelerator" in spec.needs and device.split(":")[0] == "cpu":
        return ACCELERATOR_OFF
    if (spec.per_device and device.startswith("cuda")) or "cuda" in spec.needs:
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


def starts_processes(spec: Check) -> bool:
    """Whether ``spec`` starts processes: DataLoader workers, torchcontract's fresh interpreter, or
    the ranks of a process group (not inside one that exists already, where it runs collectively)."""
    if {"workers", "fresh_interpreter"} & spec.needs:
        return True
    if "distributed" in spec.needs:
        return not in_process_group()
    return False


# -- the dtype matrix: the module converted once per dtype ------------------------------------------


def _convert(ctx: Context, name: str) -> tuple[Any, tuple[Any, ...], dict[str, Any]] | str:
    """``(copy.deepcopy(m).to(dtype), inputs, kwargs)`` in dtype ``name``, every step a call into the
    object; or, when a step raises, why the per-dtype clauses are not run at ``name`` (a skip: a
    module that does not convert is ``module.to_dtype``'s to report, and ``copy.deepcopy`` is
    ``module.deepcopy_is_independent``'s)."""
    torch = tensor_module()
    if torch is None:  # pragma: no cover - a validated dtypes= holds torch dtypes
        return f"not run in {name}: torch is not loaded"
    dtype = getattr(torch, name)
    converting = f"copy.deepcopy(m).to(torch.{name})"
    copied = ctx.attempt("copy.deepcopy(m)", copy.deepcopy, ctx.target.obj)
    if isinstance(copied, Exception):
        return (
            f"not run in {name}: copy.deepcopy(m) raised {type(copied).__name__}: {_first_line(copied)}, so "
            f"{converting} cannot be made (module.deepcopy_is_independent reports it)"
        )
    converted = ctx.attempt(converting, lambda: copied.to(dtype))
    if isinstance(converted, Exception):
        return (
            f"not run in {name}: {converting} raised {type(converted).__name__}: {_first_line(converted)}; "
            f"the per-dtype clauses need m.to(torch.{name}) to work (module.to_dtype reports whether the "
            "module converts)"
        )
    arguments = ctx.attempt(
        f"<example inputs and kwargs>.to(torch.{name})",
        lambda: (
            in_dtype(copy_of_inputs(ctx.target.example_inputs), dtype),
            in_dtype(copy_of_inputs(ctx.target.example_kwargs), dtype),
        ),
    )
    if isinstance(arguments, Exception):
        return (
            f"not run in {name}: converting the floating-point example inputs with .to(torch.{name}) "
            f"raised {type(arguments).__name__}: {_first_line(arguments)}"
        )
    inputs, kwargs = arguments
    return copied, tuple(inputs), dict(kwargs)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""
