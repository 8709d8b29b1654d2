"""The parent's side: starting the fresh interpreter (once per process, lazily or by
:func:`prestart`), and its requests: :func:`fetch` (a dataset's items) and :func:`run_tasks` (a
function of torchcontract's, once per task, each in a child of its own: the ranks of a process group).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torchcontract.conformance._runtime.fresh.main_script import main_plan
from torchcontract.conformance._runtime.fresh.pickling import FOR_MAIN_SCRIPTS, IMPORTABLE, ON_DEMAND, Pickled
from torchcontract.conformance._runtime.fresh.wire import (
    Closed,
    Fetched,
    HelperFailed,
    Raised,
    TimedOut,
    Unavailable,
    recv,
    send,
)

__all__ = ["STARTUP_LIMIT_S", "fetch", "prestart", "run_tasks"]

# A generous bound on starting the server and importing torch in it (a cold disk, a loaded CI host).
STARTUP_LIMIT_S = 120.0
# After killing a hung child, how long the server gets to report it before it is replaced.
_DRAIN_S = 5.0
# The server's first statement sets its import path to the parent's (given as arguments 3 and on):
# ``sys`` is built in, so nothing at all is imported before that, not even from the directory that
# ``-c`` puts first on the path (a ``json.py`` in the user's current directory is never run). Python
# 3.10 has no ``-P``, and ``-I`` would also drop the environment and user site that a spawn worker
# keeps: the interpreter gets exactly the flags a spawn worker of this process would
# (:func:`_interpreter_flags`), and this path.
_BOOT = (
    "import sys; sys.path[:] = sys.argv[3:]; "
    "from torchcontract.conformance._runtime.fresh.server import serve; serve()"
)


class _Server:
    """The server process, started at construction; :meth:`wait_ready` waits for it to be ready (so
    that :func:`prestart` can overlap its start with other work)."""

    def __init__(self, *, preload: tuple[str, ...] = ()) -> None:
        parent_end, child_end = socket.socketpair()
        self.children: list[int] = []
        self.ready = False
        self._started = time.monotonic()
        # The packages of ON_DEMAND it has imported: at its start (``preload``, what the run is known
        # to need), or before the first request that needs one (_imports).
        flag = ",".join(name for name in preload if name in ON_DEMAND) or "-"
        self.imported: set[str] = set()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *_interpreter_flags(),
                    "-c",
                    _BOOT,
                    str(child_end.fileno()),
                    flag,
                    *_import_path(),
                ],
                pass_fds=(child_end.fileno(),),
                cwd=os.getcwd(),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except (OSError, ValueError) as error:
            parent_end.close()
            raise Unavailable(
                f"torchcontract could not start its fresh interpreter ({sys.executable!r}: {error})"
            ) from error
        finally:
            child_end.close()
        self.conn = parent_end
        self._finalizer = weakref.finalize(self, _end_server, self.process, self.conn, self.children)

    def wait_ready(self) -> None:
        """Wait (within :data:`STARTUP_LIMIT_S` of the start) for the server's "ready" frame; on a
        failure it is closed and :class:`Unavailable` raised."""
        if self.ready:
            return
        try:
            # A frame that came long ago (a prestarted server) is still read.
            frame = recv(self.conn, max(self._started + STARTUP_LIMIT_S, time.monotonic() + 1.0))
        except (TimeoutError, Closed, OSError, pickle.PickleError, EOFError) as error:
            self.close()
            why = "did not start" if isinstance(error, TimeoutError) else "exited"
            raise HelperFailed(
                f"torchcontract's fresh interpreter ({sys.executable} -c ...) {why} within "
                f"{STARTUP_LIMIT_S:g} s (see its standard error); this is not the object's failure"
            ) from error
        if frame[0] != "ready":
            self.close()
            raise HelperFailed(
                f"torchcontract's fresh interpreter answered {frame[0]!r}; this is not the object's failure"
            )
        self.imported.update(frame[2])
        self.ready = True

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self._finalizer()

    def kill_children(self, sig: int = signal.SIGKILL) -> None:
        for pid in self.children:
            with contextlib.suppress(OSError):
                os.killpg(pid, sig)


def _interpreter_flags() -> list[str]:
    """The command-line flags of this interpreter that a spawn worker gets too (``-O``, ``-B``,
    ``-E``, ``-s``, ``-I``, ``-P``, ``-W``, ``-X``: multiprocessing's ``spawn.get_command_line`` passes
    ``subprocess._args_from_interpreter_flags()``), so that the fresh interpreter runs the object as
    a spawn worker would (``-O`` turns its asserts off, ``-X utf8`` changes its text encoding)."""
    try:
        flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    except Exception:  # a private helper that moved: the default flags, as before
        return []
    return [flag for flag in flags if isinstance(flag, str)]


def _import_path() -> list[str]:
    """This process's ``sys.path``, as the fresh interpreter's arguments (an entry that is no string,
    or that no argument can hold, is one the import system skips anyway)."""
    entries: list[object] = list(sys.path)  # typed list[str], but anything can be put in it
    return [entry for entry in entries if isinstance(entry, str) and "\0" not in entry]


def _end_server(process: subprocess.Popen[bytes], conn: socket.socket, children: list[int]) -> None:
    for pid in children:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    conn.close()
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


_lock = threading.Lock()
_current: list[_Server] = []


def _forget_after_fork() -> None:
    """In a forked child (isolation mode, a DataLoader worker): the parent's server is the parent's.
    Forget it without ending it, and start afresh with a lock no other thread can hold."""
    global _lock
    _lock = threading.Lock()
    while _current:
        _current.pop()._finalizer.detach()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _server() -> _Server:
    """The running server, started when there is none (the fixed cost: not the object's budget)."""
    if _current:
        server = _current[0]
        if not server.ready:  # started by prestart(): its failure to start is reported once, here
            try:
                server.wait_ready()
            except Unavailable:
                _current.pop()
                raise
        if server.alive():
            return server
        _current.pop().close()
    server = _start()
    try:
        server.wait_ready()
    except Unavailable:
        _current.pop()
        raise
    return server


def _start(preload: tuple[str, ...] = ()) -> _Server:
    if not sys.executable:
        raise Unavailable("torchcontract cannot start a fresh interpreter: sys.executable is empty")
    server = _Server(preload=preload)
    _current.append(server)
    return server


def prestart(preload: tuple[str, ...] = ()) -> None:
    """Start the server now, without waiting for it, when none runs: a run that will need it (a
    spawn clause) overlaps its start (importing ``preload``, packages of :data:`ON_DEMAND`: what the
    object needs, :func:`imports_for`) with the checks before. No thread is started (the worker
    clauses fork); the first request waits for it to be ready. Never raises: a failure to start is
    reported by the first request."""
    if not hasattr(os, "fork") or not _lock.acquire(blocking=False):
        return  # without fork each request starts its own; a request in flight has one
    try:
        if not _current:
            with contextlib.suppress(Unavailable):
                _start(preload)
    except Exception:  # an odd sys.path or executable: the first request reports it
        pass
    finally:
        _lock.release()


def _discard(server: _Server) -> None:
    server.close()
    if _current and _current[0] is server:
        _current.pop()


def _imports(server: _Server, wanted: tuple[str, ...]) -> None:
    """Have the server import the packages of ``wanted`` it has not, before the request's deadline
    starts: torchcontract's fixed cost, not the object's."""
    needed = [name for name in wanted if name in IMPORTABLE and name not in server.imported]
    if not needed:
        return
    try:
        send(server.conn, ("import", needed))
        frame = recv(server.conn, time.monotonic() + STARTUP_LIMIT_S)
    except (TimeoutError, Closed, OSError, pickle.PickleError, EOFError) as error:
        _discard(server)
        raise HelperFailed(
            f"torchcontract's fresh interpreter did not import {', '.join(needed)} "
            f"({type(error).__name__}); this is not the object's failure"
        ) from error
    if frame[0] != "imported":
        _discard(server)
        raise HelperFailed(
            f"torchcontract's fresh interpreter answered {frame[0]!r} to an import; this is not the "
            "object's failure"
        )
    server.imported.update(frame[1])


@dataclass
class _Answer:
    """What a request came to: the children's exit codes (none when the server did not report them),
    whether the deadline came first, and whether the server had started the children."""

    codes: list[int]
    timed_out: bool
    started: bool


def _request(
    header: dict[str, Any],
    what: Pickled,
    time_left: float,
    on_frame: Callable[[tuple[Any, ...]], None],
    *,
    imports: tuple[str, ...] = (),
) -> _Answer:
    """Send one request; feed the children's frames to ``on_frame`` until they exit, within
    ``time_left`` seconds counted from when the server is ready. A server found dead before it
    started the children (killed since the last request) is replaced once; :class:`HelperFailed`
    when it fails again, or stops answering once it had."""
    with _lock:
        try:
            return _request_once(header, what, time_left, on_frame, imports)
        except _DeadBeforeStart:
            pass  # killed since the last request: a new server, once
        try:
            return _request_once(header, what, time_left, on_frame, imports)
        except _DeadBeforeStart as dead:
            raise HelperFailed(
                f"torchcontract's fresh interpreter stopped answering ({dead.args[0]}) before it started "
                "the request's child; this is not the object's failure"
            ) from None


class _DeadBeforeStart(Exception):
    """The server's connection failed before it had started a child: nothing of the object ran."""


def _request_once(
    header: dict[str, Any],
    what: Pickled,
    time_left: float,
    on_frame: Callable[[tuple[Any, ...]], None],
    imports: tuple[str, ...],
) -> _Answer:
    server = _server()
    main = (FOR_MAIN_SCRIPTS,) if header["main"] is not None else ()
    _imports(server, (*imports, *what.imports, *main))
    deadline = time.monotonic() + max(time_left, 0.0)
    full = {"sys_path": list(sys.path), "cwd": os.getcwd(), **header}
    if not hasattr(os, "fork"):
        full["tasks"] = 1
    started = False
    try:
        send(server.conn, ("request", full, what.data))
        while True:
            try:
                frame = recv(server.conn, deadline)
            except TimeoutError:
                break
            if frame[0] == "started":
                server.children[:] = frame[1]
                started = True
            elif frame[0] == "exit":
                server.children.clear()
                if not hasattr(os, "fork"):
                    _discard(server)
                return _Answer(list(frame[1]), timed_out=False, started=True)
            else:
                on_frame(frame)
    except (TimeoutError, Closed, OSError, pickle.PickleError, EOFError) as error:
        _discard(server)
        if not started:
            raise _DeadBeforeStart(type(error).__name__) from error
        raise HelperFailed(
            f"torchcontract's fresh interpreter stopped answering ({type(error).__name__}) while it ran "
            "the request; this is not the object's failure"
        ) from error
    except BaseException:
        _discard(server)  # an interrupt: end whatever still runs, at once
        raise
    # Out of time: stop the children, and let the server report them (else replace it).
    server.kill_children()
    codes: list[int] = []
    try:
        drain = time.monotonic() + _DRAIN_S
        while True:
            frame = recv(server.conn, drain)
            if frame[0] == "started":
                started = True
            elif frame[0] == "exit":
                server.children.clear()
                codes = list(frame[1])
                break
    except Exception:  # the server is in an unknown state (stopped, say): replace it next time
        _discard(server)
    except BaseException:
        _discard(server)
        raise
    if not hasattr(os, "fork") and _current and _current[0] is server:
        _discard(server)
    return _Answer(codes, timed_out=True, started=started)


_NOT_ANSWERING = (
    "torchcontract's fresh interpreter did not answer within {budget} (it was stopped, or is starved "
    "of CPU) before {what}; this is not the object's failure"
)


def fetch(what: Pickled, *, indices: list[int] | None, limit: int, time_left: float) -> Fetched:
    """Rebuild the dataset pickled in ``what`` in a fresh interpreter and compute ``ds[i]`` for
    ``indices``, or (``indices=None``) the first ``limit`` items of ``iter(ds)``.

    Raises :class:`Unavailable` (skip), :class:`TimedOut` (the object's call in progress after
    ``time_left`` seconds, not counting the server's start) or :class:`HelperFailed` (the server, not
    the object, did not answer)."""
    header = {
        "task": "samples",
        "tasks": 1,
        "main": main_plan(what.main_names, "ds"),
        "indices": indices,
        "limit": limit,
        "seed": int.from_bytes(os.urandom(7), "big"),
    }
    fetched = Fetched()
    progress = ["starting a child of the fresh interpreter"]
    # Whether the object's code began (a progress frame: the child is rebuilding or calling it), and
    # whether the child had finished (so that only the server's exit report was missing).
    began, done = [False], [False]

    def on_frame(frame: tuple[Any, ...]) -> None:
        kind = frame[0]
        if kind == "progress":
            progress[0] = frame[1]
            began[0] = True
        elif kind == "done":
            done[0] = True
        elif kind == "item":
            fetched.items.append(frame[1])
        elif kind == "end":
            fetched.ended = True
        elif kind == "raised":
            fetched.raised = Raised(*frame[1:])

    answer = _request(header, what, time_left, on_frame)
    if answer.timed_out:
        budget = f"{time_left:.3g} s"
        if not began[0]:
            raise HelperFailed(_NOT_ANSWERING.format(budget=budget, what="the object's first call began"))
        if done[0] or fetched.raised is not None:
            raise HelperFailed(
                _NOT_ANSWERING.format(budget=budget, what="reporting that its child had ended")
            )
        raise TimedOut(progress[0])
    codes = answer.codes
    if fetched.raised is None and codes and codes[0] != 0 and not fetched.ended:
        fetched.raised = Raised(progress[0], "the worker process died", f"exit status {codes[0]}", "")
    return fetched


def run_tasks(
    what: Pickled,
    *,
    entry: Callable[..., None],
    tasks: int,
    arguments: dict[str, Any],
    timeout_s: float,
    described: str,
    imports: tuple[str, ...] = (),
) -> list[int | None]:
    """Run ``entry(index, what.data, **arguments)`` for each ``index`` in ``range(tasks)``, each in a
    child of the fresh interpreter (the ranks of a process group: ``entry`` is a module-level function
    of torchcontract's, named in the request, so that this layer imports none of those above it);
    ``described`` names the pickled object in messages, ``imports`` are packages the server imports
    first, outside ``timeout_s``. The children's exit codes (negative: a signal ended it; None: still
    running at ``timeout_s``, stopped)."""
    if not hasattr(os, "fork"):
        raise Unavailable(
            "torchcontract runs the ranks of a process group as forks of its fresh interpreter, and "
            "this platform has no os.fork"
        )
    header = {
        "task": "call",
        "entry": f"{entry.__module__}:{entry.__qualname__}",
        "tasks": tasks,
        "main": main_plan(what.main_names, described),
        "arguments": arguments,
    }
    answer = _request(header, what, timeout_s, lambda frame: None, imports=imports)
    if not answer.started:
        raise HelperFailed(
            _NOT_ANSWERING.format(budget=f"{timeout_s:.3g} s", what="it started the ranks' processes")
        )
    if len(answer.codes) != tasks:
        return [None] * tasks
    killed = -int(signal.SIGKILL)
    return [None if answer.timed_out and code == killed else code for code in answer.codes]
