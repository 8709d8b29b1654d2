"""The torchcontract command: exit statuses, the JSON report, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from torchcontract.conformance import checks_for
from torchcontract.conformance.cli import main
from torchcontract.protocols import MapDataset

from ..user_modules import SQUARES, user_module, write_user_module

MODULE = user_module(
    """
    import numpy as np
    from torchcontract.conformance import Target
    from torchcontract.protocols import CollateFn
""",
    SQUARES,
    """
    squares = Squares()
    wrapping = Wrapping()


    def collate_target():
        return Target(np.stack, CollateFn, name="np.stack", example_inputs=[np.zeros(2), np.ones(2)])


    def needs_arguments(size):
        return Squares()
""",
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's project directory holding the module `mydata`, as the current directory."""
    return write_user_module(tmp_path, monkeypatch, "mydata", MODULE)


@pytest.mark.usefixtures("project")
def test_a_conforming_object_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "mydata:squares", "--protocol", "MapDataset"]) == 0
    assert "mydata:squares as MapDataset on cpu: PASSED" in capsys.readouterr().out


@pytest.mark.usefixtures("project")
def test_a_required_failure_exits_one_and_names_the_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "mydata:wrapping", "--protocol", "map_dataset"]) == 1
    out = capsys.readouterr().out
    assert "FAIL    map_dataset.index_past_end_raises_index_error" in out
    assert "ds[8] returned 0 but len(ds) == 8; expected IndexError" in out


def test_the_json_report_follows_the_schema(project: Path) -> None:
    path = project / "out" / "report.json"
    assert main(["check", "mydata:Wrapping", "--protocol", "MapDataset", "--json", str(path)]) == 1
    data = json.loads(path.read_text())
    assert data["schema_version"] == 3
    assert data["passed"] is False
    assert set(data["environment"]) >= {"python", "numpy", "torch", "torchcontract"}
    (report,) = data["targets"]
    assert report["target"] == "mydata:Wrapping"  # a class is a factory: called without arguments
    assert [r["check_id"] for r in report["results"]] == [c.check_id for c in checks_for(MapDataset)]
    assert {r["status"] for r in report["results"]} <= {"passed", "failed", "skipped"}


@pytest.mark.usefixtures("project")
def test_a_factory_may_return_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "mydata:collate_target"]) == 0
    assert "np.stack as CollateFn on cpu: PASSED" in capsys.readouterr().out


@pytest.mark.usefixtures("project")
def test_options_are_parsed(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["check", "mydata:squares", "--protocol", "MapDataset", "-o", "thorough=true", "-o", "seed=3"]
    assert main(args) == 0
    assert main([*args[:4], "-o", "thorough=maybe"]) == 2
    assert "is not true, false, none or an integer" in capsys.readouterr().err


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "nosuchmodule:x", "--protocol", "MapDataset"], "cannot import 'nosuchmodule'"),
        (["check", "mydata:missing", "--protocol", "MapDataset"], "has no attribute 'missing'"),
        (["check", "mydata", "--protocol", "MapDataset"], "module 'mydata' defines no Target"),
        (["check", "mydata:", "--protocol", "MapDataset"], "expected MODULE or MODULE:ATTR"),
        (["check", "mydata:squares"], "--protocol is needed"),
        (["check", "mydata:squares", "--protocol", "Dataset"], "unknown protocol 'Dataset'"),
        (["check", "mydata:squares", "--protocol", "Module"], "needs example_inputs"),
        (["check", "mydata:squares", "--protocol", "MapDataset", "-o", "fast=true"], "unknown option"),
        (["check", "mydata:collate_target", "--protocol", "CollateFn"], "protocols and options come from"),
        (["list", "--protocol", "Dataset"], "unknown protocol"),
    ],
)
def test_unusable_arguments_exit_two_with_a_clear_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_list_shows_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for check in checks_for(MapDataset):
        assert check.check_id in out


def test_the_console_script_is_installed(project: Path) -> None:
    script = Path(sys.executable).with_name("torchcontract")
    assert script.exists(), "pip install should put the torchcontract script beside python"
    result = subprocess.run(
        [str(script), "check", "mydata:wrapping", "--protocol", "MapDataset"],
        capture_output=True, text=True, cwd=project, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "FAILED" in result.stdout
