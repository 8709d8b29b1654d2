"""Runs mypy over a typing case file the way the project configures it, and reads case-file markers.

A case file passes when mypy, run with ``--strict --warn-unused-ignores --enable-error-code
ignore-without-code`` (plus the ``[tool.mypy]`` table of ``pyproject.toml``), exits 0 with nothing to say:
an unexpected error, an expected error that went away (an unused ``# type: ignore[code]``), an ignore
with the wrong code or without one, and a failed ``assert_type`` all make it fail.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CASES_DIR = Path(__file__).resolve().parent / "cases"
PYPROJECT = REPO_ROOT / "pyproject.toml"

# The options that make a case file a test, whatever pyproject.toml says.
MYPY_FLAGS = (
    "--strict",
    "--warn-unused-ignores",
    "--enable-error-code",
    "ignore-without-code",
    "--no-color-output",
    "--no-pretty",
    "--show-error-codes",
    "--show-traceback",
)

_REQUIRES = re.compile(r"^#\s*requires:\s*(?P<modules>.+?)\s*$")


@dataclass(frozen=True)
class MypyResult:
    exit_status: int
    stdout: str
    stderr: str
    command: tuple[str, ...]

    @property
    def passed(self) -> bool:
        # mypy exits 0 with a note (a stray reveal_type) too: only a bare success line passes.
        lines = self.stdout.strip().splitlines()
        return self.exit_status == 0 and len(lines) == 1 and lines[0].startswith("Success:")

    def report(self) -> str:
        return (
            f"$ mypy {' '.join(self.command)}\n(exit status {self.exit_status})\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )


def case_files() -> list[Path]:
    """Every case file, ``_classes.py`` included (it must type-check too); not ``__init__.py``."""
    return sorted(p for p in CASES_DIR.glob("*.py") if p.name != "__init__.py")


def required_modules(path: Path) -> list[str]:
    """The modules named by ``# requires: a, b.c`` comment lines in the file's leading comment block."""
    modules: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        match = _REQUIRES.match(line)
        if match:
            modules += [m.strip() for m in match["modules"].split(",") if m.strip()]
    return modules


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def missing_modules(path: Path) -> list[str]:
    return [m for m in required_modules(path) if not _importable(m)]


def run_mypy(path: Path, cache_dir: Path, *extra: str) -> MypyResult:
    """mypy over one file, in this process (mypy's start-up is paid once), with its own cache folder."""
    from mypy import api

    args: list[str] = []
    if PYPROJECT.is_file():
        args += ["--config-file", str(PYPROJECT)]
    args += [*MYPY_FLAGS, "--cache-dir", str(cache_dir), "--python-executable", sys.executable]
    args += [*extra, str(path)]
    stdout, stderr, exit_status = api.run(args)
    return MypyResult(exit_status, stdout, stderr, tuple(args))
