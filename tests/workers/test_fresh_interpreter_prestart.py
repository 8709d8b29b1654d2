"""The fresh interpreter is started when a run that needs it begins (_fresh_interpreter.prestart), so
that its start overlaps the checks before the spawn clause. In a fresh process: the server of an
earlier test would otherwise already run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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


# A dataset whose pickle names torchvision (it holds a torchvision transform), and one that does not;
# in a module of their own, which the fresh interpreter imports.
POINTS_MODULE = textwrap.dedent(
    """
    import numpy as np

    class Points:
        def __init__(self, transform=None):
            self.transform = transform

        def __len__(self):
            return 10

        def __getitem__(self, index):
            if not -10 <= index < 10:
                raise IndexError(index)
            return np.full(3, index % 10, dtype=np.float32)
    """
)
ON_DEMAND_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import torchvision
    import torchcontract.conformance._fresh_interpreter as fi
    from torchcontract.conformance import Target
    from torchcontract.protocols import MapDataset
    from points_mod import Points

    wanted = ("map_dataset.len_is_non_negative_int", "map_dataset.spawn_workers_yield_same_samples")
    select = lambda c: c.check_id in wanted
    plain = Target(Points(), MapDataset, name="plain").run(select=select, time_budget_s=1)
    print([r.status for r in plain.results], sorted(fi._current[0].imported))
    transform = torchvision.transforms.Lambda(np.asarray)  # a torchvision object in the pickle
    held = Target(Points(transform), MapDataset, name="held").run(select=select, time_budget_s=1)
    print([r.status for r in held.results], sorted(fi._current[0].imported))
    """
)


@pytest.mark.slow
def test_torchvision_is_imported_on_demand_and_not_charged_to_the_budget(tmp_path: Path) -> None:
    # The server imports torch at its start, torchvision (a second or more) only before the first
    # request whose pickle names it; that import is torchcontract's cost, outside a 1 s budget.
    pytest.importorskip("torchvision")
    (tmp_path / "points_mod.py").write_text(POINTS_MODULE, encoding="utf-8")
    (tmp_path / "on_demand.py").write_text(ON_DEMAND_SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "on_demand.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    expected = ["['passed', 'passed'] []", "['passed', 'passed'] ['torchvision']"]
    assert done.stdout.splitlines() == expected, done.stdout + done.stderr
