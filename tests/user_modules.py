"""The small modules of a user's project that the CLI, report and verdict tests write into a
temporary directory and import by name, as a user's ``torchcontract check mymodule:target`` would.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

# A correct map-style dataset, and the same dataset broken (it never raises IndexError), as source
# text indented by four spaces (compose sources with +, then :func:`user_module` dedents them).
SQUARES = """
    class Squares:
        def __len__(self):
            return 8

        def __getitem__(self, index):
            if not -8 <= index < 8:
                raise IndexError(index)
            return (index % 8) ** 2


    class Wrapping(Squares):
        def __getitem__(self, index):
            return (index % 8) ** 2
"""


def user_module(*parts: str) -> str:
    """The source of a module made of ``parts`` (each indented by four spaces), dedented."""
    return textwrap.dedent("".join(parts))


def write_user_module(root: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> Path:
    """Write ``source`` as ``root/<name>.py`` and make ``root`` the current, importable directory (a
    module of that name imported by an earlier test is forgotten)."""
    (root / f"{name}.py").write_text(source, encoding="utf-8")
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return root
