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
