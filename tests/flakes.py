"""Run the mutant and correct-object corpora many times with different seeds; fail if any verdict changes.

``nox -s flakes`` (not part of CI: it takes a while). Each run is a fresh pytest process with its own
``PYTHONHASHSEED`` and ``TORCHCONTRACT_TEST_SEED`` (which ``tests/conftest.py`` uses to seed the global
random generators and the ``seed`` option of every check). A test whose outcome differs between runs,
or that fails in any run, is a flaky test or a verdict that depends on chance: both are bugs.

With ``--contention``, two busy processes per core compete with the runs for the CPU from the first run
to the last (a loaded CI machine): a verdict that changes under load, a time budget that a slow call
exhausts where a fast one would not, shows up as a changed or failing test.

    python tests/flakes.py --runs 20 [--contention] [-- pytest arguments...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

CORPORA = [
    "tests/conformance/test_mutants.py",
    "tests/conformance/test_correct_objects.py",
    "tests/workers/test_workers.py",
    "tests/conformance/test_declarations.py",
    "tests/conformance/checks/test_sampler.py",
]


# A busy process: it spins until its parent (given as its argument: one that died before the child
# started cannot be read from getppid()) is gone, so a run killed outright cannot leave it spinning.
BUSY = """
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:
    for _ in range(100_000):
        pass
"""


def _cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def contention(per_core: int = 2) -> Iterator[list[int]]:
    """``per_core`` busy processes per core for the duration of the block (their process ids), stopped
    however the block ends: normally, by an exception, by Ctrl-C or by SIGTERM. Each runs
    ``python -I`` (it imports nothing from the current directory) and ends by itself if this process
    dies first."""
    processes: list[subprocess.Popen[bytes]] = []

    def terminated(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        command = [sys.executable, "-I", "-c", BUSY, str(os.getpid())]
        for _ in range(per_core * _cores()):
            busy = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            processes.append(busy)
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()
        signal.signal(signal.SIGTERM, previous)


def _outcomes(junit: Path) -> dict[str, str]:
    """test id -> passed / failed / error / skipped, read from pytest's JUnit XML."""
    outcomes: dict[str, str] = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        outcome = "passed"
        for kind in ("failure", "error", "skipped"):
            if kind in kinds:
                outcome = "failed" if kind == "failure" else kind
                break
        outcomes[test_id] = outcome
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="how many runs (default 20)")
    parser.add_argument(
        "--contention",
        action="store_true",
        help="two busy processes per core compete with every run for the CPU",
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (default: -n auto)")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2 to compare verdicts")
    extra = args.pytest_args or ["-n", "auto"]
    seen: dict[str, dict[int, str]] = defaultdict(dict)
    with contextlib.ExitStack() as stack:
        if args.contention:
            busy = stack.enter_context(contention())
            print(f"contention: {len(busy)} busy processes on {_cores()} cores", flush=True)
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="torchcontract-flakes-"))
        for run in range(args.runs):
            junit = Path(workdir) / f"run-{run}.xml"
            env = {**os.environ, "PYTHONHASHSEED": str(run + 1), "TORCHCONTRACT_TEST_SEED": str(run + 1)}
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CORPORA]
            command += [f"--junitxml={junit}", *extra]
            completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if not junit.exists():
                print(completed.stdout[-4000:], completed.stderr[-4000:], sep="\n")
                print(f"run {run}: pytest wrote no report (exit {completed.returncode})")
                return 1
            outcomes = _outcomes(junit)
            for test_id, outcome in outcomes.items():
                seen[test_id][run] = outcome
            failing = sorted(
                test_id for test_id, outcome in outcomes.items() if outcome in ("failed", "error")
            )
            print(f"run {run + 1}/{args.runs}: {len(outcomes)} tests, {len(failing)} failing", flush=True)
            for test_id in failing:
                print(f"  FAILED {test_id}")
    changed = {test_id: runs for test_id, runs in seen.items() if len(set(runs.values())) > 1}
    failing = {
        test_id: runs
        for test_id, runs in seen.items()
        if test_id not in changed and set(runs.values()) & {"failed", "error"}
    }
    for test_id, runs in sorted(changed.items()):
        print(f"CHANGED {test_id}: " + ", ".join(f"run {r + 1}: {o}" for r, o in sorted(runs.items())))
    for test_id in sorted(failing):
        print(f"FAILED IN EVERY RUN {test_id}")
    stable = len(seen) - len(changed)
    print(f"{stable} of {len(seen)} tests gave the same outcome in all {args.runs} runs")
    return 1 if changed or failing else 0


if __name__ == "__main__":
    sys.exit(main())
