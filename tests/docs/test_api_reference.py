"""docs/api.md documents every public name, once, by its public path: an entry per name of the public
modules' ``__all__``, and no entry through a private module (which may move in any release)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

API_PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
PUBLIC_MODULES = ("torchcontract.conformance", "torchcontract.protocols", "torchcontract.reference_impl")
ENTRY = re.compile(r"^::: (?P<path>[\w.]+)$", re.MULTILINE)


def _entries() -> list[str]:
    return ENTRY.findall(API_PAGE.read_text(encoding="utf-8"))


def _public_names() -> list[str]:
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names.extend(f"{module_name}.{name}" for name in module.__all__)
    return names


def test_every_public_name_has_one_entry() -> None:
    entries = _entries()
    missing = [name for name in _public_names() if name not in entries]
    assert missing == [], f"add a '::: <name>' entry to docs/api.md for each of {missing}"
    repeated = sorted({entry for entry in entries if entries.count(entry) > 1})
    assert repeated == []


@pytest.mark.parametrize("path", _entries())
def test_entries_name_public_paths(path: str) -> None:
    assert not any(part.startswith("_") for part in path.split(".")), f"{path} is a private path"
    assert path in _public_names(), f"{path} is not in its module's __all__"
