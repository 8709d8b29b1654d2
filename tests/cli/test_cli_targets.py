"""Several targets in one run of the CLI: ``MODULE:ATTR`` names, a module's every Target, a factory
returning a list of Targets; one report, one verdict, the same words as the pytest plugin, a progress
line on a terminal only, and a closing line that says why a run failed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from torchcontract.conformance.cli import main

from ..user_modules import SQUARES, user_module, write_user_module

PAST_END = "map_dataset.index_past_end_raises_index_error"
NEGATIVE = "map_dataset.negative_index_mirrors_python"

MODULE = user_module(
    """
    from torchcontract.conformance import Target
    from torchcontract.protocols import MapDataset
""",
    SQUARES,
    """
    class NegativeWraps(Squares):
        '''Correct but for a recommended clause: ds[-9] does not raise.'''

        def __getitem__(self, index):
            if index >= 8:
                raise IndexError(index)
            return (index % 8) ** 2


    squares = Target(Squares(), MapDataset, name="squares")
    wrapping = Target(Wrapping(), MapDataset, name="wrapping")
    also_squares = squares  # one Target bound to two names is one target
    plain = Squares()


    def more_targets():
        return [Target(Squares(), MapDataset, name="more"), Target(NegativeWraps(), MapDataset, name="warns")]


    def mixed():
        return [Target(Squares(), MapDataset, name="ok"), Squares()]
""",
)
CORRECT_MODULE = user_module(
    """
    from torchcontract.conformance import Target
    from torchcontract.protocols import MapDataset
""",
    SQUARES,
    """
    first = Target(Squares(), MapDataset, name="first")
    second = Target(Squares(), MapDataset, name="second")
""",
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_user_module(tmp_path, monkeypatch, "correct_targets", CORRECT_MODULE)
    return write_user_module(tmp_path, monkeypatch, "mytargets", MODULE)


def _targets(path: Path) -> list[str]:
    return [report["target"] for report in json.loads(path.read_text())["targets"]]


def test_a_module_checks_every_target_defined_at_its_module_level(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = project / "report.json"
    assert main(["check", "mytargets", "--json", str(report)]) == 1
    out = capsys.readouterr().out
    assert _targets(report) == ["squares", "wrapping"]
    assert "squares as MapDataset on cpu: PASSED" in out
    assert "wrapping as MapDataset on cpu: FAILED" in out
    # One overview of the run, and its verdict last, naming why it failed.
    assert "wrapping  MapDataset" in out
    assert out.splitlines()[-1].startswith(
        f"torchcontract check: FAILED: 1 of 2 targets failed: wrapping: {PAST_END} failed"
    )


def test_several_targets_and_a_factory_returning_a_list_in_one_run(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = project / "report.json"
    args = [
        "check",
        "correct_targets:first",
        "mytargets:more_targets",
        "correct_targets",
        "--json",
        str(report),
    ]
    # correct_targets names first again: a target named twice is refused, as pytest refuses it.
    assert main(args) == 2
    assert "target names must be unique in a run" in capsys.readouterr().err
    assert main([*args[:3], "--json", str(report)]) == 0
    assert _targets(report) == ["first", "more", "warns"]
    out = capsys.readouterr().out
    # A failed recommended check is "warned", in the block, the table and the closing line, as pytest
    # reports it; it does not fail the run, unless --strict.
    # (Counts without numbers: the worker clauses skip where torch is not installed.)
    assert re.search(r"^warns as MapDataset on cpu: PASSED \(\d+ passed, 1 warned, \d+ skipped\)$", out, re.M)
    assert f"  WARN    {NEGATIVE} (recommended)" in out
    assert re.fullmatch(
        r"torchcontract check: PASSED: 3 targets \(\d+ passed, 1 warned, \d+ skipped\)", out.splitlines()[-1]
    )
    assert main(["check", "mytargets:more_targets", "--strict"]) == 1
    closing = capsys.readouterr().out.splitlines()[-1]
    assert closing.startswith(f"torchcontract check: FAILED: 1 of 2 targets failed: warns: {NEGATIVE} failed")


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["check", "mytargets", "--protocol", "MapDataset"],
            "mytargets gives Targets: protocols and options",
        ),
        (["check", "mytargets:mixed"], "item 1 is"),
        (["check", "mytargets:plain"], "--protocol is needed to check mytargets:plain"),
        (["check", "json"], "module 'json' defines no Target at module level"),
    ],
)
def test_unusable_targets_exit_two_naming_the_problem(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_report_takes_the_users_targets(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "mytargets", "mytargets:plain", "--protocol", "MapDataset"]) == 2
    assert main(["report", "mytargets"]) == 1
    out = capsys.readouterr().out
    header, _rule, *rows = out.splitlines()[:4]
    assert header.split() == [
        "target", "protocol", "passed", "failed", "error", "unverified", "warned", "skipped", "xfailed",
        "xpassed", "verdict",
    ]  # fmt: skip
    assert [row.split()[0] for row in rows] == ["squares", "wrapping"]
    assert f"wrapping: {PAST_END}: failed" in out
    assert out.splitlines()[-1].startswith("torchcontract report: FAILED: 1 of 2 targets failed: wrapping")


def test_write_baseline_writes_the_failures_and_the_baseline_blesses_them(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from torchcontract.conformance._report.baseline import read_baseline

    written = project / "known.toml"
    assert main(["check", "mytargets", "--write-baseline", str(written)]) == 1
    assert read_baseline(written) == {"wrapping": {PAST_END: "TODO"}}
    # Still TODO: the run fails, naming the entry.
    assert main(["check", "mytargets", "--baseline", str(written)]) == 1
    assert (
        f"wrapping: {PAST_END} failed, baseline entry '{PAST_END}' is still TODO" in capsys.readouterr().out
    )
    written.write_text(written.read_text().replace('"TODO"', '"wraps round on purpose"'))
    assert main(["check", "mytargets", "--baseline", str(written)]) == 0
    assert "torchcontract check: PASSED: 2 targets" in capsys.readouterr().out


def _run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run the CLI with standard output and standard error on a pseudo-terminal: what a person sees."""
    import pty

    script = "import sys; from torchcontract.conformance.cli import main; sys.exit(main(sys.argv[1:]))"
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed (EIO): the process is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=300), b"".join(chunks).decode()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pseudo-terminal (pty) of Linux's")
def test_progress_is_shown_on_a_terminal_only(project: Path) -> None:
    code, seen = _run_on_a_terminal(["check", "correct_targets"], project)
    assert code == 0, seen
    assert "\rtorchcontract: checking 1/2: first (MapDataset)" in seen
    assert "\rtorchcontract: checking 2/2: second (MapDataset)" in seen
    # Cleared before each block and at the end: the last line is the verdict.
    assert re.fullmatch(
        r"torchcontract check: PASSED: 2 targets \(\d+ passed, \d+ skipped\)", seen.splitlines()[-1]
    )
    piped = subprocess.run(
        [sys.executable, "-m", "torchcontract", "check", "correct_targets"],
        cwd=project, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert "checking" not in piped.stdout + piped.stderr
    assert "\r" not in piped.stdout + piped.stderr
