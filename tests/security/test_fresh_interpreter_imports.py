"""torchcontract's fresh interpreter (the spawn clauses, ``check_distributed``) imports exactly what a
spawn worker of the user's process would: its import path is the parent's, set before anything is
imported (never the current directory that ``python -c`` puts first), and it runs with the parent's
interpreter flags (``-O``, ``-X utf8``, ...), as multiprocessing's spawn passes them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

SPAWN = "map_dataset.spawn_workers_yield_same_samples"

MODULE = """
class Samples:
    def __len__(self):
        return 4

    def __getitem__(self, index):
        if not -4 <= index < 4:
            raise IndexError(index)
        # Under python -O, asserts and __debug__ are off: a spawn worker of such a process gets -O too.
        return (index % 4, __debug__)
"""

SCRIPT = """
import json
from mydata import Samples
from torchcontract.conformance import Target
from torchcontract.protocols import MapDataset

report = Target(Samples(), MapDataset).run(select=lambda c: c.check_id == {spawn!r})
print("RESULT " + json.dumps([(r.status, r.message) for r in report.results]))
"""

# Imported instead of the standard library's json by anything that runs in the current directory
# with it first on the import path: it leaves a mark and then stops the import.
PLANTED = """
import os
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "PLANTED-RAN"), "w").close()
raise ImportError("the planted json.py ran")
"""


def _run(tmp_path: Path, *flags: str, plant: bool = False) -> tuple[list[list[str]], Path]:
    project, elsewhere = tmp_path / "project", tmp_path / "cwd"
    project.mkdir()
    elsewhere.mkdir()
    (project / "mydata.py").write_text(textwrap.dedent(MODULE), encoding="utf-8")
    (project / "script.py").write_text(SCRIPT.format(spawn=SPAWN), encoding="utf-8")
    if plant:
        (elsewhere / "json.py").write_text(PLANTED, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, *flags, str(project / "script.py")],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    results: list[list[str]] = json.loads(line[len("RESULT ") :])
    return results, elsewhere


@pytest.mark.slow
def test_a_module_in_the_current_directory_is_not_imported_by_the_fresh_interpreter(tmp_path: Path) -> None:
    # `python project/script.py` run from another directory never imports that directory's json.py
    # (its sys.path starts with project/); neither may the interpreter torchcontract starts for it.
    results, elsewhere = _run(tmp_path, plant=True)
    assert not (elsewhere / "PLANTED-RAN").exists()
    assert results == [["passed", ""]], results


@pytest.mark.slow
def test_the_fresh_interpreter_runs_with_the_parent_s_interpreter_flags(tmp_path: Path) -> None:
    # Under python -O a spawn worker runs with -O too: the samples (which show __debug__) are the same.
    results, _ = _run(tmp_path, "-O")
    assert results == [["passed", ""]], results
