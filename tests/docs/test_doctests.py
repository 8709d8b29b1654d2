"""The ``>>>`` examples run: those of the public names' docstrings, and the ``pycon`` blocks of README.md
and docs/ (a page's blocks run in order, as one session)."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBLIC_MODULES = (
    "torchcontract",
    "torchcontract.conformance",
    "torchcontract.protocols",
    "torchcontract.reference_impl",
)
PYCON_BLOCK = re.compile(r"^```pycon\n(?P<session>.*?)^```$", re.MULTILINE | re.DOTALL)
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _public_objects() -> dict[str, object]:
    found: dict[str, object] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        found[module_name] = module
        for name in getattr(module, "__all__", ()):
            found[f"{module_name}.{name}"] = getattr(module, name)
    return found


def _docstring_tests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests: dict[str, doctest.DocTest] = {}
    for path, obj in _public_objects().items():
        if not (callable(obj) or isinstance(obj, type) or hasattr(obj, "__file__")):
            continue  # a constant: its docstring is its type's
        module = importlib.import_module(getattr(obj, "__module__", None) or path)
        for test in finder.find(obj, path, module=module, globs={}):
            if test.examples:
                tests.setdefault(test.name, test)
    return sorted(tests.values(), key=lambda test: test.name)


def _pages() -> list[Path]:
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
    return [page for page in pages if PYCON_BLOCK.search(page.read_text(encoding="utf-8"))]


def _run(test: doctest.DocTest) -> None:
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    output: list[str] = []
    runner.run(test, out=output.append)
    if runner.failures:
        pytest.fail("".join(output), pytrace=False)


@pytest.mark.parametrize("test", _docstring_tests(), ids=lambda test: test.name)
def test_docstring_examples(test: doctest.DocTest) -> None:
    _run(test)


@pytest.mark.parametrize("page", _pages(), ids=lambda page: page.relative_to(REPO_ROOT).as_posix())
def test_page_examples(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    session = "\n".join(match.group("session") for match in PYCON_BLOCK.finditer(text))
    name = page.relative_to(REPO_ROOT).as_posix()
    _run(doctest.DocTestParser().get_doctest(session, {"__name__": "__doc_page__"}, name, str(page), 0))
