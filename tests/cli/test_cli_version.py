"""``torchcontract --version``: the installed distribution's version, as ``torchcontract.__version__``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import torchcontract
from torchcontract.conformance.cli import main


def test_version_option_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"torchcontract {torchcontract.__version__}\n"


def test_version_option_of_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "torchcontract", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"torchcontract {torchcontract.__version__}\n"
