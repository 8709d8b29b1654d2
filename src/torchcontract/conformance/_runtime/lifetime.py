"""The processes torchcontract forks end with the process that forked them.

A child forked for a check (an isolated target's child, a child of the fresh interpreter) must not
outlive its parent: a parent ended by SIGTERM (a CI job cancelled) or SIGKILL runs no clean-up of its
own, and the child may be hung, even holding the GIL in C code, where no Python code of its own can
run. On Linux the kernel ends it: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` sends it SIGKILL when the
thread that forked it ends. Elsewhere a watchdog thread ends it when its parent changes (which a
GIL-holding hang delays until the GIL is released).

Light: the fresh interpreter's server imports it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["end_with_parent", "prepare"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_WATCH_EVERY_S = 0.25
# prctl from the C library, looked up once in the parent (prepare()), so that a child has it at once.
_PRCTL: list[Callable[..., int] | None] = []


def prepare() -> None:
    """Look up what :func:`end_with_parent` needs, in the parent, before it forks."""
    if _PRCTL:
        return
    prctl = None
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (ImportError, OSError, AttributeError):
            prctl = None
    _PRCTL.append(prctl)


def end_with_parent(parent_pid: int) -> None:
    """In a child just forked from ``parent_pid``: be ended when that parent ends (at once, if it
    already has)."""
    prepare()
    prctl = _PRCTL[0]
    if prctl is not None and prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
        if os.getppid() != parent_pid:  # it ended before the signal was asked for
            os._exit(1)
        return
    threading.Thread(
        target=_watch, args=(parent_pid,), name="torchcontract:parent-watch", daemon=True
    ).start()


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_WATCH_EVERY_S)
    os._exit(1)
