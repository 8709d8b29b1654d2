"""A fault of torchcontract's own helper process (the fresh interpreter of the spawn clauses and of
``check_distributed``) is an internal error, never the object's failure: a stopped helper (SIGSTOP)
made a correct dataset fail the required spawn clause, blamed on it, and a helper killed during the
run made ``check_distributed`` pass having verified nothing. A helper killed between two runs is
replaced."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

SCRIPT = """
import json, os, signal
import torchcontract.conformance._runtime.fresh as fresh
from torchcontract.conformance import Target, check_distributed
from torchcontract.protocols import MapDataset
from objects import Squares, loader_of_rank, loader_that_kills_the_helper

fresh.prestart(("torch",))
server = fresh.client._server()  # started and ready
if {before!r}:
    os.kill(server.process.pid, getattr(signal, {before!r}))
if {distributed}:
    factory = loader_that_kills_the_helper if {during} else loader_of_rank
    report = check_distributed(factory, world_size=2, time_budget_s=4)
else:
    wanted = ("map_dataset.len_is_non_negative_int", "map_dataset.spawn_workers_yield_same_samples")
    report = Target(Squares(), MapDataset).run(time_budget_s=2, select=lambda c: c.check_id in wanted)
results = [[r.status, r.message] for r in report.results]
print("RESULT " + json.dumps({{"passed": report.passed, "results": results}}))
"""

OBJECTS = """
import os, signal
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler


class Squares:
    def __len__(self):
        return 8

    def __getitem__(self, index):
        if not -8 <= index < 8:
            raise IndexError(index)
        return (index % 8) ** 2


def loader_of_rank(rank, world_size):
    data = list(range(8))
    return DataLoader(data, batch_size=2, sampler=DistributedSampler(data, world_size, rank, shuffle=False))


def loader_that_kills_the_helper(rank, world_size):
    # Stands in for what kills a helper from outside (the out-of-memory killer, a user's kill): the
    # ranks are children of torchcontract's fresh interpreter.
    if rank == 0 and dist.is_initialized():
        os.kill(os.getppid(), signal.SIGKILL)
    return loader_of_rank(rank, world_size)
"""


def _run(tmp_path: Path, *, before: str | None, distributed: bool, during: bool = False) -> dict[str, Any]:
    (tmp_path / "objects.py").write_text(textwrap.dedent(OBJECTS), encoding="utf-8")
    script = SCRIPT.format(before=before, distributed=distributed, during=during)
    (tmp_path / "script.py").write_text(script, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result


def _is_helper_error(result: dict[str, Any], index: int) -> None:
    status, message = result["results"][index]
    assert status == "error", result
    assert "torchcontract" in message, message
    assert "Nothing is known about the object" in message, message
    assert result["passed"] is False


@pytest.mark.slow
def test_a_stopped_helper_is_an_internal_error_of_the_spawn_clause(tmp_path: Path) -> None:
    result = _run(tmp_path, before="SIGSTOP", distributed=False)
    assert result["results"][0][0] == "passed"
    _is_helper_error(result, 1)


@pytest.mark.slow
def test_a_stopped_helper_is_an_internal_error_of_check_distributed(tmp_path: Path) -> None:
    _is_helper_error(_run(tmp_path, before="SIGSTOP", distributed=True), 0)


@pytest.mark.slow
def test_a_helper_killed_during_check_distributed_never_lets_it_pass(tmp_path: Path) -> None:
    _is_helper_error(_run(tmp_path, before=None, distributed=True, during=True), 0)


@pytest.mark.slow
@pytest.mark.parametrize("distributed", [False, True], ids=["spawn-clause", "check-distributed"])
def test_a_helper_killed_between_runs_is_replaced(tmp_path: Path, distributed: bool) -> None:
    result = _run(tmp_path, before="SIGKILL", distributed=distributed)
    assert result["passed"] is True, result
    assert {status for status, _ in result["results"]} == {"passed"}, result
