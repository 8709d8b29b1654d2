"""The distributed clauses on the launcher users already run: torchrun (torch.distributed.run).

Each test launches torchrun (or the ranks it would start) as a subprocess on 127.0.0.1 with gloo,
bounded by ``timeout=``, in a session of its own, and checks that nothing of it is left afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

from torchcontract.conformance._core.process_group import LAUNCHER_VARIABLES, _missing_ranks

ROOT = Path(__file__).resolve().parents[2]
EQUAL = "loader.ranks_yield_equal_batch_counts"
COVER = "loader.ranks_cover_dataset"
LIMIT_S = 150  # a subprocess that takes longer has hung: the test fails (the runs take 5-25 s)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def _gone(group: int) -> bool:
    """True once no process of the session ``group`` exists (zombies are reaped by init quickly)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env if env is not None else _environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Wait (at most LIMIT_S) for ``process``; assert that nothing of its session is left."""
    try:
        out, err = process.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{process.args!r} did not finish within {LIMIT_S} s")
    assert _gone(process.pid), f"processes of {process.args!r} were left behind"
    return process.returncode, out, err


def _check_distributed(factory: str, *options: str) -> list[str]:
    return ["-m", "torchcontract", "check-distributed", f"tests.workers.{factory}", *options]


def _torchrun(nproc: int, factory: str, *options: str) -> tuple[int, str, str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        *_check_distributed(factory, *options),
    ]
    return _finish(_start(command))


def _statuses(path: Path) -> dict[str, str]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return {r["check_id"]: r["status"] for r in data["targets"][0]["results"]}


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [2, 3])
@pytest.mark.parametrize(
    ("factory", "failed"),
    [
        ("fixtures:torch_loader", None),
        ("fixtures:extra_batch_on_rank_zero", EQUAL),
        ("fixtures:ignores_rank", COVER),
    ],
    ids=["torch-loader", "extra-batch", "ignores-rank"],
)
def test_torchrun_runs_the_clauses_on_its_own_group(
    nproc: int, factory: str, failed: str | None, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    code, out, err = _torchrun(nproc, factory, "--json", str(report), "--time-budget", "30")
    assert out.count(" as Loader on cpu: ") == 1, out  # rank 0 alone prints the report
    statuses = _statuses(report)
    if failed is None:
        assert code == 0, out + err
        assert statuses == {EQUAL: "passed", COVER: "passed"}
        assert "PASSED" in out
    else:
        assert code == 1, out + err
        assert statuses[failed] == "failed"
        assert f"FAIL    {failed}" in out
        assert f"the {nproc} ranks" in out
        assert f"torchrun --nproc-per-node {nproc}" in out  # the reproduce line


@pytest.mark.slow
def test_a_rank_that_raises_fails_every_rank_naming_it() -> None:
    code, out, err = _torchrun(2, "torchrun_fixtures:raises_on_rank_one", "--time-budget", "30")
    assert code == 1, out + err
    assert f"FAIL    {EQUAL}" in out
    assert "rank 1 of 2 failed: ValueError: no shard file for rank 1" in out


@pytest.mark.slow
def test_a_hung_rank_is_named_in_time_and_no_process_is_left() -> None:
    started = time.monotonic()
    code, out, err = _torchrun(2, "fixtures:hangs_on_rank_one", "--time-budget", "5")
    elapsed = time.monotonic() - started
    assert code == 1, out + err
    assert "rank 1 of 2 failed: rank 1 did not reach the exchange of batch counts" in out
    # The budget bounds each of the two checks and the final barrier; interpreter starts come on top.
    assert elapsed < 3 * 5 + 45, elapsed  # not a timing test: torch's default timeout is 30 min


@pytest.mark.slow
@pytest.mark.parametrize(
    ("factory", "code"),
    [("fixtures:torch_loader", 0), ("fixtures:extra_batch_on_rank_zero", 1)],
    ids=["passes", "fails"],
)
def test_every_rank_exits_with_the_same_status(factory: str, code: int) -> None:
    """The ranks as torchrun starts them (its variables set), without its agent, which would end the
    other ranks as soon as one exits: each rank's own exit status is seen."""
    port, world_size = str(_free_port()), 2
    ranks = [
        _start(
            [sys.executable, *_check_distributed(factory, "--time-budget", "30")],
            _environment(
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE=str(world_size),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            ),
        )
        for rank in range(world_size)
    ]
    results = [_finish(rank) for rank in ranks]
    assert [result[0] for result in results] == [code] * world_size, results
    assert " as Loader on cpu: " in results[0][1]
    assert results[1][1] == ""  # only rank 0 prints


USER_SCRIPT = """
import json, sys
from datetime import timedelta
import torch.distributed as dist
from torchcontract.conformance import check_distributed
from tests.workers import fixtures

dist.init_process_group("gloo", timeout=timedelta(seconds=60))
report = check_distributed(getattr(fixtures, sys.argv[1]), time_budget_s=30)
statuses = {r.check_id: r.status for r in report.results}
with open(f"{sys.argv[2]}/rank{dist.get_rank()}.json", "w") as out:
    json.dump({"passed": report.passed, "statuses": statuses}, out)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_check_distributed_in_a_group_the_script_started(tmp_path: Path) -> None:
    """A training script that initialised its own group calls check_distributed on every rank: the
    ranks get the same report, and nothing is spawned."""
    script = tmp_path / "train.py"
    script.write_text(USER_SCRIPT, encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        str(script),
        "extra_batch_on_rank_zero",
        str(tmp_path),
    ]
    code, out, err = _finish(_start(command, _environment(PYTHONPATH=str(ROOT))))
    assert code == 0, out + err
    verdicts = [json.loads((tmp_path / f"rank{rank}.json").read_text(encoding="utf-8")) for rank in (0, 1)]
    assert verdicts[0] == verdicts[1]
    assert verdicts[0] == {"passed": False, "statuses": {EQUAL: "failed", COVER: "skipped"}}


def _node(port: int, node_rank: int, factory: str) -> subprocess.Popen[str]:
    return _start(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--node-rank",
            str(node_rank),
            "--nproc-per-node",
            "1",
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"127.0.0.1:{port}",
            "--local-addr",
            "127.0.0.1",
            *_check_distributed(factory, "--time-budget", "30"),
        ]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("factory", "code", "failed"),
    [("fixtures:torch_loader", 0, None), ("torchrun_fixtures:seed_per_node", 1, COVER)],
    ids=["torch-loader", "seed-per-node"],
)
def test_two_simulated_nodes(factory: str, code: int, failed: str | None) -> None:
    port = _free_port()
    nodes = [_node(port, node_rank, factory) for node_rank in (0, 1)]
    results = [_finish(node) for node in nodes]
    assert [result[0] for result in results] == [code, code], results
    out = "".join(result[1] for result in results)
    assert out.count(" as Loader on cpu: ") == 1, out  # the rendezvous picks which node has rank 0
    assert ("PASSED" in out) if failed is None else (f"FAIL    {failed}" in out), out


@pytest.mark.slow
def test_a_seed_per_node_passes_on_one_node() -> None:
    """The per-node mutant is a bug across nodes only: on one node its ranks agree."""
    from torchcontract.conformance import check_distributed

    from . import torchrun_fixtures

    report = check_distributed(torchrun_fixtures.seed_per_node, 2)
    assert report.passed, report


@pytest.mark.parametrize(
    ("message", "named"),
    [
        ("[Rank 0]: Ranks 1 failed to pass monitoredBarrier in 3000 ms", "rank 1"),
        ("[Rank 0]: Ranks 1, 2 failed to pass monitoredBarrier in 3000 ms", "ranks 1, 2"),
        (
            (
                "Rank 1 successfully reached monitoredBarrier, but received errors while waiting for "
                "send/recv from rank 0. Please check rank 0 logs for faulty rank."
            ),
            "rank 0",
        ),
        ("Connection closed by peer", None),
    ],
)
def test_a_failed_monitored_barrier_names_the_missing_ranks(message: str, named: str | None) -> None:
    assert _missing_ranks(message) == named


def test_check_distributed_outside_torchrun_needs_a_world_size(capsys: pytest.CaptureFixture[str]) -> None:
    from torchcontract.conformance.cli import main

    assert main(["check-distributed", "tests.workers.fixtures:torch_loader"]) == 2
    assert "outside torchrun, give --world-size N" in capsys.readouterr().err


@pytest.mark.slow
def test_check_distributed_outside_torchrun_starts_the_ranks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from torchcontract.conformance.cli import main

    report = tmp_path / "report.json"
    argv = ["check-distributed", "tests.workers.fixtures:extra_batch_on_rank_zero", "--world-size", "2"]
    assert main([*argv, "--json", str(report)]) == 1
    assert f"FAIL    {EQUAL}" in capsys.readouterr().out
    assert _statuses(report)[EQUAL] == "failed"


@pytest.mark.slow
def test_check_distributed_takes_target_options_outside_torchrun(capsys: pytest.CaptureFixture[str]) -> None:
    from torchcontract.conformance.cli import main

    argv = ["check-distributed", "tests.workers.fixtures:eval_loader", "--world-size", "2"]
    assert main(argv) == 1  # unequal batch counts: evaluation sharding, not declared
    assert main([*argv, "-o", "uneven_shards=true"]) == 0
    capsys.readouterr()
    assert main([*argv, "-o", "not_an_option=1"]) == 2
    assert "unknown option(s) not_an_option" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("factory", "options"),
    [("fixtures:padding_loader", ()), ("fixtures:eval_loader", ("-o", "uneven_shards=true"))],
    ids=["padding-collate", "declared-uneven"],
)
def test_torchrun_judges_coverage_by_indices_and_takes_target_options(
    factory: str, options: tuple[str, ...], tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    code, out, err = _torchrun(2, factory, *options, "--json", str(report), "--time-budget", "30")
    assert code == 0, out + err
    assert _statuses(report)[COVER] == "passed", out
