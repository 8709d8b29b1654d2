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
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterator

__all__ = [
    "abandon",
    "call_of",
    "current_call",
    "global_change",
    "object_call",
    "release",
    "set_shared_buffer",
    "stop_if_abandoned",
]

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


def _forget_threads_after_fork() -> None:
    # A forked child has only the forking thread: the idents of the parent's other threads (an
    # abandoned check among them) are free for new threads there.
    _ABANDONED.clear()
    _CURRENT.clear()
    _UNDO.clear()


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


def current_call(thread_id: int | None = None) -> str | None:
    """The object call in progress in ``thread_id`` (default: this thread), or None."""
    return _CURRENT.get(threading.get_ident() if thread_id is None else thread_id)


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
        for write in _SHARED:
            write(self._what)

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if threading.current_thread() in _ABANDONED:
            _park()  # the call hung and has now returned: nothing more of the check may run
        if self._outer is None:
            _CURRENT.pop(self._thread_id, None)
        else:
            _CURRENT[self._thread_id] = self._outer
        for write in _SHARED:
            write(self._outer)
        if error is not None and call_of(error) is None:
            # An exception type that refuses attributes is then described by its type alone.
            with contextlib.suppress(Exception):
                setattr(error, _TAG, self._what)
