"""What a verdict means: an internal error of torchcontract is never the object's failure, and a report
passes only when its required clauses were verified (SPEC.md, "Conventions": what "passed" means)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from torchcontract.conformance import CHECKS, check, checks_for
from torchcontract.conformance.checks import map_dataset as map_dataset_checks
from torchcontract.conformance.cli import main
from torchcontract.protocols import MapDataset

from ..conformance.reports import check_then_release, statuses
from ..user_modules import SQUARES

DETERMINISM = "map_dataset.getitem_is_deterministic"
# After the recommended clauses of a map-style dataset come only its worker clauses: required, and
# run only with torch (without it they are skipped as not applicable, and nothing is unverified).
needs_worker_clauses = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="the required clauses after the hang need torch"
)


class Squares:
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        if not -8 <= index < 8:
            raise IndexError(index)
        return (index % 8) ** 2


def _broken_compare(left: Any, right: Any, *args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a deliberately broken comparison")


@pytest.fixture
def broken_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchcontract's own comparison raises, as a bug of ours would."""
    monkeypatch.setattr(map_dataset_checks, "compare", _broken_compare)


@pytest.mark.usefixtures("broken_comparison")
def test_a_broken_comparison_is_an_internal_error_not_the_objects_failure() -> None:
    report = check(Squares(), MapDataset)
    (result,) = [r for r in report.results if r.check_id == DETERMINISM]
    assert result.status == "error"
    assert "internal error of torchcontract" in result.message
    assert "not a verdict on the object" in result.message
    assert "RuntimeError: a deliberately broken comparison" in result.message
    assert "Traceback" in result.message  # to report it with
    # Not blamed on the call that worked before it.
    assert "ds[0] raised" not in result.message
    assert not [r for r in report.results if r.status == "failed"], report
    assert report.errors == (result,)
    assert not report.passed
    data = json.loads(report.to_json())
    assert data["counts"]["error"] == 1
    assert not data["passed"]


def test_an_exception_of_the_object_through_ctx_call_stays_its_failure() -> None:
    class RaisesAtThree(Squares):
        def __getitem__(self, index: int) -> int:
            if index == 3:
                raise ValueError("broken sample")
            return super().__getitem__(index)

    report = check(RaisesAtThree(), MapDataset)
    failed = {r.check_id: r for r in report.results if r.status == "failed"}
    assert "map_dataset.getitem_in_range_succeeds" in failed
    assert "ds[3] raised ValueError: broken sample" in failed["map_dataset.getitem_in_range_succeeds"].message
    assert not report.errors


class NumpyIndexHangs(Squares):
    """Hangs on a NumPy integer index: the recommended accepts_numpy_integer_index hangs."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __getitem__(self, index: int) -> Any:
        if isinstance(index, np.integer):
            self.release.wait()
        return super().__getitem__(index)

    def __reduce__(self) -> Any:
        return (NumpyIndexHangs, ())


@needs_worker_clauses
def test_a_hang_in_a_recommended_clause_fails_the_report() -> None:
    report = check_then_release(NumpyIndexHangs(), MapDataset, time_budget_s=0.5)
    assert statuses(report)["map_dataset.accepts_numpy_integer_index"] == "failed"
    unverified = [r for r in report.results if r.status == "unverified"]
    assert any(r.severity == "required" for r in unverified), report
    for result in unverified:
        assert "hung in map_dataset.accepts_numpy_integer_index" in result.message
    assert not report.passed, "required clauses were not verified"


CLI_MODULE = (
    """
    import threading
    import numpy as np
    from torchcontract.conformance.checks import map_dataset
"""
    + SQUARES
    + """
    class NumpyIndexHangs(Squares):
        def __getitem__(self, index):
            if isinstance(index, np.integer):
                threading.Event().wait()
            return super().__getitem__(index)

    def _broken(*args, **kwargs):
        raise RuntimeError("a deliberately broken comparison")

    def broken_comparison():
        map_dataset.compare = _broken
        return Squares()

    squares = Squares()
    copy_hangs = NumpyIndexHangs()
"""
)


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "cli_objects.py").write_text(textwrap.dedent(CLI_MODULE), encoding="utf-8")
    command = [sys.executable, "-m", "torchcontract.conformance.cli", *args]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
@needs_worker_clauses
def test_cli_exit_statuses_follow_pytests(tmp_path: Path) -> None:
    passed = _cli(tmp_path, "check", "cli_objects:squares", "--protocol", "MapDataset")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    hung = _cli(
        tmp_path, "check", "cli_objects:copy_hangs", "--protocol", "MapDataset", "--time-budget", "0.5"
    )
    assert hung.returncode == 1, hung.stdout + hung.stderr
    assert "UNVERIF" in hung.stdout
    internal = _cli(tmp_path, "check", "cli_objects:broken_comparison", "--protocol", "MapDataset")
    assert internal.returncode == 3, internal.stdout + internal.stderr
    assert "internal error of torchcontract" in internal.stdout


@pytest.mark.parametrize("budget", ["0", "-1", "inf", "nan", "1e300", "soon"])
def test_cli_refuses_unusable_time_budgets(budget: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "x:y", "--time-budget", budget])
    assert exit_info.value.code == 2
    assert "--time-budget" in capsys.readouterr().err


PLUGIN_FILE = (
    """
    import pytest
    from torchcontract.conformance import Target, parametrize_with_checks
    from torchcontract.conformance.checks import map_dataset
    from torchcontract.protocols import MapDataset
"""
    + SQUARES
    + """
    def _broken(*args, **kwargs):
        raise RuntimeError("a deliberately broken comparison")

    @pytest.fixture(autouse=True)
    def broken_comparison(monkeypatch):
        monkeypatch.setattr(map_dataset, "compare", _broken)

    @parametrize_with_checks(
        [
            Target(Squares(), MapDataset, name="squares"),
            Target(
                Squares(),
                MapDataset,
                name="declared",
                expected_failures={"map_dataset.getitem_is_deterministic": "an old bug"},
            ),
        ]
    )
    def test_conformance(target, check):
        check(target)
"""
)

QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")


def test_the_plugin_reports_an_internal_error_as_a_pytest_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_conformance=textwrap.dedent(PLUGIN_FILE))
    result = pytester.runpytest("-k", "getitem_is_deterministic", *QUIET)
    outcomes = result.parseoutcomes()
    # An error, never a failure, and a declared expected failure does not turn it into an xfail.
    assert outcomes.get("errors") == 2, result.stdout.str()
    assert "failed" not in outcomes
    assert "xfailed" not in outcomes
    result.stdout.fnmatch_lines(["*internal error of torchcontract*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@needs_worker_clauses
def test_the_plugin_fails_the_unverified_required_checks_after_a_hang(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_conformance=textwrap.dedent(CLI_MODULE)
        + textwrap.dedent(
            """
            from torchcontract.conformance import Target, parametrize_with_checks
            from torchcontract.protocols import MapDataset

            @parametrize_with_checks([Target(NumpyIndexHangs(), MapDataset, name="hangs")])
            def test_conformance(target, check):
                check(target)
            """
        )
    )
    started = time.monotonic()
    result = pytester.runpytest("--conformance-time-budget=0.5", *QUIET)
    assert time.monotonic() - started < 30
    outcomes = result.parseoutcomes()
    # The required clauses after the hang fail as not verified (worker_errors_keep_their_type is
    # recommended; the one skip is getitems_matches_getitem, before the hang: the dataset has no
    # __getitems__).
    ids = [spec.check_id for spec in checks_for(MapDataset)]
    after = ids[ids.index("map_dataset.accepts_numpy_integer_index") + 1 :]
    required_after = [c for c in after if CHECKS[c].severity == "required"]
    assert outcomes.get("failed") == len(required_after), result.stdout.str()
    assert outcomes.get("skipped") == 1
    result.stdout.fnmatch_lines(
        ["*could not be verified:", "*hung in map_dataset.accepts_numpy_integer_index*"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_correct_dataset_passes_a_small_budget_in_a_fresh_process(tmp_path: Path) -> None:
    # torch's first import (seconds, in the clauses that need it) and the fresh interpreter's start
    # are torchcontract's costs: a correct object passes however small its budget.
    script = textwrap.dedent(
        """
        import numpy as np
        from torchcontract.conformance import check
        from torchcontract.protocols import MapDataset

        class Points:
            def __len__(self):
                return 10

            def __getitem__(self, index):
                if not -10 <= index < 10:
                    raise IndexError(index)
                return np.full(3, index % 10, dtype=np.float32), index % 2

        if __name__ == "__main__":
            report = check(Points(), MapDataset, time_budget_s=1)
            print(report)
            raise SystemExit(0 if report.passed else 1)
        """
    )
    (tmp_path / "small_budget.py").write_text(script, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "small_budget.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "internal error" not in done.stdout
