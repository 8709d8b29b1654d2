"""mypy over every case file in ``cases/``: one test per file, and proof that the harness can fail."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest

from ._harness import CASES_DIR, REPO_ROOT, case_files, missing_modules, required_modules, run_mypy

pytest.importorskip("mypy.api", reason="mypy is not installed (pip install 'torchcontract[test]')")

# Imports a case file may use without declaring them in a `# requires:` comment: the package's own
# dependencies (pyproject.toml) and the standard library.
ALWAYS_AVAILABLE = {"torchcontract", "numpy", "typing_extensions", *sys.stdlib_module_names}


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache per test session (per xdist worker): no state leaks between runs."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.mark.parametrize("case", case_files(), ids=lambda p: p.name)
def test_case_file(case: Path, mypy_cache: Path) -> None:
    missing = missing_modules(case)
    if missing:
        pytest.skip(f"{case.name} needs {', '.join(missing)}, which is not installed")
    result = run_mypy(case, mypy_cache)
    if not result.passed:
        pytest.fail(f"mypy does not accept {case.name} exactly as written:\n{result.report()}", pytrace=False)


def _readme_example() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Typing your code with the protocols", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_example(tmp_path: Path, mypy_cache: Path) -> None:
    """The README's example type-checks as it stands, under the same rules as the case files."""
    if missing_modules(CASES_DIR / "user_code.py"):
        pytest.skip("the README's example needs torch, which is not installed")
    case = tmp_path / "readme_example.py"
    case.write_text(_readme_example(), encoding="utf-8")
    result = run_mypy(case, mypy_cache)
    if not result.passed:
        pytest.fail(f"the README's example does not type-check:\n{result.report()}", pytrace=False)


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
    """``bad_`` assignments carry ``# type: ignore[...]``, ``ok_`` ones do not: names tell the verdict."""
    for name, lineno, line in _verdict_lines(case):
        rejected = "# type: ignore[" in line
        assert rejected == name.startswith("bad_"), f"{case.name}:{lineno}: {line.strip()}"


# --- the harness can fail ---------------------------------------------------------------------------------

GOOD = """
    from torchcontract.protocols import MapDataset

    class NoLen:
        def __getitem__(self, index: int) -> int:
            return index

    ok: MapDataset[int] = [1, 2]
    bad: MapDataset[int] = NoLen()  # type: ignore[assignment]
"""

BROKEN = {
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
        "ok: MapDataset[int] = [1, 2]\nfrom typing_extensions import assert_type\nassert_type(ok[0], str)",
        "[assert-type]",
    ),
    "stray reveal_type (a note, exit status 0)": (
        "ok: MapDataset[int] = [1, 2]",
        "ok: MapDataset[int] = [1, 2]\nreveal_type(ok)",
        "note: Revealed type is",
    ),
}


def test_harness_passes_a_good_case(tmp_path: Path, mypy_cache: Path) -> None:
    case = tmp_path / "good_case.py"
    case.write_text(textwrap.dedent(GOOD), encoding="utf-8")
    result = run_mypy(case, mypy_cache)
    assert result.passed, result.report()


@pytest.mark.parametrize("breakage", list(BROKEN))
def test_harness_fails_a_broken_case(breakage: str, tmp_path: Path, mypy_cache: Path) -> None:
    old, new, expected = BROKEN[breakage]
    source = textwrap.dedent(GOOD)
    assert old in source
    case = tmp_path / "broken_case.py"
    case.write_text(source.replace(old, new), encoding="utf-8")
    result = run_mypy(case, mypy_cache)
    assert not result.passed, result.report()
    assert expected in result.stdout, result.report()


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
