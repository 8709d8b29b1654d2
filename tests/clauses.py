"""The ``clause`` mark: which clauses of SPEC.md a test concerns, so that ``pytest -k <check id>``
selects it.

A test whose subject is one clause (or a few) says so once, on the test, its class or its module::

    @pytest.mark.clause("loader.batches_cover_dataset")
    def test_time_major_padding_is_counted_by_the_batch_samplers_indices() -> None: ...

    pytestmark = pytest.mark.clause(CLAUSE)  # every test of the module

Each id becomes one of the test's keywords, so ``pytest -k loader.batches_cover_dataset`` selects
its mutants (tests/conformance/test_mutants.py marks each with the clause it violates), its
regression and code tests, and its SPEC.md sync tests (whose ids name it). An id that is no check's
stops the run at collection, naming the test and the id: a renamed clause cannot leave its tests
behind, selected by nothing.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest

# Set to a file path, the collection writes there, as JSON, which tests `-k <check id>` selects for
# every check id (tests/conformance/test_clause_selection.py reads it).
SELECTION_FILE_ENV = "TORCHCONTRACT_CLAUSE_SELECTION"


def clause_ids(item: pytest.Item) -> list[str]:
    """The check ids that ``@pytest.mark.clause(...)`` names on a test, its class or its module."""
    return [check_id for mark in item.iter_markers("clause") for check_id in mark.args]


@pytest.hookimpl(tryfirst=True)  # before the -k selection (the mark plugin's), which reads the keywords
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each id of a test's ``clause`` marks is one of its keywords; an id that is no check's is an
    error naming the test, the id and the closest check id."""
    from torchcontract.conformance import CHECKS

    unknown: list[str] = []
    for item in items:
        for check_id in clause_ids(item):
            if check_id in CHECKS:
                item.extra_keyword_matches.add(check_id)
                continue
            close = difflib.get_close_matches(str(check_id), list(CHECKS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            unknown.append(f"  {item.nodeid}: clause({check_id!r}) is no check id{hint}")
    if unknown:
        raise pytest.UsageError("\n".join(["@pytest.mark.clause names an unknown check:", *unknown]))


def selected_by_k(items: list[pytest.Item], expression: str) -> list[str]:
    """The node ids of the items that ``pytest -k <expression>`` keeps (pytest's own matcher)."""
    from _pytest.mark import KeywordMatcher
    from _pytest.mark.expression import Expression

    compiled = Expression.compile(expression)
    return [item.nodeid for item in items if compiled.evaluate(KeywordMatcher.from_item(item))]


def pytest_collection_finish(session: pytest.Session) -> None:
    target = os.environ.get(SELECTION_FILE_ENV)
    if not target:
        return
    from torchcontract.conformance import CHECKS

    selection = {check_id: selected_by_k(session.items, check_id) for check_id in CHECKS}
    path = Path(target)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(selection, indent=1))
    partial.replace(path)  # atomically: a reader never sees half a file
