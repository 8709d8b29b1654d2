"""Isolation mode: a crash or a GIL-holding hang of the object fails a check, and the run goes on."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from torchcontract.conformance import check
from torchcontract.conformance._core.isolation import ISOLATION_AVAILABLE
from torchcontract.protocols import MapDataset

pytestmark = pytest.mark.skipif(not ISOLATION_AVAILABLE, reason="isolation needs os.fork")

GETITEM = "map_dataset.getitem_in_range_succeeds"


class Faulty:
    """A map-style dataset whose last sample dies in the chosen way."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        if not -8 <= index < 8:
            raise IndexError(index)
        if index == 7:
            if self.how == "segfault":
                ctypes.string_at(0)  # reads address 0: SIGSEGV
            elif self.how == "exit":
                os._exit(3)
            elif self.how == "gil":
                # Catastrophic backtracking in C: the GIL is never released, so the in-process hang
                # detection (an abandoned thread) cannot help.
                re.match(r"(a+)+$", "a" * 60 + "b")
        return index % 8


@pytest.mark.parametrize(
    ("how", "fragment"),
    [
        ("segfault", "killed by SIGSEGV (signal 11) during ds[7]"),
        ("exit", "exited with status 3 during ds[7]"),
    ],
)
def test_a_death_fails_the_check_that_was_running_and_the_run_goes_on(how: str, fragment: str) -> None:
    report = check(Faulty(how), MapDataset, isolate=True)
    results = {r.check_id: r for r in report.results}
    assert results[GETITEM].status == "failed"
    assert fragment in results[GETITEM].message
    assert "reproduce: ds[7]" in results[GETITEM].message
    if how == "segfault":  # the object's line, from faulthandler in the child, is in the message
        assert "stack at the fault" in results[GETITEM].message
        assert "test_isolation.py" in results[GETITEM].message
        assert "__getitem__" in results[GETITEM].message
    # The checks that need ds[7] are skipped for the failed prerequisite; the others ran.
    assert results["map_dataset.len_is_non_negative_int"].status == "passed"
    assert [r.check_id for r in report.results if r.status == "failed"] == [GETITEM]
    assert not report.passed


def test_a_gil_holding_hang_is_ended_at_the_budget() -> None:
    started = time.monotonic()
    report = check(Faulty("gil"), MapDataset, isolate=True, time_budget_s=1)
    elapsed = time.monotonic() - started
    results = {r.check_id: r for r in report.results}
    assert results[GETITEM].status == "failed"
    assert "ds[7] did not return within the time budget of 1 s" in results[GETITEM].message
    assert "holds the GIL" in results[GETITEM].message
    later = [r for r in report.results[2:] if not r.message.startswith("needs")]
    assert later
    assert all(r.status == "unverified" for r in later)
    assert not report.passed
    # The budget, the grace period and the kill slack; nothing for the unverified checks.
    assert elapsed < 1 + 2 + 3 + 10


class Counting:
    """A correct map-style dataset that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        if not -8 <= index < 8:
            raise IndexError(index)
        self.calls += 1
        return index % 8


def test_a_correct_object_passes_isolated_and_is_left_untouched() -> None:
    dataset = Counting()
    report = check(dataset, MapDataset, isolate=True)
    assert report.passed, report
    assert dataset.calls == 0  # every call happened in the child


def test_the_isolate_option_is_validated() -> None:
    with pytest.raises(TypeError, match="option isolate='yes' is not valid"):
        check(Faulty("none"), MapDataset, isolate="yes")


@pytest.mark.slow
def test_the_cli_and_the_plugin_take_the_isolation_switch(tmp_path: Path, pytester: pytest.Pytester) -> None:
    source = textwrap.dedent(
        """
        import ctypes

        class Segfaults:
            def __len__(self):
                return 4

            def __getitem__(self, index):
                if not -4 <= index < 4:
                    raise IndexError(index)
                if index == 3:
                    ctypes.string_at(0)
                return index
        """
    )
    (tmp_path / "faulty.py").write_text(source + "\nds = Segfaults()\n", encoding="utf-8")
    command = [sys.executable, "-m", "torchcontract.conformance.cli", "check", "faulty:ds"]
    result = subprocess.run(
        [*command, "--protocol", "MapDataset", "--isolate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SIGSEGV" in result.stdout

    pytester.makepyfile(
        test_isolated=source
        + textwrap.dedent(
            """
            from torchcontract.conformance import Target, parametrize_with_checks
            from torchcontract.protocols import MapDataset

            @parametrize_with_checks([Target(Segfaults(), MapDataset, name="segfaults")])
            def test_conformance(target, check):
                check(target)
            """
        )
    )
    pytester.makeini("[pytest]\nconformance_isolate = true\n")
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "getitem_in_range")
    outcome.stdout.fnmatch_lines(["*killed by SIGSEGV*"])
    assert outcome.ret == pytest.ExitCode.TESTS_FAILED
