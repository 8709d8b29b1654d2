"""SPEC.md and the registry of checks describe the same clauses, with the same ids and severities."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from torchcontract.conformance import CHECKS, PROTOCOLS

SPEC = Path(__file__).resolve().parents[2] / "SPEC.md"
CLAUSE = re.compile(r"^#### `(?P<id>[a-z_.]+)` — (?P<severity>required|recommended)\b", re.MULTILINE)
SECTION = re.compile(r"^## (?P<name>\w+)$", re.MULTILINE)


def _clauses() -> dict[str, tuple[str, str, str]]:
    """check id -> (severity, protocol section it stands in, its text)."""
    text = SPEC.read_text(encoding="utf-8")
    sections = [(m.start(), m.group("name")) for m in SECTION.finditer(text)]
    found: dict[str, tuple[str, str, str]] = {}
    matches = list(CLAUSE.finditer(text))
    for index, match in enumerate(matches):
        section = [name for start, name in sections if start < match.start()][-1]
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        assert match.group("id") not in found, f"clause {match.group('id')} appears twice in SPEC.md"
        found[match.group("id")] = (match.group("severity"), section, text[match.start() : end])
    return found


def test_every_check_has_a_clause_and_every_clause_a_check() -> None:
    clauses = _clauses()
    assert sorted(set(CHECKS) - set(clauses)) == [], "checks without a clause in SPEC.md"
    assert sorted(set(clauses) - set(CHECKS)) == [], "clauses in SPEC.md without a check"


def test_the_registry_lists_the_clauses_in_spec_order() -> None:
    # dicts keep insertion order: _clauses() is SPEC.md's order, CHECKS the order of registration.
    assert list(CHECKS) == list(_clauses()), "register the checks in SPEC.md's order"


@pytest.mark.parametrize("check_id", sorted(CHECKS))
def test_each_check_lives_in_its_protocols_module(check_id: str) -> None:
    # The id is the protocol's and the function's name (register_check derives it): the clause
    # protocol.rule is the function rule of checks/<protocol>.py, or of a module of checks/<protocol>/.
    module = CHECKS[check_id].func.__module__
    expected = f"torchcontract.conformance.checks.{check_id.split('.')[0]}"
    assert module == expected or module.startswith(f"{expected}."), f"{check_id} is defined in {module}"


@pytest.mark.parametrize("check_id", sorted(CHECKS))
def test_clause_matches_its_check(check_id: str) -> None:
    severity, section, text = _clauses()[check_id]
    check = CHECKS[check_id]
    assert severity == check.severity
    assert section == check.protocol_name, f"{check_id} stands under '## {section}'"
    assert PROTOCOLS[section] is check.protocol
    for part in ("**Rule.**", "**Why.**"):
        assert part in text, f"clause {check_id} lacks {part}"
    assert "**PyTorch.**" in text or "**Deviation.**" in text, f"clause {check_id} cites no PyTorch source"


README = SPEC.parent / "README.md"
DEVIATION = re.compile(r"^\*\*Deviation\.\*\*(?P<text>.*?)(?=^\*\*|^#|\Z)", re.MULTILINE | re.DOTALL)


def _deviation_paragraphs() -> dict[str, str]:
    """check id -> the text of its clause's Deviation paragraph(s), for the clauses that have one."""
    return {
        check_id: " ".join(match.group("text") for match in DEVIATION.finditer(text))
        for check_id, (_, _, text) in _clauses().items()
        if DEVIATION.search(text)
    }


def test_every_deviation_of_the_table_is_in_spec_and_readme() -> None:
    from torchcontract.conformance._targets.deviations import DEVIATIONS

    paragraphs = _deviation_paragraphs()
    readme_rows = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    for deviation in DEVIATIONS:
        assert deviation.check_id in CHECKS, f"{deviation.key}: {deviation.check_id} is no check"
        paragraph = " ".join(paragraphs.get(deviation.check_id, "").split())
        for target in deviation.targets:
            assert target in paragraph, f"SPEC's Deviation of {deviation.check_id} does not name {target}"
        rows = [row for row in readme_rows if f"`{deviation.check_id}`" in row]
        assert rows, f"README's table of deviations has no row for {deviation.check_id}"
        assert any(deviation.targets[0].split("(")[0] in row for row in rows), (deviation.key, rows)


def test_every_deviation_in_spec_is_in_the_table() -> None:
    from torchcontract.conformance._targets.deviations import DEVIATIONS

    assert sorted(_deviation_paragraphs()) == sorted({d.check_id for d in DEVIATIONS})


def test_the_table_names_each_deviation_once() -> None:
    from torchcontract.conformance._targets.deviations import DEVIATIONS, expected_failures

    keys = [deviation.key for deviation in DEVIATIONS]
    assert len(keys) == len(set(keys))
    assert expected_failures("views") == {DEVIATIONS[0].check_id: DEVIATIONS[0].reason}
    with pytest.raises(KeyError, match="no deviation named nope"):
        expected_failures("nope")
