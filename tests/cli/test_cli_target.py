"""The CLI never changes the user's Target: `--isolate` checks a changed copy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from torchcontract.conformance.cli import main

from ..user_modules import SQUARES, user_module, write_user_module

MODULE = user_module(
    """
    from torchcontract.conformance import Target
    from torchcontract.protocols import MapDataset
""",
    SQUARES,
    """
    target = Target(Squares(), MapDataset, name="squares")
""",
)


def test_isolate_leaves_the_users_target_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_user_module(tmp_path, monkeypatch, "usertargets", MODULE)
    assert main(["check", "usertargets:target", "--isolate"]) == 0
    assert "squares as MapDataset on cpu: PASSED" in capsys.readouterr().out
    user_target = sys.modules["usertargets"].target
    assert user_target.options.isolate is False
    # Nothing ran on the user's object's own target: the checks ran on the copy.
    assert not user_target.session().results
