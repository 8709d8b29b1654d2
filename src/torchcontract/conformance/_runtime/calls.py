"""Which call into the checked object is in progress, per thread: what makes a verdict about the object.

A check touches the object through ``ctx.call``/``ctx.attempt`` and, inside the engine's own helpers,
through :func:`object_call` (``==`` on two samples, ``hash``, ``repr``). While such a call runs, its
one-line description is the thread's *current call*: a hang is reported as that call not returning,
and an exception that escapes it is tagged with it, so the engine can tell an exception of the
object (a failed check) from one of torchcontract's own code (an internal error).

A thread whose check was given up on (:func:`abandon`: a call outlived the time budget, and
``check()`` returned without it) never runs torchcontract's code again: when its hung call returns,
or should it reach another object call or a restoring step (:func:`stop_if_abandoned`), it parks
forever instead, an idle daemon thread. Raising there would not do: the ``finally`` blocks of the
check would run after ``check()`` returned, putting back the object's attributes and the global RNG
over whatever the caller did since, and calling the object again. Global changes a check makes for
the length of a block (a patched method, a backend flag) are made with :func:`global_change`, so
that the thread that abandons the check undoes them at once.

Two more things are decided here, per thread, for the engine's time budgets:

- **Own work** (:class:`own_work`): time that torchcontract spends on its own comparisons of what
  the object returned (equality, fingerprints, structures) is not the object's: the budget bounds
  the object's calls, so the thread's check gets that time back (:func:`credit`), less the object
  calls made inside it (``==``, ``hash`` or ``repr`` of the object's items), which stay charged.
- **Bounded object code** (:func:`run_object_code`): a call of the object's code that
  torchcontract's own helpers make (``==``, ``hash``, ``repr`` of an item) runs in the thread's
  runner when one is bound (:func:`bind_runner`): the checks that run in the calling thread (the
  worker clauses, which fork) bind one that runs each call in a thread of its own, bounded by the
  budget, so that no call of the object's code is left unbounded there either.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "abandon",
    "bind_runner",
    "call_of",
    "credit",
    "current_call",
    "finalizer_in_progress",
    "global_change",
    "object_call",
    "ours",
    "own_work",
    "release",
    "run_object_code",
    "set_shared_buffer",
    "stop_if_abandoned",
]

T = TypeVar("T")
P = ParamSpec("P")

# thread ident -> the description of the object call in progress in that thread. Read from other
# threads (the one that waits for a check), so not a threading.local.
_CURRENT: dict[int, str] = {}
# Threads whose check was given up on (it hung): they park instead of running torchcontract's code.
# The threads themselves, not their idents, which a new thread may reuse once one has ended.
_ABANDONED: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
# thread -> how to undo the global changes its check has in effect (see global_change).
_UNDO: weakref.WeakKeyDictionary[threading.Thread, list[Callable[[], None]]] = weakref.WeakKeyDictionary()
_TAG = "__torchcontract_call__"
# Isolation mode: the child process also writes the call in progress where its parent can read it
# after a death (see _isolation.py).
_SHARED: list[Callable[[str | None], None]] = []


class _OwnClock:
    """A thread's own work: seconds credited so far, the depth of nested :class:`own_work` blocks,
    and when the running stretch of own work began (None while none runs, or an object call does)."""

    __slots__ = ("credited", "depth", "since")

    def __init__(self) -> None:
        self.credited = 0.0
        self.depth = 0
        self.since: float | None = None


# thread ident -> its own work (read by the thread that waits for a check).
_OWN: dict[int, _OwnClock] = {}
# thread ident -> how that thread runs a call of the object's code that torchcontract's helpers make.
_RUNNERS: dict[int, Callable[..., Any]] = {}


def _forget_threads_after_fork() -> None:
    # A forked child has only the forking thread: the idents of the parent's other threads (an
    # abandoned check among them) are free for new threads there.
    _ABANDONED.clear()
    _CURRENT.clear()
    _UNDO.clear()
    _OWN.clear()
    _RUNNERS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_after_fork)


def abandon(thread: threading.Thread) -> None:
    """Give up on the check running in ``thread`` (the call in progress cannot be stopped): undo the
    global changes it has in effect, now, and park the thread at its next step in torchcontract."""
    _ABANDONED.add(thread)
    for undo in reversed(_UNDO.pop(thread, [])):
        with contextlib.suppress(Exception):
            undo()


def _park() -> None:
    """Wait forever: this thread's check was given up on, and ``check()`` has returned."""
    threading.Event().wait()


def stop_if_abandoned() -> None:
    """Park this thread if its check was given up on: call it before a step that changes the object
    or global state (restoring them) outside an object call."""
    if threading.current_thread() in _ABANDONED:
        _park()


@contextlib.contextmanager
def global_change(undo: Callable[[], None]) -> Iterator[None]:
    """The block has changed global state (a patched method, a flag) that ``undo`` puts back at its
    end; should the thread be abandoned within it, :func:`abandon` undoes it instead, at once."""
    lock, done = threading.Lock(), [False]

    def once() -> None:  # by this thread at the block's end, or by abandon(): never both
        with lock:
            if done[0]:
                return
            done[0] = True
        undo()

    thread = threading.current_thread()
    pending = _UNDO.setdefault(thread, [])
    pending.append(once)
    try:
        yield
    finally:
        stop_if_abandoned()  # abandon() has undone it
        if once in pending:
            pending.remove(once)
        if not pending:
            _UNDO.pop(thread, None)
        once()


def set_shared_buffer(write: Callable[[str | None], None]) -> None:
    """Also report every call in progress to ``write`` (the isolated child's shared buffer)."""
    _SHARED[:] = [write]


def release(thread_id: int) -> None:
    """Forget ``thread_id`` once its check's body has ended (thread idents are reused)."""
    _CURRENT.pop(thread_id, None)
    _OWN.pop(thread_id, None)
    _RUNNERS.pop(thread_id, None)


def credit(thread_id: int | None) -> float:
    """Seconds of torchcontract's own work done so far in ``thread_id`` (object calls made inside it
    excluded): what its check's budget gets back. 0 for None or a thread without own work."""
    clock = _OWN.get(thread_id) if thread_id is not None else None
    if clock is None:
        return 0.0
    since = clock.since
    return clock.credited + (time.monotonic() - since if since is not None else 0.0)


class own_work:  # lower case: used like a function, ``with own_work():``
    """Mark the body as torchcontract's own work (comparing what the object returned): its time is
    credited back to the thread's budget, except the object calls made inside it. Nested blocks
    count once; inside an object call (our helper called by the object's code) nothing is credited."""

    __slots__ = ("_clock",)

    def __enter__(self) -> None:
        thread_id = threading.get_ident()
        clock = _OWN.get(thread_id)
        if clock is None:
            clock = _OWN[thread_id] = _OwnClock()
        self._clock = clock
        clock.depth += 1
        if clock.depth == 1 and thread_id not in _CURRENT:
            clock.since = time.monotonic()

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        clock = self._clock
        clock.depth -= 1
        if clock.depth == 0 and clock.since is not None:
            clock.credited += time.monotonic() - clock.since
            clock.since = None


def ours(fn: Callable[P, T]) -> Callable[P, T]:
    """Mark every call of ``fn`` as torchcontract's own work on what the object returned
    (:class:`own_work`): comparisons, fingerprints, structures."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with own_work():
            return fn(*args, **kwargs)

    return wrapper


def bind_runner(runner: Callable[..., Any] | None) -> None:
    """Run the object code of this thread's :func:`run_object_code` calls with ``runner(what, fn,
    *args)`` (None: in the thread itself, as an :class:`object_call`). Forgotten by :func:`release`."""
    thread_id = threading.get_ident()
    if runner is None:
        _RUNNERS.pop(thread_id, None)
    else:
        _RUNNERS[thread_id] = runner


def run_object_code(what: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, a call of the object's code made by torchcontract's own helpers (``==``,
    ``hash``, ``repr`` of an item), described by ``what``: in the thread's runner when one is bound,
    else here, as an :class:`object_call`. Raises what ``fn`` raises (and what the runner raises for
    a call that did not return in time)."""
    thread_id = threading.get_ident()
    runner = _RUNNERS.get(thread_id)
    if runner is None:
        with object_call(what):
            return fn(*args)
    paused = _pause(thread_id)  # the object's time, though it runs in another thread
    try:
        result: T = runner(what, fn, *args)
    finally:
        if paused:
            _resume(thread_id)
    return result


def _pause(thread_id: int) -> bool:
    """Stop crediting ``thread_id``'s own work (an object call begins); whether it was running."""
    clock = _OWN.get(thread_id)
    if clock is None or clock.since is None:
        return False
    clock.credited += time.monotonic() - clock.since
    clock.since = None
    return True


def _resume(thread_id: int) -> None:
    """Credit ``thread_id``'s own work again (the object call ended), if an own-work block is open."""
    clock = _OWN.get(thread_id)
    if clock is not None and clock.depth > 0:
        clock.since = time.monotonic()


def current_call(thread_id: int | None = None) -> str | None:
    """The object call in progress in ``thread_id`` (default: this thread), or None."""
    return _CURRENT.get(threading.get_ident() if thread_id is None else thread_id)


# torchcontract's conformance code: a finalizer defined here is ours, any other is the object's.
_OURS = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def finalizer_in_progress(thread_id: int, after: str | None) -> str | None:
    """The object's finalizer running in ``thread_id``, outside any marked object call, described as
    an object call; None when there is none. Dropping the last reference to what the object returned
    (a DataLoader iterator, whose ``__del__`` joins its worker processes) runs the object's code
    wherever the reference goes: that call is the object's, like every call marked with
    :class:`object_call`, though no check can mark it. ``after`` is the object call that returned
    last. Read from the thread that waits for the check, once that check's time ran out."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" and not os.path.abspath(code.co_filename).startswith(_OURS):
            owner = frame.f_locals.get("self")
            name = type(owner).__qualname__ if owner is not None else "an object"
            when = f" after {after}" if after is not None else ""
            return f"{name}.__del__() (the last reference to it dropped{when})"
        frame = frame.f_back
    return None


def call_of(error: BaseException) -> str | None:
    """The object call ``error`` escaped from, or None when it was raised by torchcontract's own code."""
    tag = getattr(error, _TAG, None)
    return tag if isinstance(tag, str) else None


class object_call:  # lower case: used like a function, ``with object_call("ds[3]"):``
    """Mark the body as a call into the checked object described by ``what`` (``"ds[3] == ds[3]"``)."""

    __slots__ = ("_outer", "_thread_id", "_what")

    def __init__(self, what: str) -> None:
        self._what = what
        self._thread_id = 0
        self._outer: str | None = None

    def __enter__(self) -> None:
        thread_id = self._thread_id = threading.get_ident()
        if threading.current_thread() in _ABANDONED:
            _park()
        self._outer = _CURRENT.get(thread_id)
        _CURRENT[thread_id] = self._what
        if self._outer is None:
            _pause(thread_id)  # the object's time, inside our own work, is the object's
        for write in _SHARED:
            write(self._what)

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if threading.current_thread() in _ABANDONED:
            _park()  # the call hung and has now returned: nothing more of the check may run
        if self._outer is None:
            _CURRENT.pop(self._thread_id, None)
            _resume(self._thread_id)
        else:
            _CURRENT[self._thread_id] = self._outer
        for write in _SHARED:
            write(self._outer)
        if error is not None and call_of(error) is None:
            # An exception type that refuses attributes is then described by its type alone.
            with contextlib.suppress(Exception):
                setattr(error, _TAG, self._what)
