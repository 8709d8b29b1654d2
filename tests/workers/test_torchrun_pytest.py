"""``torchrun --nproc-per-node N -m pytest``: every rank runs the same session, the distributed clauses
run collectively on one process group joined at the first of them, and only rank 0 writes the report."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

from .test_torchrun import _environment, _finish, _free_port, _start

SUITE = """
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from torchcontract.conformance import Target, parametrize_with_checks
from torchcontract.protocols import Loader

DATA = TensorDataset(torch.arange(22.0).reshape(11, 2))


def sharded(rank, world_size):
    sampler = DistributedSampler(DATA, num_replicas=world_size, rank=rank, shuffle=True, seed=3)
    return DataLoader(DATA, batch_size=2, sampler=sampler)


def extra_batch_on_rank_zero(rank, world_size):
    loader = sharded(rank, world_size)
    return loader if rank else DataLoader(DATA, batch_size=2, sampler=list(loader.sampler) + [0, 1])


@parametrize_with_checks([
    Target(sharded(0, 1), Loader, name="sharded", shards=sharded, world_size=2),
    Target(extra_batch_on_rank_zero(0, 1), Loader, name="extra", shards=extra_batch_on_rank_zero,
           world_size=2),
])
def test_loaders(target, check):
    check(target)
"""


@pytest.mark.slow
def test_pytest_under_torchrun_runs_the_distributed_clauses_together(tmp_path: Path) -> None:
    (tmp_path / "test_ranks.py").write_text(textwrap.dedent(SUITE), encoding="utf-8")
    report = tmp_path / "report.json"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "ranks_",
        f"--rootdir={tmp_path}", str(tmp_path / "test_ranks.py"), f"--conformance-report={report}",
    ]  # fmt: skip
    process = _start(command, env=_environment(PYTHONPATH=str(tmp_path)))
    code, out, err = _finish(process)
    assert code != 0, out + err  # the mutant fails, on every rank
    # Each rank prints its own session; both saw the same verdicts.
    failed = [line for line in out.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 2, out + err
    assert all("::test_loaders[extra-loader.ranks_yield_equal_batch_counts]" in line for line in failed)
    assert out.count("1 failed, 2 passed, 1 skipped") == 2, out + err
    assert out.count(f"JSON report: {report}") == 1, out  # written by rank 0 alone
    assert "sharded-loader.ranks_yield_equal_batch_counts" not in out.replace("PASSED", ""), out
    data = json.loads(report.read_text(encoding="utf-8"))
    results = {
        (target["target"], result["check_id"]): result["status"]
        for target in data["targets"]
        for result in target["results"]
    }
    assert results[("sharded", "loader.ranks_yield_equal_batch_counts")] == "passed"
    assert results[("sharded", "loader.ranks_cover_dataset")] == "passed"
    assert results[("extra", "loader.ranks_yield_equal_batch_counts")] == "failed"
