"""Which call into the checked object is in progress, per thread: what makes a verdict about the object.

A check touches the object through ``ctx.call``/``ctx.attempt`` and, inside the engine's own helpers,
through :func:`object_call` (``==`` on two samples, ``hash``, ``repr``). While such a call runs, its
one-line description is the thread's *current call*: a hang is reported as that call not returning,
and an exception that escapes it is tagged with it, so the engine can tell an exception of the
object (a failed check) from one of torchcontract's own code (an internal error).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

__all__ = ["Abandoned", "abandon", "call_of", "current_call", "object_call", "release", "set_shared_buffer"]

# thread ident -> the description of the object call in progress in that thread. Read from other
# threads (the one that waits for a check), so not a threading.local.
_CURRENT: dict[int, str] = {}
# Threads whose check was given up on (it hung): their next call into the object is refused.
_ABANDONED: set[int] = set()
_TAG = "__torchcontract_call__"
# Isolation mode: the child process also writes the call in progress where its parent can read it
# after a death (see _isolation.py).
_SHARED: list[Callable[[str | None], None]] = []


def _forget_threads_after_fork() -> None:
    # A forked child has only the forking thread: the idents of the parent's other threads (an
    # abandoned check among them) are free for new threads there.
    _ABANDONED.clear()
    _CURRENT.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_after_fork)


class Abandoned(BaseException):
    """Raised in a check's thread instead of calling the object again once the check was given up on
    (it outlived its time budget): after ``check()`` returned, nothing may touch the object."""


def abandon(thread_id: int) -> None:
    """Refuse every later object call of ``thread_id`` (the call in progress cannot be stopped)."""
    _ABANDONED.add(thread_id)


def set_shared_buffer(write: Callable[[str | None], None]) -> None:
    """Also report every call in progress to ``write`` (the isolated child's shared buffer)."""
    _SHARED[:] = [write]


def release(thread_id: int) -> None:
    """Forget ``thread_id`` once its check's body has ended (thread idents are reused)."""
    _ABANDONED.discard(thread_id)
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
        if thread_id in _ABANDONED:
            raise Abandoned(self._what)
        self._outer = _CURRENT.get(thread_id)
        _CURRENT[thread_id] = self._what
        for write in _SHARED:
            write(self._what)

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if self._outer is None:
            _CURRENT.pop(self._thread_id, None)
        else:
            _CURRENT[self._thread_id] = self._outer
        for write in _SHARED:
            write(self._outer)
        if error is not None and call_of(error) is None and not isinstance(error, Abandoned):
            # An exception type that refuses attributes is then described by its type alone.
            with contextlib.suppress(Exception):
                setattr(error, _TAG, self._what)
