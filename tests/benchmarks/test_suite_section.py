"""`benchmarks/run.py --only suite` runs and prints its four ratios beside their goals (never their values:
no timed unit tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_suite_section_prints_each_ratio_beside_its_goal() -> None:
    pytest.importorskip("torchvision")
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "run.py"),
        "--only",
        "suite",
        "--suite-repeats",
        "1",
        "--pytest-repeats",
        "1",
        "--check-repeats",
        "1",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^  \(([a-d])\) .* = [0-9.]+x \(goal <= [0-9.]+x\) (met|not met)$", done.stdout, re.M)
    assert [label for label, _ in rows] == ["a", "a", "b", "c", "d"], done.stdout
    assert "warning" not in done.stdout, done.stdout
    assert done.stdout.count("[passed]") == 2, done.stdout
    assert "did not pass" not in done.stdout, done.stdout
