"""The flake runner's CPU contention (``python tests/flakes.py --contention``): its busy processes run
for the duration of the block and stop however it ends, even when the runner is killed outright."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .flakes import _cores, contention

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, ended but not yet reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_until_ended(pids: list[int], timeout_s: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _running(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if _running(pid)]


def test_two_busy_processes_per_core_run_for_the_block_and_stop_after_it() -> None:
    with contention() as pids:
        assert len(pids) == 2 * _cores()
        assert all(_running(pid) for pid in pids)
    assert _wait_until_ended(pids) == []


def test_the_busy_processes_stop_when_the_block_raises() -> None:
    with pytest.raises(KeyboardInterrupt), contention(per_core=1) as pids:
        raise KeyboardInterrupt
    assert _wait_until_ended(pids) == []


def test_the_busy_processes_stop_when_the_runner_is_terminated() -> None:
    runner = _runner("time.sleep(60)")
    pids = [int(pid) for pid in runner.stdout.readline().split()]  # type: ignore[union-attr]
    runner.terminate()
    assert runner.wait(timeout=30) == 128 + 15
    assert _wait_until_ended(pids) == []


def test_the_busy_processes_end_by_themselves_when_the_runner_is_killed() -> None:
    runner = _runner("os.kill(os.getpid(), signal.SIGKILL)")
    pids = [int(pid) for pid in runner.stdout.readline().split()]  # type: ignore[union-attr]
    runner.wait(timeout=30)
    assert _wait_until_ended(pids) == []


def _runner(then: str) -> subprocess.Popen[str]:
    """A process that starts the contention, prints the busy processes' ids and then runs ``then``."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from flakes import contention

        with contention(per_core=1) as pids:
            print(*pids, flush=True)
            {then}
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
