"""A pytest run that uses no conformance test costs the plugin no more than its import: the run
report (torchcontract.conformance._results, whose dataclasses take milliseconds to build) is neither
imported nor built (issue 20: pytest's start-up within 1.02x without the plugin). Not timed: it
checks what was imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import sys
    import pytest

    code = pytest.main(["-q", "-p", "no:cacheprovider", "test_plain.py"])
    loaded = sorted(m for m in sys.modules if m.startswith("torchcontract.conformance."))
    print(int(code), "torchcontract.conformance.plugin" in loaded, loaded)
    """
)


def test_a_run_without_conformance_tests_builds_no_report(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("0 True "), done.stdout  # the plugin was loaded, the test passed
    assert "torchcontract.conformance._results" not in last, done.stdout
    assert "torchcontract.conformance._core.target" not in last, done.stdout
