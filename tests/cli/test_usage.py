"""Unusable arguments are refused before anything runs: exit 2 (CLI), a usage error (plugin),
TypeError/ValueError (API), each naming what was wrong."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from torchcontract.conformance import check
from torchcontract.protocols import MapDataset

QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torchcontract.conformance.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("code", ["0", "1", "None"])
def test_a_module_that_exits_at_import_is_unusable(tmp_path: Path, code: str) -> None:
    (tmp_path / "exits.py").write_text(f"import sys\nsys.exit({code})\nds = [1, 2]\n", encoding="utf-8")
    result = _cli(tmp_path, "check", "exits:ds", "--protocol", "MapDataset")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "called sys.exit" in result.stderr
    assert "nothing was checked" in result.stderr


def _json_targets(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "a_file").write_text("", encoding="utf-8")
    (tmp_path / "a_dir").mkdir()
    return {
        "under a regular file": str(tmp_path / "a_file" / "report.json"),
        "a directory": str(tmp_path / "a_dir"),
    }


@pytest.mark.parametrize("case", ["under a regular file", "a directory"])
def test_an_unusable_json_path_is_refused_before_the_run(tmp_path: Path, case: str) -> None:
    (tmp_path / "objs.py").write_text("ds = [1, 2, 3]\n", encoding="utf-8")
    path = _json_targets(tmp_path)[case]
    result = _cli(tmp_path, "check", "objs:ds", "--protocol", "MapDataset", "--json", path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--json" in result.stderr
    assert result.stdout == ""  # refused before anything ran


@pytest.mark.parametrize("device", ["tpu", "gpu0", ""])
def test_an_unknown_device_is_a_usage_error(tmp_path: Path, device: str) -> None:
    (tmp_path / "objs.py").write_text("ds = [1, 2, 3]\n", encoding="utf-8")
    result = _cli(tmp_path, "check", "objs:ds", "--protocol", "MapDataset", "--device", device)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--device" in result.stderr


LOADERS = """
from torch.utils.data import DataLoader

from torchcontract.conformance import Target
from torchcontract.protocols import Loader, MapDataset

loader = DataLoader(range(8), batch_size=2)
first = Target([1, 2, 3], MapDataset, name="first")
too_many_ranks = Target(DataLoader(range(8), batch_size=2), Loader, name="too_many_ranks", world_size=100)
"""


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (("objs:loader", "--protocol", "Loader", "-o", "world_size=100"), "objs:loader"),
        (("objs:first", "objs:too_many_ranks"), "too_many_ranks"),
    ],
    ids=["option", "target"],
)
def test_a_world_size_beyond_the_started_ranks_is_a_usage_error(
    tmp_path: Path, args: tuple[str, ...], name: str
) -> None:
    pytest.importorskip("torch")
    (tmp_path / "objs.py").write_text(LOADERS, encoding="utf-8")
    result = _cli(tmp_path, "check", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    refusal = (
        f"torchcontract check: error: target {name!r}: world_size is 100, more ranks than torchcontract "
        "starts as processes on this machine (at most 64: one process each); run a larger group under "
        "torchrun, where the job's own process group is used"
    )
    assert result.stderr.strip().splitlines() == [refusal]
    assert result.stdout == ""  # refused before any target was checked


@pytest.mark.parametrize(
    ("spec", "way_out"),
    [
        (
            "src/mypkg/targets.py",
            (
                "'src/mypkg/targets.py' is a file path; give the module's dotted name as Python imports it "
                "(such as 'mypkg.targets')"
            ),
        ),
        (
            "./mypkg/targets.py:ds",
            (
                "'./mypkg/targets.py' is a file path; give the module's dotted name as Python imports it "
                "(such as 'mypkg.targets')"
            ),
        ),
        ("mypkg.targets.ds", "to name 'ds' of module 'mypkg.targets', write mypkg.targets:ds"),
        ("notapackage.targets", "is the package 'notapackage' installed in this environment"),
    ],
)
def test_a_module_that_cannot_be_imported_says_the_way_out(tmp_path: Path, spec: str, way_out: str) -> None:
    package = tmp_path / "src" / "mypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "targets.py").write_text("ds = [1, 2, 3]\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "torchcontract.conformance.cli", "check", spec, "--protocol", "MapDataset"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "src"), *sys.path])},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("torchcontract check: error: ")
    assert way_out in line


def test_an_unknown_device_is_a_value_error_at_the_api() -> None:
    with pytest.raises(ValueError, match="'tpu' is not a device torch knows"):
        check([1, 2, 3], MapDataset, device="tpu")


@pytest.mark.parametrize("device", ["meta", "meta:0"])
def test_the_meta_device_is_refused_as_the_device_of_the_device_clauses(device: str) -> None:
    # The device clauses compare values computed on the device with the CPU's: meta holds none.
    with pytest.raises(ValueError, match=f"device '{device}' holds no data"):
        check([1, 2, 3], MapDataset, device=device)


PLUGIN_FILE = """
    from torchcontract.conformance import Target, parametrize_with_checks
    from torchcontract.protocols import MapDataset

    @parametrize_with_checks([Target([1, 2, 3], MapDataset, name="plain")])
    def test_conformance(target, check):
        check(target)
"""


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--conformance-devices=", "needs at least one device"),
        ("--conformance-devices=cpu,tpu", "'tpu' is not a device torch knows"),
        ("--conformance-devices=cpu,meta", "'meta' holds no data"),
        ("--conformance-time-budget=inf", "positive, finite number of seconds"),
        ("--conformance-time-budget=nan", "positive, finite number of seconds"),
        ("--conformance-time-budget=-1", "positive, finite number of seconds"),
        ("--conformance-time-budget=1e300", "positive, finite number of seconds"),
        ("--conformance-report={tmp}/a_file/report.json", "is not a directory"),
        ("--conformance-report={tmp}/a_dir", "is a directory"),
    ],
)
def test_the_plugin_refuses_unusable_options_as_usage_errors(
    pytester: pytest.Pytester, option: str, message: str
) -> None:
    pytester.makepyfile(test_conformance=textwrap.dedent(PLUGIN_FILE))
    _json_targets(pytester.path)
    result = pytester.runpytest(option.format(tmp=pytester.path), *QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
