"""A Stateful target through the plugin and the CLI, as a user of resumable loaders writes it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.plugin.test_plugin import QUIET

LOADERS = """
from torchcontract.conformance import Target, parametrize_with_checks
from torchcontract.protocols import Stateful
from torchcontract.reference_impl import DataLoader


class ForgetsPosition(DataLoader):
    def load_state_dict(self, state_dict):
        super().load_state_dict({})  # starts every resumed epoch from the beginning


LOADER = DataLoader(list(range(20)), batch_size=3, shuffle=True, seed=1)
"""


def test_a_stateful_target_runs_its_clauses_in_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_resume=textwrap.dedent(LOADERS)
        + textwrap.dedent(
            """
            @parametrize_with_checks([
                Target(LOADER, Stateful, name="loader"),
                Target(ForgetsPosition(list(range(20)), batch_size=3), Stateful, name="forgets"),
            ])
            def test_resume(target, check):
                check(target)
            """
        )
    )
    result = pytester.runpytest(*QUIET)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*forgets*stateful.resume_yields_rest_of_epoch*"])
    assert "loader-stateful." in result.stdout.str() or outcomes.get("passed", 0) > 0
    failed_ids = [line for line in result.stdout.lines if line.startswith("FAILED")]
    assert all("forgets" in line for line in failed_ids), failed_ids


def test_the_cli_checks_a_stateful_loader(tmp_path: Path) -> None:
    (tmp_path / "loaders.py").write_text(textwrap.dedent(LOADERS), encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torchcontract.conformance.cli",
            "check",
            "loaders:LOADER",
            "--protocol",
            "Stateful",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stateful.resume_yields_rest_of_epoch" in done.stdout
