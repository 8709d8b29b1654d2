"""The src layout: only the installed package is importable, and importing it registers each check once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["conformance", "protocols", "reference_impl"])
def test_the_repository_top_level_is_not_a_package(name: str) -> None:
    # Before the src layout, `import conformance.checks.map_dataset` from the repository registered
    # every check a second time and raised.
    done = subprocess.run(
        [sys.executable, "-c", f"import {name}"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "ModuleNotFoundError" in done.stderr


def test_importing_a_check_module_directly_registers_nothing_twice() -> None:
    script = (
        "import torchcontract.conformance.checks.sampler, torchcontract.conformance as c; "
        "print(len(c.CHECKS))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    from torchcontract.conformance import CHECKS

    assert int(done.stdout) == len(CHECKS)
