"""Running a loader on every rank of a real ``torch.distributed`` process group (gloo, loopback).

The parent runs one process per rank, each forked from torchcontract's fresh interpreter
(:mod:`torchcontract.conformance._fresh_interpreter`: the user's main script is never re-run, and the
global multiprocessing configuration is left alone); each builds its loader with
``factory(rank, world_size)`` (unpickled in the rank),
iterates it for some epochs (calling ``set_epoch`` on its sampler first, as training loops do), and
exchanges its batch counts with ``all_gather_object``. Each rank writes what it saw to a file; the
parent waits at most ``timeout_s`` and then ends every process it started, whatever state it is in.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import socket
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from torchcontract.conformance._fresh_interpreter import Pickled, run_tasks
from torchcontract.conformance._values import fingerprint, is_array, leaves, sample_count

__all__ = ["RankOutcome", "batch_rows", "rank_from_pickle", "row_digest", "run_ranks", "set_epoch"]


def row_digest(value: Any) -> str:
    """A short, stable digest of one sample (a row of a batch), for counting across processes."""
    return hashlib.sha1(repr(fingerprint(value)).encode(), usedforsecurity=False).hexdigest()[:16]


def batch_rows(batch: Any) -> list[str] | None:
    """A digest per sample of a batch, or None if the batch's sample count is ambiguous.

    A batch with array or tensor leaves is sliced along their shared leading dimension; a list batch
    without any is a list of samples.
    """
    count = sample_count(batch)
    if count is None:
        return None
    columns = [leaf for _, leaf in leaves(batch) if is_array(leaf) and len(leaf.shape) > 0]
    if not columns:
        return [row_digest(item) for item in batch]
    return [row_digest(tuple(fingerprint(column[row]) for column in columns)) for row in range(count)]


def set_epoch(loader: Any, epoch: int) -> bool:
    """Call ``set_epoch(epoch)`` on the loader's sampler (or its batch sampler's), as training loops
    do for DistributedSampler; True if one was found."""
    candidates = [
        getattr(loader, "sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
        loader,
    ]
    for candidate in candidates:
        if candidate is not None and callable(getattr(candidate, "set_epoch", None)):
            candidate.set_epoch(epoch)
            return True
    return False


@dataclass
class RankOutcome:
    """What one rank reported: per epoch, its batch count, the counts it gathered from every rank,
    and a digest per sample; or the error that stopped it, or that it never reported."""

    rank: int
    epochs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    exitcode: int | None = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _rank_main(
    rank: int,
    world_size: int,
    port: int,
    factory: Callable[[int, int], Any],
    epochs: int,
    timeout_s: float,
    out: str,
) -> None:
    import torch.distributed as dist

    report: dict[str, Any] = {"epochs": []}
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
        )
        loader = factory(rank, world_size)
        for epoch in range(epochs):
            set_epoch(loader, epoch)
            count, rows = 0, []
            for batch in loader:
                count += 1
                digests = batch_rows(batch)
                rows.extend(digests if digests is not None else [])
            gathered: list[Any] = [None] * world_size
            dist.all_gather_object(gathered, count)
            report["epochs"].append({"batches": count, "gathered": gathered, "rows": rows})
        dist.barrier()
    except BaseException:
        report["error"] = traceback.format_exc(limit=8)
    finally:
        Path(out).write_text(json.dumps(report), encoding="utf-8")
        if dist.is_initialized():
            dist.destroy_process_group()


def rank_from_pickle(
    rank: int,
    payload: bytes,
    *,
    world_size: int,
    port: int,
    epochs: int,
    timeout_s: float,
    outputs: list[str],
) -> None:
    """The body of rank ``rank`` (in a child of the fresh interpreter): unpickle the factory, then
    run it; an unpicklable factory is reported in the rank's file like any other error."""
    try:
        factory = pickle.loads(payload)
    except BaseException:
        report = {"epochs": [], "error": traceback.format_exc(limit=8)}
        Path(outputs[rank]).write_text(json.dumps(report), encoding="utf-8")
        return
    _rank_main(rank, world_size, port, factory, epochs, timeout_s, outputs[rank])


def run_ranks(factory: Pickled, world_size: int, *, epochs: int, timeout_s: float) -> list[RankOutcome]:
    """Run the pickled ``factory``'s loaders on ``world_size`` ranks; every process has ended when
    this returns. Raises :class:`Unavailable` when the ranks cannot be started faithfully."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="torchcontract-ranks-") as folder:
        outputs = [str(Path(folder) / f"rank{rank}.json") for rank in range(world_size)]
        # The collectives' own timeout ends a rank blocked by a dead peer before the parent's does.
        group_timeout = max(1.0, timeout_s * 0.6)
        rank_args = {
            "world_size": world_size,
            "port": port,
            "epochs": epochs,
            "timeout_s": group_timeout,
            "outputs": outputs,
        }
        codes = run_tasks(factory, tasks=world_size, rank_args=rank_args, timeout_s=timeout_s)
        outcomes = []
        for rank, (code, output) in enumerate(zip(codes, outputs, strict=True)):
            outcome = RankOutcome(rank=rank, exitcode=code)
            path = Path(output)
            if path.exists():
                data = json.loads(path.read_text(encoding="utf-8"))
                outcome.epochs, outcome.error = data["epochs"], data.get("error")
            elif code is None or code < 0:
                outcome.error = f"rank {rank} did not finish within {timeout_s:g} s and was stopped"
            else:
                outcome.error = f"rank {rank} exited with status {code} without reporting"
            outcomes.append(outcome)
        return outcomes
