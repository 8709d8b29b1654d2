"""The fresh interpreter is started when a run that needs it begins (_fresh_interpreter.prestart), so
that its start overlaps the checks before the spawn clause. In a fresh process: the server of an
earlier test would otherwise already run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import torchcontract.conformance._fresh_interpreter as fi
    from torchcontract.conformance import Target
    from torchcontract.protocols import MapDataset

    running_at_first_request = []
    fetch = fi.fetch

    def recording_fetch(*args, **kwargs):
        running_at_first_request.append(bool(fi._current))
        return fetch(*args, **kwargs)

    fi.fetch = recording_fetch
    wanted = ("map_dataset.len_is_non_negative_int", "map_dataset.spawn_workers_yield_same_samples")
    report = Target([1.0, 2.0, 3.0], MapDataset).run(select=lambda c: c.check_id in wanted)
    print([r.status for r in report.results], running_at_first_request)
    """
)


def run(script: str) -> str:
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_the_server_is_already_starting_when_the_spawn_clause_asks_for_it() -> None:
    pytest.importorskip("torch")
    out = run(SCRIPT)
    assert out.strip() == "['passed', 'passed'] [True]", out


@pytest.mark.slow
def test_an_isolated_target_does_not_prestart() -> None:
    pytest.importorskip("torch")
    script = SCRIPT.replace("MapDataset)", "MapDataset, isolate=True)") + "print(bool(fi._current))\n"
    out = run(script)
    assert out.splitlines()[-1] == "False", out
