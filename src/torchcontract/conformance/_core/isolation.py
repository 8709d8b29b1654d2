"""Isolation mode (``isolate=True``): a target's checks run in a child process, so that a fault of the
object cannot end the run.

In process, ``check()`` survives exceptions and hangs of the object, but not ``os._exit``, a
segmentation fault, a kill by a signal or by the out-of-memory killer, nor a hang that holds the GIL
(a hung call in a thread is abandoned; one that never releases the GIL stops everything). Isolated, the
checks run in a child forked from this process (the object is not pickled: the child has it, as it was),
which sends each result back as it is decided, together with the check it is running and the call into
the object in progress (in a small shared buffer, updated by ``_runtime.calls``). When the child dies, the
check it was running fails, naming the signal or exit status and the call in progress, and a new child
goes on with the remaining checks. When it outlives a check's time budget (a hang that holds the GIL,
or one in a check that runs in the calling thread), it is killed: that check fails as hung and, as in
process, the object's remaining checks are unverified.

Fork is used because it needs no pickling and starts in milliseconds; where there is no ``os.fork``
(Windows) isolation is not available and says so. A child forked after CUDA was initialised cannot use
CUDA: isolate a CUDA target before any CUDA call in the parent (build it in a factory).
"""

from __future__ import annotations

import contextlib
import faulthandler
import mmap
import os
import pickle
import select
import signal
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

from torchcontract.conformance._core.arguments import spanning_processes_limit_s
from torchcontract.conformance._core.errors import GRACE_S
from torchcontract.conformance._results import CheckResult, Status
from torchcontract.conformance._runtime import calls, lifetime

__all__ = ["ISOLATION_AVAILABLE", "IsolatedSession", "in_child", "run_isolated"]

ISOLATION_AVAILABLE = hasattr(os, "fork")
# Beyond the budget (and the in-process grace period) before a silent child is killed: the child
# reports an ordinary hang itself, at budget + grace.
_KILL_SLACK_S = 3.0
_BUFFER_SIZE = 4096
# The object's Python stack at a fatal signal, as faulthandler writes it: enough frames to find the line.
_STACK_LINES = 12
_OWN_DIRECTORY = os.path.dirname(os.path.abspath(__file__))


class _CallBuffer:
    """The call in progress in the child, written by ``_runtime.calls``, read by the parent after a death."""

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, _BUFFER_SIZE)

    def write(self, what: str | None) -> None:
        data = (what or "").encode("utf-8", "replace")[: _BUFFER_SIZE - 4]
        self._map[4 : 4 + len(data)] = data
        self._map[0:4] = struct.pack("<I", len(data))

    def read(self) -> str | None:
        (size,) = struct.unpack("<I", self._map[0:4])
        text = self._map[4 : 4 + min(size, _BUFFER_SIZE - 4)].decode("utf-8", "replace")
        return text or None

    def close(self) -> None:
        self._map.close()


class IsolatedSession(Protocol):
    """What isolation needs of the engine's session (:class:`~.session.Session`, which calls
    :func:`run_isolated` with itself): in the child it decides each check, in the parent it keeps the
    results and makes those of the checks the child could not report."""

    @property
    def time_budget_s(self) -> float: ...
    @property
    def target_name(self) -> str: ...
    @property
    def results(self) -> dict[str, CheckResult]: ...

    def result(self, check_id: str) -> CheckResult: ...

    def make_result(
        self, check_id: str, status: Status, message: str, *, duration_s: float
    ) -> CheckResult: ...

    def runs_in_calling_thread(self, check_id: str) -> bool: ...


_IN_CHILD: list[bool] = []


def in_child() -> bool:
    """Whether this process is an isolated child (which runs its checks in process)."""
    return bool(_IN_CHILD)


def _send(fd: int, message: tuple[str, Any]) -> None:
    data = pickle.dumps(message)
    os.write(fd, struct.pack("<Q", len(data)))
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _Reader:
    """Length-prefixed messages from the child, each waited for with a deadline."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""

    def _fill(self, size: int, deadline: float) -> bool:
        while len(self._buffer) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self._fd], [], [], left)
            if not ready:
                return False
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        return True

    def next(self, deadline: float) -> tuple[str, Any] | None:
        """The next message; None when the deadline passed first; EOFError when the child is gone."""
        if not self._fill(8, deadline):
            return None
        (size,) = struct.unpack("<Q", self._buffer[:8])
        if not self._fill(8 + size, deadline):
            return None
        data, self._buffer = self._buffer[8 : 8 + size], self._buffer[8 + size :]
        message: tuple[str, Any] = pickle.loads(data)
        return message


def _fork() -> int:
    # Python 3.12+ warns when a process with threads forks; the child only runs checks and exits.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def _child(
    session: IsolatedSession,
    check_ids: Sequence[str],
    write_fd: int,
    buffer: _CallBuffer,
    crash_log: Any,
    parent_pid: int,
) -> None:
    """Run the checks in the child and report each; never returns."""
    status = 0
    try:
        lifetime.end_with_parent(parent_pid)  # a parent killed (SIGTERM, SIGKILL) takes it along
        _IN_CHILD.append(True)
        # A fatal signal's stack goes to the parent's report, not to the terminal (where pytest's
        # faulthandler would print "Fatal Python error" as if the run itself had crashed).
        faulthandler.enable(crash_log, all_threads=False)
        calls.set_shared_buffer(buffer.write)
        for check_id in check_ids:
            _send(write_fd, ("start", check_id))
            result = session.result(check_id)
            _send(write_fd, ("result", result))
        _send(write_fd, ("done", None))
    except KeyboardInterrupt:  # Ctrl-C, or the object raised it: the parent raises it in turn
        with contextlib.suppress(OSError):
            _send(write_fd, ("interrupted", None))
        status = 70
    except BaseException:  # the parent reports the death with the call in progress
        status = 70
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with contextlib.suppress(OSError):
            os.close(write_fd)
        os._exit(status)


def _deadline_s(session: IsolatedSession, running: str | None) -> float:
    """How long the child may be silent while running ``running`` before it is killed: its own hang
    detection answers at budget + grace; the worker and process-group checks bound each of their
    waits by the budget, so they get several."""
    if running is not None and session.runs_in_calling_thread(running):
        return spanning_processes_limit_s(session.time_budget_s)
    return session.time_budget_s + GRACE_S + _KILL_SLACK_S


def _crash_stack(crash_log: Any) -> str:
    """The innermost frames faulthandler wrote at a fatal signal, indented for a message; '' if none."""
    try:
        crash_log.seek(0)
        text = crash_log.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""
    finally:
        with contextlib.suppress(OSError):
            crash_log.close()
    frames = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("File "):
            continue
        if _OWN_DIRECTORY in line:  # the object's frames end where torchcontract's begin
            break
        frames.append(line)
    if not frames:
        return ""
    shown = "\n".join(f"    {line}" for line in frames[:_STACK_LINES])
    more = f"\n    ... {len(frames) - _STACK_LINES} more" if len(frames) > _STACK_LINES else ""
    return f"\n  stack at the fault (innermost first):\n{shown}{more}"


def _death(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"the isolated process was killed by {name} (signal {number})"
    if os.WIFEXITED(status):
        return f"the isolated process exited with status {os.WEXITSTATUS(status)}"
    return f"the isolated process ended (wait status {status})"


def run_isolated(session: IsolatedSession, check_ids: Sequence[str]) -> dict[str, CheckResult]:
    """The results of ``check_ids`` on ``session``'s target, each decided in a forked child."""
    if not ISOLATION_AVAILABLE:
        raise RuntimeError("isolate=True needs os.fork, which this platform lacks")
    # Results go into the session as they arrive, so that the next child (forked after a death)
    # inherits them: a check whose prerequisite died is skipped, not run into the same crash.
    results = session.results
    remaining = list(check_ids)
    hung: str | None = None
    while remaining:
        if hung is not None:
            for check_id in remaining:
                results[check_id] = _made(session, check_id, "unverified", hung)
            break
        read_fd, write_fd = os.pipe()
        buffer = _CallBuffer()
        crash_log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _crash_stack, after the wait)
        lifetime.prepare()
        parent_pid = os.getpid()
        pid = _fork()
        if pid == 0:  # the child
            os.close(read_fd)
            _child(session, remaining, write_fd, buffer, crash_log, parent_pid)
        os.close(write_fd)
        reader = _Reader(read_fd)
        running: str | None = None
        started = time.monotonic()
        ended_cleanly = interrupted = False
        try:
            while True:
                budget = _deadline_s(session, running)
                try:
                    message = reader.next(started + budget)
                except EOFError:
                    break
                if message is None:  # silent past the budget: a GIL-holding hang, or worse
                    os.kill(pid, signal.SIGKILL)
                    call = buffer.read() or f"torchcontract's own work in {running or 'the setup'}"
                    if running is not None:
                        budget_text = f"{session.time_budget_s:g} s"
                        results[running] = _made(
                            session,
                            running,
                            "failed",
                            f"{call} did not return within the time budget of {budget_text}, and the "
                            "isolated process did not answer (a call that holds the GIL cannot be "
                            "abandoned), so it was killed; expected every call to return.\n"
                            f"  reproduce: {call}",
                        )
                        remaining.remove(running)
                        hung = (
                            f"not verified: {session.target_name} hung in {running} ({call} did not "
                            f"return within {budget_text}); the isolated process was killed"
                        )
                    break
                kind, payload = message
                if kind == "start":
                    running, started = payload, time.monotonic()
                elif kind == "result":
                    results[payload.check_id] = payload
                    remaining.remove(payload.check_id)
                    running = None
                elif kind == "done":
                    ended_cleanly = True
                    break
                elif kind == "interrupted":
                    interrupted = True
                    break
        except BaseException:
            # Ctrl-C here (the child got it too, but may hold the GIL and never handle it): end the
            # child at once, rather than wait for it.
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            raise
        finally:
            os.close(read_fd)
            _, status = os.waitpid(pid, 0)
            in_progress = buffer.read()
            buffer.close()
            stack = _crash_stack(crash_log)
        if interrupted:  # the object raised KeyboardInterrupt, or Ctrl-C reached the child first
            raise KeyboardInterrupt
        if ended_cleanly or hung is not None:
            continue
        death = _death(status)
        if running is None:  # died between checks: nothing of the object's was running
            running = remaining[0]
        where = f" during {in_progress}" if in_progress else ""
        results[running] = _made(
            session,
            running,
            "failed",
            f"{death}{where} while running {running}; expected the object's calls to return or "
            f"raise.\n  reproduce: {in_progress or running}{stack}",
        )
        remaining.remove(running)
    return {check_id: results[check_id] for check_id in check_ids}


def _made(session: IsolatedSession, check_id: str, status: Status, message: str) -> CheckResult:
    return session.make_result(check_id, status, message, duration_s=0.0)
