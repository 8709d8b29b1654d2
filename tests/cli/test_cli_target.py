"""The CLI never changes the user's Target: `--isolate` checks a changed copy."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from torchcontract.conformance.cli import main

MODULE = """
    from torchcontract.conformance import Target
    from torchcontract.protocols import MapDataset


    class Squares:
        def __len__(self):
            return 8

        def __getitem__(self, index):
            if not -8 <= index < 8:
                raise IndexError(index)
            return (index % 8) ** 2


    target = Target(Squares(), MapDataset, name="squares")
"""


def test_isolate_leaves_the_users_target_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "usertargets.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "usertargets", raising=False)
    assert main(["check", "usertargets:target", "--isolate"]) == 0
    assert "squares as MapDataset on cpu: PASSED" in capsys.readouterr().out
    user_target = sys.modules["usertargets"].target
    assert user_target.options.isolate is False
    # Nothing ran on the user's object's own target: the checks ran on the copy.
    assert not user_target.session().results
