"""``compile=True`` and ``export=True`` leave nothing behind: torch creates its inductor cache
directory (``torchinductor_<user>`` in the temporary directory) and sets ``TORCHINDUCTOR_CACHE_DIR``
whenever it compiles or exports, even with backends that write nothing there. torchcontract removes
the directory when its check created it and left it empty, and never touches a cache that existed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

SCRIPT = textwrap.dedent(
    """
    import json, os
    import torch
    from torchcontract.conformance import Target
    from torchcontract.protocols import Module

    wanted = ("module.compile_matches_eager", "module.export_matches_eager")
    target = Target(
        torch.nn.Linear(3, 2), Module, example_inputs=(torch.randn(4, 3),), compile=True, export=True
    )
    report = target.run(select=lambda c: c.check_id in wanted)
    print("RESULT " + json.dumps({
        "statuses": [r.status for r in report.results],
        "variable": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
    }))
    """
)


def _run(tmp_path: Path) -> dict[str, object]:
    env = {key: value for key, value in os.environ.items() if key != "TORCHINDUCTOR_CACHE_DIR"}
    env["TMPDIR"] = str(tmp_path / "tmp")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    result: dict[str, object] = json.loads(line[len("RESULT ") :])
    assert result["statuses"] == ["passed", "passed"], result
    return result


@pytest.mark.slow
def test_compiling_and_exporting_leave_no_cache_directory_nor_variable(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    result = _run(tmp_path)
    assert result["variable"] is None
    assert sorted(os.listdir(tmp_path / "tmp")) == []


@pytest.mark.slow
def test_a_cache_directory_that_existed_is_left_as_it_was(tmp_path: Path) -> None:
    import getpass

    cache = tmp_path / "tmp" / f"torchinductor_{getpass.getuser()}"
    cache.mkdir(parents=True)  # the user's own, empty: theirs all the same
    _run(tmp_path)
    assert cache.is_dir()
