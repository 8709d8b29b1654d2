"""Interrupts and termination end everything at once.

A ``KeyboardInterrupt`` always propagates out of ``check()`` (Python's and pytest's convention),
whether the user pressed Ctrl-C or the object's own code raised it, in every way a check runs: in a
thread of its own, in the calling thread (the worker clauses), in an isolated child process. And a
process running ``check()`` that gets SIGINT (Ctrl-C at a terminal: the whole foreground process group)
or SIGTERM (a CI job cancelled: the process alone) exits promptly and leaves no process behind: not
the isolated child (which may hold the GIL in C code, and then cannot handle a signal), not the fresh
interpreter of the spawn clauses, nor the child in which it rebuilds the object.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from torchcontract.conformance import Target, check
from torchcontract.conformance._core.isolation import ISOLATION_AVAILABLE
from torchcontract.protocols import MapDataset

# -- KeyboardInterrupt raised by the object -----------------------------------------------------------


class InterruptsAt:
    """A map-style dataset whose ``ds[index]`` raises KeyboardInterrupt (as if Ctrl-C landed there)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        if not -8 <= index < 8:
            raise IndexError(index)
        if index == self.index:
            raise KeyboardInterrupt
        return index % 8


def test_an_interrupt_in_a_check_run_in_a_thread_propagates() -> None:
    with pytest.raises(KeyboardInterrupt):
        check(InterruptsAt(7), MapDataset)


@pytest.mark.skipif(not ISOLATION_AVAILABLE, reason="isolation needs os.fork")
def test_an_interrupt_in_an_isolated_child_propagates() -> None:
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        check(InterruptsAt(7), MapDataset, isolate=True)
    assert time.monotonic() - started < 20


def test_an_interrupt_in_a_worker_clause_run_in_the_calling_thread_propagates() -> None:
    # (Ctrl-C itself, a SIGINT while a worker clause runs: tests/workers/test_main_script.py.)
    pytest.importorskip("torch", reason="the worker clauses need torch")
    target = Target(InterruptsAt(7), MapDataset, error_index=7)
    worker_clause = "map_dataset.worker_errors_keep_their_type"  # calls ds[7] here, then in a worker
    with pytest.raises(KeyboardInterrupt):
        target.run(
            select=lambda c: c.check_id in (worker_clause, "map_dataset.index_past_end_raises_index_error")
        )


# -- SIGINT and SIGTERM to a process running check() ----------------------------------------------------

OBJECTS = """
import os, re, time

MARK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "HANGING")


def _hang(how):
    open(MARK, "w").close()
    if how == "gil":
        # Catastrophic backtracking in C: the GIL is never released, so no signal handler runs.
        re.match(r"(a+)+$", "a" * 64 + "b")
    else:
        for _ in range(6000):
            time.sleep(0.1)


class Hangs:
    '''A map-style dataset whose ds[7] hangs: everywhere, or only where it is rebuilt from its pickle
    (in another process: the fresh interpreter of the spawn clause).'''

    def __init__(self, how, only_elsewhere=False):
        self.how, self.creator = how, os.getpid() if only_elsewhere else None

    def __len__(self):
        return 8

    def __getitem__(self, index):
        if not -8 <= index < 8:
            raise IndexError(index)
        if index == 7 and self.creator in (None, -1) or (self.creator and os.getpid() != self.creator):
            _hang(self.how)
        return index % 8
"""

SCRIPT = """
import signal

# Ctrl-C raises KeyboardInterrupt, as in a terminal's Python: a runner that starts the tests as a
# background job of a shell ignores SIGINT, and this process would inherit that.
signal.signal(signal.SIGINT, signal.default_int_handler)

from objects import Hangs
from torchcontract.conformance import Target
from torchcontract.protocols import MapDataset

target = Target(Hangs({how!r}, only_elsewhere={elsewhere}), MapDataset, isolate={isolate})
target.run(time_budget_s=300, select=lambda c: c.check_id in {checks!r})
"""

GETITEM = ("map_dataset.getitem_in_range_succeeds",)
SPAWN = ("map_dataset.len_is_non_negative_int", "map_dataset.spawn_workers_yield_same_samples")
PROMPTLY_S = 15.0


def _marked(mark: str) -> list[int]:
    """The processes (not yet reaped zombies aside) whose environment holds ``mark``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environment = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if mark.encode() in environment:
            found.append(int(entry))
    return found


def _end(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the processes left in Linux's /proc")
@pytest.mark.parametrize(
    ("how", "isolate", "checks", "sent"),
    [
        ("gil", True, GETITEM, "SIGINT"),
        ("python", True, GETITEM, "SIGINT"),
        ("python", True, GETITEM, "SIGTERM"),
        ("python", False, SPAWN, "SIGINT"),
        ("python", False, SPAWN, "SIGTERM"),
    ],
    ids=[
        "isolated-gil-hang-ctrl-c",
        "isolated-hang-ctrl-c",
        "isolated-hang-sigterm",
        "spawn-clause-hang-ctrl-c",
        "spawn-clause-hang-sigterm",
    ],
)
def test_a_signal_ends_the_run_promptly_and_leaves_no_process(
    tmp_path: Path, how: str, isolate: bool, checks: tuple[str, ...], sent: str
) -> None:
    if isolate and not ISOLATION_AVAILABLE:
        pytest.skip("isolation needs os.fork")
    if checks == SPAWN:
        pytest.importorskip("torch", reason="the spawn clause needs torch")
    (tmp_path / "objects.py").write_text(textwrap.dedent(OBJECTS), encoding="utf-8")
    elsewhere = checks == SPAWN
    script = SCRIPT.format(how=how, elsewhere=elsewhere, isolate=isolate, checks=checks)
    (tmp_path / "script.py").write_text(script, encoding="utf-8")
    mark = f"TORCHCONTRACT_TEST_RUN={uuid.uuid4().hex}"
    name, _, value = mark.partition("=")
    process = subprocess.Popen(
        [sys.executable, "script.py"],
        cwd=tmp_path,
        env={**os.environ, name: value},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: Ctrl-C reaches it and what it started there
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "HANGING").exists():
            assert process.poll() is None, process.communicate()[0].decode()
            assert time.monotonic() < deadline, "the object's call never started"
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the hang
        if sent == "SIGINT":
            os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        else:
            process.send_signal(signal.SIGTERM)  # what a CI runner's cancel does
        sent_at = time.monotonic()
        try:
            process.wait(PROMPTLY_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run did not end within {PROMPTLY_S:g} s of {sent}")
        while _marked(mark) and time.monotonic() < sent_at + PROMPTLY_S:
            time.sleep(0.1)
        left = _marked(mark)
        assert left == [], f"processes left {PROMPTLY_S:g} s after {sent}: {left}"
        if sent == "SIGINT":
            output = process.communicate()[0].decode()
            assert "KeyboardInterrupt" in output, output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        _end(_marked(mark))
