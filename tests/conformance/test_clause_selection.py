"""``pytest -k <check id>`` selects a clause's tests: its mutants, the tests marked
``@pytest.mark.clause(<check id>)`` (tests/clauses.py) and its SPEC.md sync tests.

What is honest to require: every clause has a mutant, and ``-k`` selects it; the clauses whose only
other tests are the correct corpora (which run every clause at once, and carry no mark) are listed
here, so that the list stays true both ways: a clause that gains a marked test leaves it, and a
clause whose last marked test goes away fails until it is listed again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from torchcontract.conformance import CHECKS

from ..clauses import SELECTION_FILE_ENV
from ..conftest import HAS_TORCH, NO_TORCH_REASON

ROOT = Path(__file__).resolve().parents[2]

# Tested by their mutants and the correct corpora only: no test of their own yet.
ONLY_MUTANTS_AND_CORPORA = {
    "module.parameters_match_named_parameters",
    "module.load_state_dict_strict_rejects_bad_keys",
    "module.device_round_trip",
    "map_dataset.samples_share_structure",
    "map_dataset.getitems_matches_getitem",
    "map_dataset.negative_index_mirrors_python",
    "iterable_dataset.iter_returns_iterator",
    "iterable_dataset.len_matches_item_count",
    "iterable_dataset.exhaustion_is_sticky",
    "iterable_dataset.items_share_structure",
    "iterable_dataset.items_cross_process_boundary",
    "sampler.iteration_ends",
    "sampler.yields_python_ints",
    "loader.iter_returns_iterator",
    "loader.epoch_ends",
    "stateful.state_dict_is_mapping",
    "stateful.resume_yields_rest_of_epoch",
    "stateful.resume_with_workers",
    "stateful.state_is_snapshot",
    "stateful.state_is_portable",
    "stateful.foreign_state_is_not_silent",
}

CONFTEST = "from tests.clauses import pytest_collection_modifyitems  # noqa: F401\n"
INI = """
    [pytest]
    addopts = --strict-markers -p no:cacheprovider
    markers =
        clause(*check_ids): the test concerns these clauses
"""


def test_k_with_a_check_id_selects_the_tests_marked_with_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(textwrap.dedent(INI))
    pytester.makepyfile(
        test_marked="""
            import pytest

            @pytest.mark.clause("map_dataset.index_past_end_raises_index_error")
            def test_one_clause(): pass

            @pytest.mark.clause("map_dataset.len_is_non_negative_int", "loader.epoch_ends")
            def test_two_clauses(): pass

            def test_unmarked(): pass
        """,
        test_module_marked="""
            import pytest

            pytestmark = pytest.mark.clause("map_dataset.index_past_end_raises_index_error")

            def test_in_a_marked_module(): pass
        """,
    )
    result = pytester.runpytest("--collect-only", "-q", "-k", "map_dataset.index_past_end_raises_index_error")
    assert result.ret == pytest.ExitCode.OK
    selected = [line for line in result.outlines if "::" in line]
    assert sorted(selected) == [
        "test_marked.py::test_one_clause",
        "test_module_marked.py::test_in_a_marked_module",
    ]
    result = pytester.runpytest("--collect-only", "-q", "-k", "loader.epoch_ends")
    assert [line for line in result.outlines if "::" in line] == ["test_marked.py::test_two_clauses"]


def test_an_unknown_check_id_stops_the_collection_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(textwrap.dedent(INI))
    pytester.makepyfile(
        test_renamed="""
            import pytest

            @pytest.mark.clause("map_dataset.index_past_end_raises_key_error")
            def test_orphaned(): pass
        """
    )
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    orphaned = "clause('map_dataset.index_past_end_raises_key_error') is no check id"
    result.stderr.fnmatch_lines(
        [
            "*@pytest.mark.clause names an unknown check:",
            f"*test_renamed.py::test_orphaned: {orphaned}; did you mean *",
        ]
    )
    assert "did you mean 'map_dataset.index_past_end_raises_index_error'?" in result.stderr.str()


@pytest.fixture(scope="module")
def selection(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """check id -> the tests that ``pytest -k <check id>`` selects in the whole suite, as a collection
    in a fresh process sees them."""
    path = tmp_path_factory.mktemp("selection") / "selection.json"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=ROOT,
        env={**os.environ, SELECTION_FILE_ENV: str(path)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    selected: dict[str, list[str]] = json.loads(path.read_text())
    return selected


def _is_mutant(nodeid: str) -> bool:
    return nodeid.startswith("tests/conformance/test_mutants.py::test_mutant_fails_its_check_and_no_other[")


def _is_spec_sync(nodeid: str) -> bool:
    return nodeid.startswith("tests/engine/test_spec_sync.py::")


def _is_corpus_wide(nodeid: str) -> bool:
    """A guard run over every correct object and mutant of a clause's protocol (what the clause declares
    it touches), not a test of what the clause finds."""
    return nodeid.startswith("tests/engine/test_declared_touches.py::")


@pytest.mark.slow
def test_k_selects_every_clauses_mutants(selection: dict[str, list[str]]) -> None:
    runnable = [c for c in CHECKS.values() if HAS_TORCH or "torch" not in c.needs]
    without = [c.check_id for c in runnable if not any(map(_is_mutant, selection[c.check_id]))]
    assert without == [], f"-k <check id> selects no mutant of {without}"


@pytest.mark.slow
def test_the_clauses_without_tests_of_their_own_are_the_listed_ones(selection: dict[str, list[str]]) -> None:
    if not HAS_TORCH:
        pytest.skip(f"the torch tests are not collected: {NO_TORCH_REASON}")
    assert sorted(ONLY_MUTANTS_AND_CORPORA - set(CHECKS)) == [], "listed, but no check id"
    own = {
        check_id: [
            n for n in nodeids if not _is_mutant(n) and not _is_spec_sync(n) and not _is_corpus_wide(n)
        ]
        for check_id, nodeids in selection.items()
    }
    gained = {check_id: own[check_id] for check_id in sorted(ONLY_MUTANTS_AND_CORPORA) if own[check_id]}
    assert not gained, f"these clauses now have tests of their own: take them off the list: {gained}"
    lost = sorted(c for c in CHECKS if not own[c] and c not in ONLY_MUTANTS_AND_CORPORA)
    assert not lost, f"-k <check id> selects no test of these clauses but their mutants: {lost}"
