"""Runs mypy and pyright over a typing case file the way the project configures them, and reads the
case files' markers.

mypy: a case file passes when mypy, run with ``--strict --warn-unused-ignores --enable-error-code
ignore-without-code`` (plus the ``[tool.mypy]`` table of ``pyproject.toml``), exits 0 with nothing to say:
an unexpected error, an expected error that went away (an unused ``# type: ignore[code]``), an ignore
with the wrong code or without one, and a failed ``assert_type`` all make it fail.

pyright: a case file passes when pyright, run with ``PYRIGHT_CONFIG``, says nothing about it (no error,
no warning, no information: a stray ``reveal_type`` is an information) but what the file's
``# mypy only:`` markers expect. pyright reads ``# type: ignore`` too, and with
``reportUnnecessaryTypeIgnoreComment`` one on a line where it finds no error is an error: an expected
error that went away fails as under mypy. It does not read mypy's error codes (mypy checks them); a
``# pyright: ignore[rule]`` it checks rule by rule. The harness reads rule names and severities, never
pyright's messages (they are translated in some editors' terminals).

pyright's mode is strict, because mypy runs with --strict: basic and standard leave out checks that
mypy --strict makes of the case files' own code (a parameter without a type, a bare ``list``), so a
sloppy case file would pass one checker and not the other. The protocols' verdicts come out the same in
every mode. These strict rules are off, each for a reason that has nothing to do with the verdicts:

- ``reportUnusedFunction``, ``reportUnusedVariable``, ``reportUnusedExpression``, ``reportUnusedImport``:
  a case file is private functions that nobody calls, and expressions, assignments and imports written
  for the error they cause (``dataset[0:2]  # type: ignore[index]``). A ``# type: ignore`` silences every
  diagnostic of its line, so an "unused" report there would keep the comment needed after the error it
  is about went away.
- ``reportUnknownMemberType``, ``...VariableType``, ``...ArgumentType``, ``...ParameterType``,
  ``...LambdaType``: they report torch's missing annotations (``default_collate`` takes a
  ``list[Unknown]``), which mypy --strict takes as ``Any`` without a word; on an expected-error line they
  would hide a verdict the same way.

Where the two checkers legitimately disagree, the line says which one reports the error, and why the
other does not (``test_cases.py`` checks that every such marker gives a reason):

- ``# type: ignore[code]  # mypy only: <why pyright accepts the line>``: mypy must report ``code`` there,
  and pyright must report the ``# type: ignore`` as unnecessary (if it finds an error too, the marker
  is stale and the case fails).
- ``# pyright: ignore[rule]  # pyright only: <why mypy accepts the line>``: pyright must report ``rule``
  there (it checks that itself); mypy does not read the comment, so it must accept the line.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

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

PYRIGHT_CONFIG: dict[str, object] = {
    "typeCheckingMode": "strict",
    "enableTypeIgnoreComments": True,
    "reportUnnecessaryTypeIgnoreComment": "error",
    "reportUnusedFunction": "none",
    "reportUnusedVariable": "none",
    "reportUnusedExpression": "none",
    "reportUnusedImport": "none",
    "reportUnknownMemberType": "none",
    "reportUnknownVariableType": "none",
    "reportUnknownArgumentType": "none",
    "reportUnknownParameterType": "none",
    "reportUnknownLambdaType": "none",
}
# Seconds one pyright run may take (about 3 s for a case file that imports torch).
PYRIGHT_TIMEOUT_S = 300

_REQUIRES = re.compile(r"^#\s*requires:\s*(?P<modules>.+?)\s*$")
_MYPY_ONLY = re.compile(r"^#\s*type:\s*ignore\[[\w\-, ]+\]\s+#\s*mypy only:\s*(?P<why>\S.*)$")
_PYRIGHT_ONLY = re.compile(r"^#\s*pyright:\s*ignore\[[\w, ]+\]\s+#\s*pyright only:\s*(?P<why>\S.*)$")


class CheckerResult(Protocol):
    """What a type checker's run over one file says: passed, and a report for a failure message."""

    @property
    def passed(self) -> bool: ...

    def report(self) -> str: ...


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


@dataclass(frozen=True)
class CheckerMarkers:
    """A case file's per-checker markers: line number -> the reason given; and the malformed ones."""

    mypy_only: dict[int, str] = field(default_factory=dict)
    pyright_only: dict[int, str] = field(default_factory=dict)
    malformed: list[str] = field(default_factory=list)


def checker_markers(path: Path) -> CheckerMarkers:
    """The ``# mypy only:`` and ``# pyright only:`` markers of a file, read from its comment tokens (a
    ``#`` inside a string is not a comment)."""
    markers = CheckerMarkers()
    with path.open("rb") as source:
        tokens = list(tokenize.tokenize(source.readline))
    comments = [(token.start[0], token.string) for token in tokens if token.type == tokenize.COMMENT]
    for line, comment in comments:
        mypy_only = _MYPY_ONLY.match(comment)
        pyright_only = _PYRIGHT_ONLY.match(comment)
        if mypy_only:
            markers.mypy_only[line] = mypy_only["why"]
        elif pyright_only:
            markers.pyright_only[line] = pyright_only["why"]
        elif re.search(r"#\s*(mypy only|pyright only)\s*:|pyright:\s*ignore", comment):
            markers.malformed.append(
                f"{path.name}:{line}: {comment!r} is not '# type: ignore[code]  # mypy only: <why>' "
                "nor '# pyright: ignore[rule]  # pyright only: <why>'"
            )
    return markers


def pyright_installed() -> bool:
    return _importable("pyright")


@dataclass(frozen=True)
class PyrightResult:
    exit_status: int
    stdout: str
    stderr: str
    command: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems

    def report(self) -> str:
        problems = "".join(f"{problem}\n" for problem in self.problems)
        return (
            f"$ {' '.join(self.command)}\n(exit status {self.exit_status})\n--- problems ---\n{problems}"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )


def _pyright_problems(path: Path, exit_status: int, stdout: str) -> list[str]:
    """What is wrong with pyright's JSON output for ``path``, the file's markers considered."""
    try:
        output = json.loads(stdout)
        diagnostics = output["generalDiagnostics"]
        analyzed = output["summary"]["filesAnalyzed"]
    except (ValueError, KeyError, TypeError):
        return ["pyright's output is not the JSON report of a run"]
    problems = [] if analyzed == 1 else [f"pyright analysed {analyzed} files, not the case file alone"]
    mypy_only = checker_markers(path).mypy_only
    seen_unnecessary: set[int] = set()
    errors = 0
    for diagnostic in diagnostics:
        line = diagnostic["range"]["start"]["line"] + 1
        severity = diagnostic["severity"]
        errors += severity == "error"
        if line in mypy_only and diagnostic.get("rule") == "reportUnnecessaryTypeIgnoreComment":
            seen_unnecessary.add(line)
            continue
        rule = f" ({diagnostic['rule']})" if "rule" in diagnostic else ""
        problems.append(f"{path.name}:{line}: {severity}: {diagnostic['message']}{rule}")
    problems += [
        f"{path.name}:{line}: pyright reports an error on this line too: drop its '# mypy only:' marker"
        for line in sorted(set(mypy_only) - seen_unnecessary)
    ]
    if exit_status != (1 if errors else 0):
        problems.append(f"pyright exited with status {exit_status} after {errors} errors")
    return problems


def write_pyright_config(folder: Path) -> Path:
    """Writes ``PYRIGHT_CONFIG`` as the ``pyrightconfig.json`` of ``folder``, for ``run_pyright``."""
    config = folder / "pyrightconfig.json"
    config.write_text(json.dumps(PYRIGHT_CONFIG, indent=2), encoding="utf-8")
    return config


def run_pyright(path: Path, config: Path) -> PyrightResult:
    """pyright over one file, with the ``config`` written by ``write_pyright_config`` and this
    interpreter's packages, in a child process (pyright runs on Node.js)."""
    command: tuple[str, ...] = (sys.executable, "-m", "pyright", "--outputjson", "--project", str(config))
    command += ("--pythonpath", sys.executable, str(path))
    done = subprocess.run(
        command, cwd=config.parent, capture_output=True, text=True, timeout=PYRIGHT_TIMEOUT_S, check=False
    )
    problems = _pyright_problems(path, done.returncode, done.stdout)
    return PyrightResult(done.returncode, done.stdout, done.stderr, command, tuple(problems))


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
