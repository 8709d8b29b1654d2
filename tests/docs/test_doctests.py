"""The ``>>>`` examples run: those of the public names' docstrings, and the ``pycon`` blocks of README.md
and docs/ (a page's blocks run in order, as one session)."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

from torchcontract import protocols

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBLIC_MODULES = (
    "torchcontract",
    "torchcontract.conformance",
    "torchcontract.protocols",
    "torchcontract.reference_impl",
)
PYCON_BLOCK = re.compile(r"^```pycon\n(?P<session>.*?)^```$", re.MULTILINE | re.DOTALL)
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _docstring_tests() -> list[doctest.DocTest]:
    """The examples of each public name, run with its public module's names in scope (as after
    ``from torchcontract.conformance import *``)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests: dict[str, doctest.DocTest] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names = list(getattr(module, "__all__", ()))
        scope = {name: getattr(module, name) for name in names}
        for path, obj in [(module_name, module), *((f"{module_name}.{name}", scope[name]) for name in names)]:
            if not (callable(obj) or hasattr(obj, "__file__")):
                continue  # a constant: its docstring is its type's
            defined_in = importlib.import_module(getattr(obj, "__module__", None) or module_name)
            for test in finder.find(obj, path, module=defined_in, globs=scope):
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


# The entry points a newcomer reads first: each shows itself at work.
ENTRY_POINTS = [
    "torchcontract.conformance.check",
    "torchcontract.conformance.Target",
    "torchcontract.conformance.parametrize_with_checks",
    "torchcontract.conformance.RunReport",
    *(f"torchcontract.protocols.{name}" for name in protocols.__all__),
]


def test_the_entry_points_have_examples() -> None:
    with_examples = {test.name for test in _docstring_tests()}
    assert [name for name in ENTRY_POINTS if name not in with_examples] == []


@pytest.mark.parametrize("test", _docstring_tests(), ids=lambda test: test.name)
def test_docstring_examples(test: doctest.DocTest) -> None:
    _run(test)


@pytest.mark.parametrize("page", _pages(), ids=lambda page: page.relative_to(REPO_ROOT).as_posix())
def test_page_examples(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    session = "\n".join(match.group("session") for match in PYCON_BLOCK.finditer(text))
    name = page.relative_to(REPO_ROOT).as_posix()
    _run(doctest.DocTestParser().get_doctest(session, {"__name__": "__doc_page__"}, name, str(page), 0))
