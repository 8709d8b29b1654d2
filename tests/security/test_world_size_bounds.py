"""``world_size`` is bounded by what can run, up front, with an error naming the bound and why:
``check_distributed(world_size=10**6)`` started ranks until its deadline (176 of them outlived the
call in one run), and ``check(sampler, Sampler, world_size=10**9)`` was an internal error after 32 s."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from torchcontract.conformance import Target, check
from torchcontract.conformance._core.arguments import MAX_STARTED_RANKS, MAX_WORLD_SIZE
from torchcontract.protocols import Loader, Sampler


def _shards(rank: int, world_size: int) -> range:
    return range(rank, 64, world_size)


@pytest.mark.parametrize("world_size", [MAX_WORLD_SIZE + 1, 10**9])
def test_a_sampler_world_size_beyond_the_bound_is_a_value_error_at_once(world_size: int) -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match=f"at most {MAX_WORLD_SIZE}: a sampler's rank samplers are built"):
        check(range(64), Sampler, world_size=world_size, shards=_shards, data_source_len=64)
    assert time.monotonic() - started < 1


def test_a_sampler_world_size_at_the_bound_is_accepted() -> None:
    Target(range(64), Sampler, world_size=MAX_WORLD_SIZE, shards=_shards, data_source_len=64)


def test_check_distributed_refuses_more_ranks_than_it_starts() -> None:
    pytest.importorskip("torch", reason="check_distributed needs torch")
    from torchcontract.conformance import check_distributed

    for world_size in (MAX_STARTED_RANKS + 1, 10**6):
        with pytest.raises(ValueError, match=f"at most {MAX_STARTED_RANKS}: one process each"):
            check_distributed(_shards, world_size=world_size)


def test_a_loader_target_that_would_start_too_many_ranks_is_a_value_error() -> None:
    target = Target([[0, 1]], Loader, world_size=MAX_STARTED_RANKS + 1, shards=_shards)
    with pytest.raises(ValueError, match="more ranks than torchcontract starts as processes"):
        target.run()


def test_the_cli_refuses_too_many_ranks_as_a_usage_error(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="check-distributed needs torch")
    (tmp_path / "ranks.py").write_text(
        "def shards(rank, world_size):\n    return [[rank]]\n", encoding="utf-8"
    )
    command = [
        *(sys.executable, "-m", "torchcontract.conformance.cli", "check-distributed", "ranks:shards"),
        *("--world-size", "1000000"),
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"at most {MAX_STARTED_RANKS}" in done.stderr
    assert "Traceback" not in done.stderr
