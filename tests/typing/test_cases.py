"""mypy and pyright over every case file in ``cases/``: one test per file and checker, and proof that
the harness can fail.

pyright is not in the ``test`` extra: where it is not installed, its tests skip, saying so. The
``typecheck`` nox session installs the version it pins and sets ``TORCHCONTRACT_REQUIRE_PYRIGHT=1``,
which makes a missing pyright a failure there.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ._harness import (
    CASES_DIR,
    REPO_ROOT,
    CheckerResult,
    case_files,
    checker_markers,
    missing_modules,
    pyright_installed,
    required_modules,
    run_mypy,
    run_pyright,
    write_pyright_config,
)

CHECKERS = ("mypy", "pyright")
REQUIRE_PYRIGHT = os.environ.get("TORCHCONTRACT_REQUIRE_PYRIGHT") == "1"

# Imports a case file may use without declaring them in a `# requires:` comment: the package's own
# dependencies (pyproject.toml) and the standard library.
ALWAYS_AVAILABLE = {"torchcontract", "numpy", "typing_extensions", *sys.stdlib_module_names}


@dataclass(frozen=True)
class TypeChecker:
    name: str
    run: Callable[[Path], CheckerResult]


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache per test session (per xdist worker): no state leaks between runs."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.fixture(scope="session")
def pyright_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pyright_config(tmp_path_factory.mktemp("pyright"))


@pytest.fixture(params=CHECKERS)
def checker(request: pytest.FixtureRequest) -> TypeChecker:
    """One type checker, run as the harness configures it; skipped where it is not installed."""
    if request.param == "mypy":
        pytest.importorskip("mypy.api", reason="mypy is not installed (pip install 'torchcontract[test]')")
        cache: Path = request.getfixturevalue("mypy_cache")
        return TypeChecker("mypy", lambda path: run_mypy(path, cache))
    if not pyright_installed():
        reason = "pyright is not installed (pip install 'pyright[nodejs]'; noxfile.py pins the version)"
        if REQUIRE_PYRIGHT:
            pytest.fail(f"TORCHCONTRACT_REQUIRE_PYRIGHT=1, but {reason}", pytrace=False)
        pytest.skip(reason)
    config: Path = request.getfixturevalue("pyright_config")
    return TypeChecker("pyright", lambda path: run_pyright(path, config))


@pytest.mark.parametrize("case", case_files(), ids=lambda p: p.name)
def test_case_file(case: Path, checker: TypeChecker) -> None:
    missing = missing_modules(case)
    if missing:
        pytest.skip(f"{case.name} needs {', '.join(missing)}, which is not installed")
    result = checker.run(case)
    if not result.passed:
        pytest.fail(
            f"{checker.name} does not accept {case.name} exactly as written:\n{result.report()}",
            pytrace=False,
        )


def _readme_example() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Typing your code with the protocols", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_example(tmp_path: Path, checker: TypeChecker) -> None:
    """The README's example type-checks as it stands, under the same rules as the case files."""
    if missing_modules(CASES_DIR / "user_code.py"):
        pytest.skip("the README's example needs torch, which is not installed")
    case = tmp_path / "readme_example.py"
    case.write_text(_readme_example(), encoding="utf-8")
    result = checker.run(case)
    if not result.passed:
        pytest.fail(f"{checker.name} does not accept the README's example:\n{result.report()}", pytrace=False)


def test_there_are_case_files() -> None:
    names = {p.name for p in case_files()}
    assert {"_classes.py", "module.py", "map_dataset.py", "torch_classes.py"} <= names, names


def _imported_modules(case: Path) -> set[str]:
    tree = ast.parse(case.read_text(encoding="utf-8"))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("case", case_files(), ids=lambda p: p.name)
def test_optional_imports_are_declared(case: Path) -> None:
    """An optional import must be named in ``# requires:``, or the file fails instead of skipping."""
    allowed = ALWAYS_AVAILABLE | set(required_modules(case))
    undeclared = sorted(
        module
        for module in _imported_modules(case)
        if not any(".".join(module.split(".")[:n]) in allowed for n in range(1, module.count(".") + 2))
    )
    assert not undeclared, f"{case.name} imports {undeclared}: name them in a '# requires:' line at the top"


def _verdict_lines(case: Path) -> list[tuple[str, int, str]]:
    """(name, line number, source line) of the module-level ``ok_``/``bad_`` annotated assignments."""
    source = case.read_text(encoding="utf-8")
    lines = source.splitlines()
    out = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
            if name.startswith(("ok_", "bad_")):
                out.append((name, node.lineno, lines[node.lineno - 1]))
                assert node.end_lineno == node.lineno, f"{case.name}:{node.lineno}: keep {name} on one line"
    return out


@pytest.mark.parametrize("case", case_files(), ids=lambda p: p.name)
def test_verdict_names_match_ignores(case: Path) -> None:
    """``bad_`` assignments carry ``# type: ignore[...]``, ``ok_`` ones do not: names tell the verdict
    (of both checkers, but where a ``# mypy only:`` or ``# pyright only:`` marker says otherwise)."""
    for name, lineno, line in _verdict_lines(case):
        rejected = "# type: ignore[" in line
        assert rejected == name.startswith("bad_"), f"{case.name}:{lineno}: {line.strip()}"


@pytest.mark.parametrize("case", case_files(), ids=lambda p: p.name)
def test_checker_markers_say_why(case: Path) -> None:
    """Every line where one checker's verdict differs says which checker reports the error, and why the
    other does not."""
    markers = checker_markers(case)
    assert not markers.malformed, "\n".join(markers.malformed)


def test_checker_markers_are_read_from_comments(tmp_path: Path) -> None:
    case = tmp_path / "markers.py"
    case.write_text(
        textwrap.dedent(
            """
            a = 1  # type: ignore[misc]  # mypy only: a reason
            b = 2  # pyright: ignore[reportAssignmentType]  # pyright only: another reason
            c = "# pyright: ignore"  # a string is not a comment
            d = 3  # pyright: ignore[reportAssignmentType]
            e = 4  # type: ignore[misc]  # mypy only:
            f = 5  # pyright: ignore  # pyright only: no rule named
            """
        ),
        encoding="utf-8",
    )
    markers = checker_markers(case)
    assert markers.mypy_only == {2: "a reason"}
    assert markers.pyright_only == {3: "another reason"}
    assert [problem.split(":")[1] for problem in markers.malformed] == ["5", "6", "7"]


# --- the harness can fail ---------------------------------------------------------------------------------

# Accepted by both checkers, with one line that only mypy rejects and one that only pyright rejects.
GOOD = """
    from typing import Any

    from torchcontract.protocols import MapDataset

    class NoLen:
        def __getitem__(self, index: int) -> int:
            return index

    class Proxy:
        def __getattr__(self, name: str) -> Any:
            return None

    ok: MapDataset[int] = [1, 2]
    bad: MapDataset[int] = NoLen()  # type: ignore[assignment]
    proxy: MapDataset[int] = Proxy()  # pyright: ignore[reportAssignmentType]  # pyright only: why

    def loop(dataset: MapDataset[int]) -> None:
        for _ in dataset:  # type: ignore[attr-defined]  # mypy only: why
            pass
"""

ASSERT_STR = "from typing_extensions import assert_type\nassert_type(ok[0], str)"

# (what to replace in GOOD, with what, a text that the checker's report must contain)
BROKEN = {
    "mypy": {
        "missing ignore (an unexpected error)": (
            "bad: MapDataset[int] = NoLen()  # type: ignore[assignment]",
            "bad: MapDataset[int] = NoLen()",
            'error: Incompatible types in assignment (expression has type "NoLen"',
        ),
        "unused ignore (an expected error disappeared)": (
            "ok: MapDataset[int] = [1, 2]",
            "ok: MapDataset[int] = [1, 2]  # type: ignore[assignment]",
            'error: Unused "type: ignore" comment',
        ),
        "ignore with the wrong code": (
            "# type: ignore[assignment]",
            "# type: ignore[arg-type]",
            "[assignment]",
        ),
        "ignore without a code": ("# type: ignore[assignment]", "# type: ignore", "[ignore-without-code]"),
        "failed assert_type": (
            "ok: MapDataset[int] = [1, 2]",
            f"ok: MapDataset[int] = [1, 2]\n{ASSERT_STR}",
            "[assert-type]",
        ),
        "stray reveal_type (a note, exit status 0)": (
            "ok: MapDataset[int] = [1, 2]",
            "ok: MapDataset[int] = [1, 2]\nreveal_type(ok)",
            "note: Revealed type is",
        ),
        "a mypy only line without its ignore": (
            "# type: ignore[attr-defined]  # mypy only: why",
            "",
            '"MapDataset[int]" has no attribute "__iter__"',
        ),
    },
    "pyright": {
        "missing ignore (an unexpected error)": (
            "bad: MapDataset[int] = NoLen()  # type: ignore[assignment]",
            "bad: MapDataset[int] = NoLen()",
            "(reportAssignmentType)",
        ),
        "unused ignore (an expected error disappeared)": (
            "ok: MapDataset[int] = [1, 2]",
            "ok: MapDataset[int] = [1, 2]  # type: ignore[assignment]",
            "(reportUnnecessaryTypeIgnoreComment)",
        ),
        "failed assert_type": (
            "ok: MapDataset[int] = [1, 2]",
            f"ok: MapDataset[int] = [1, 2]\n{ASSERT_STR}",
            "(reportAssertTypeFailure)",
        ),
        "stray reveal_type (an information, exit status 0)": (
            "ok: MapDataset[int] = [1, 2]",
            "ok: MapDataset[int] = [1, 2]\nreveal_type(ok)",
            ": information: ",
        ),
        "a strict-mode error (a parameter without a type)": (
            "def loop(dataset: MapDataset[int]) -> None:",
            "def loop(dataset: MapDataset[int], extra) -> None:",
            "(reportMissingParameterType)",
        ),
        "a pyright only line without its ignore": (
            "  # pyright: ignore[reportAssignmentType]  # pyright only: why",
            "",
            "(reportAssignmentType)",
        ),
        "a pyright ignore of the wrong rule": (
            "# pyright: ignore[reportAssignmentType]",
            "# pyright: ignore[reportArgumentType]",
            "(reportAssignmentType)",
        ),
        "a mypy only line that pyright rejects too": (
            "bad: MapDataset[int] = NoLen()  # type: ignore[assignment]",
            "bad: MapDataset[int] = NoLen()  # type: ignore[assignment]  # mypy only: why",
            "pyright reports an error on this line too: drop its '# mypy only:' marker",
        ),
        "a mypy only line without its marker": (
            "# type: ignore[attr-defined]  # mypy only: why",
            "# type: ignore[attr-defined]",
            "(reportUnnecessaryTypeIgnoreComment)",
        ),
    },
}


def test_harness_passes_a_good_case(tmp_path: Path, checker: TypeChecker) -> None:
    case = tmp_path / "good_case.py"
    case.write_text(textwrap.dedent(GOOD), encoding="utf-8")
    result = checker.run(case)
    assert result.passed, result.report()


@pytest.mark.parametrize(
    ("checker", "breakage"),
    [(name, breakage) for name in CHECKERS for breakage in BROKEN[name]],
    indirect=["checker"],
)
def test_harness_fails_a_broken_case(checker: TypeChecker, breakage: str, tmp_path: Path) -> None:
    old, new, expected = BROKEN[checker.name][breakage]
    source = textwrap.dedent(GOOD)
    assert source.count(old) == 1, old
    case = tmp_path / "broken_case.py"
    case.write_text(source.replace(old, new), encoding="utf-8")
    result = checker.run(case)
    assert not result.passed, result.report()
    assert expected in result.report(), result.report()


@pytest.mark.parametrize("required", [False, True])
def test_a_missing_pyright_skips_unless_required(tmp_path: Path, required: bool) -> None:
    # A plugin that makes `pyright` unimportable (find_spec says None for a None entry of sys.modules).
    (tmp_path / "hide_pyright.py").write_text("import sys\nsys.modules['pyright'] = None\n", encoding="utf-8")
    paths = [str(tmp_path), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    env.pop("TORCHCONTRACT_REQUIRE_PYRIGHT", None)
    if required:
        env["TORCHCONTRACT_REQUIRE_PYRIGHT"] = "1"
    test = f"{Path(__file__).resolve()}::test_harness_passes_a_good_case[pyright]"
    command = [sys.executable, "-m", "pytest", "-n", "0", "-rsf", "-p", "no:cacheprovider"]
    command += ["-p", "hide_pyright", test]
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if required:
        assert done.returncode == 1, done.stdout + done.stderr
        assert "TORCHCONTRACT_REQUIRE_PYRIGHT=1, but pyright is not installed" in done.stdout, done.stdout
    else:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SKIPPED" in done.stdout, done.stdout
        assert "pyright is not installed" in done.stdout, done.stdout


def test_requires_marker_skips(tmp_path: Path) -> None:
    case = tmp_path / "needs_missing.py"
    case.write_text("# requires: torch, torchcontract_nonexistent.sub\n# requires: numpy\nimport os\n")
    assert required_modules(case) == ["torch", "torchcontract_nonexistent.sub", "numpy"]
    assert "torchcontract_nonexistent.sub" in missing_modules(case)
    assert "numpy" not in missing_modules(case)


def test_cases_dir_is_a_package() -> None:
    # mypy names the case modules tests.typing.cases.<file> through the __init__.py files, so that
    # `from ._classes import ...` resolves (and no case file is taken for a top-level module).
    for folder in (CASES_DIR, CASES_DIR.parent, CASES_DIR.parent.parent):
        assert (folder / "__init__.py").is_file(), folder
