"""Running a loader on every rank of a real ``torch.distributed`` process group (gloo, loopback).

The parent runs one process per rank, each forked from torchcontract's fresh interpreter
(:mod:`torchcontract.conformance._runtime.fresh`: the user's main script is never re-run, and the
global multiprocessing configuration is left alone); each builds its loader with
``factory(rank, world_size)`` (unpickled in the rank),
iterates it for some epochs (calling ``set_epoch`` on its sampler first, as training loops do), and
exchanges its batch counts with ``all_gather`` (of tensors: nothing received is unpickled). Each rank
writes what it saw to a file; the parent waits at most ``timeout_s`` and then ends every process it
started, whatever state it is in.

Nothing of such a group can be reached from another host, nor joined by another local user: the ranks
meet through a ``FileStore`` in a directory of the run's own (``tempfile.mkdtemp``: mode 0700, removed
afterwards), not a ``TCPStore`` (whose server listens on every interface, whatever host the
``tcp://`` address names, and lets anyone who connects read and write its keys); and gloo's own
connections between ranks listen on the loopback interface (``GLOO_SOCKET_IFNAME``, set in each rank:
by default gloo listens on the address the host's name resolves to). Those connections are TCP
sockets, so a local user can still connect to them while the ranks run; gloo authenticates nothing,
so such a user could disturb the run (make it fail), but what arrives over them is only tensors.

Inside a process group that already exists (a job started by ``torchrun``, or one whose environment
torchrun set: :func:`launcher_group`), nothing is spawned: :func:`gather_in_group` runs this rank's
loader in the calling process and the ranks exchange what they saw with ``all_gather_object``, after a
gloo ``monitored_barrier`` with a timeout that names a rank that does not arrive (it died, hung or
raised outside the loader), so every rank that is alive gets the same outcomes.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import pickle
import re
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from torchcontract._files import write_atomically
from torchcontract.conformance._core.arguments import LAUNCHER_VARIABLES, launched
from torchcontract.conformance._runtime.fresh import HelperFailed, Pickled, Unavailable, run_tasks
from torchcontract.conformance._values import (
    fingerprint,
    is_array,
    is_iterable_style,
    leaves,
    sample_count,
)

__all__ = [
    "LAUNCHER_VARIABLES",
    "GroupRun",
    "RankOutcome",
    "batch_rows",
    "epoch_indices",
    "gather_in_group",
    "group_rank_and_size",
    "in_process_group",
    "index_batches",
    "launched",
    "launcher_group",
    "rank_from_pickle",
    "read_epoch",
    "row_digest",
    "run_ranks",
    "set_epoch",
]


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


def index_batches(loader: Any, batches: int) -> list[list[int]] | None:
    """The dataset indices of each batch of an epoch of ``loader`` (one that yielded ``batches``
    batches), from the sampler it exposes: its ``batch_sampler``'s batches, or its ``sampler``'s
    indices one per batch (torch's ``DataLoader``: ``_index_sampler``), read by iterating it again
    (a ``DistributedSampler`` gives the same indices for the same epoch, a shuffling sampler the same
    indices in another order). None when the loader exposes no sampler of indices over a map-style
    dataset, or one that does not describe the epoch (it gives another number of batches)."""
    dataset = getattr(loader, "dataset", None)
    if dataset is None or is_iterable_style(dataset):
        return None  # a stream's sampler is a placeholder (torch: an infinite constant sampler)
    batch_sampler = getattr(loader, "batch_sampler", None)
    source = batch_sampler if batch_sampler is not None else getattr(loader, "sampler", None)
    if source is None:
        return None
    try:
        groups = list(itertools.islice(iter(source), batches + 1))
    except Exception:
        return None
    if len(groups) != batches:
        return None
    found: list[list[int]] = []
    for group in groups:
        indices = group if batch_sampler is not None else [group]
        if not isinstance(indices, (list, tuple)):
            return None
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                return None
        found.append([int(index) for index in indices])
    return found


def epoch_indices(loader: Any, batches: int) -> list[int] | None:
    """Every index of :func:`index_batches`, in order; None where it is None."""
    groups = index_batches(loader, batches)
    return None if groups is None else [index for group in groups for index in group]


def read_epoch(loader: Any, epoch: int) -> dict[str, Any]:
    """One epoch of ``loader`` (``set_epoch(epoch)`` on its sampler first), as a rank reports it:
    its batch count, a digest per sample (by content; how many batches could not be split into
    samples), and the indices its sampler gave (:func:`epoch_indices`), where they describe it."""
    set_epoch(loader, epoch)
    count, unsplit, rows = 0, 0, []
    for batch in loader:
        count += 1
        digests = batch_rows(batch)
        rows.extend(digests if digests is not None else [])
        unsplit += digests is None
    return {"batches": count, "rows": rows, "unsplit": unsplit, "indices": epoch_indices(loader, count)}


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


def loopback_interface() -> str | None:
    """The name of the loopback network interface (``lo`` on Linux, ``lo0`` on macOS), or None."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return None
    return next((name for name in names if re.fullmatch(r"lo\d*", name)), None)


def _rank_main(
    rank: int,
    world_size: int,
    store: str,
    interface: str,
    factory: Callable[[int, int], Any],
    epochs: int,
    timeout_s: float,
    out: str,
) -> None:
    import torch
    import torch.distributed as dist

    report: dict[str, Any] = {"epochs": []}
    try:
        # This process is torchcontract's own rank: a user's setting for multi-host jobs does not apply.
        os.environ["GLOO_SOCKET_IFNAME"] = interface
        dist.init_process_group(
            "gloo",
            init_method=Path(store).as_uri(),
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
        )
    except BaseException:  # torchcontract's own set-up (or a peer that never came: see run_ranks)
        report["setup_error"] = traceback.format_exc(limit=8)
        write_atomically(out, json.dumps(report))
        return
    try:
        loader = factory(rank, world_size)
        for epoch in range(epochs):
            seen = read_epoch(loader, epoch)
            counts = [torch.zeros(1, dtype=torch.int64) for _ in range(world_size)]
            dist.all_gather(counts, torch.tensor([seen["batches"]], dtype=torch.int64))
            gathered = [int(peer.item()) for peer in counts]
            report["epochs"].append({**seen, "gathered": gathered})
        dist.barrier()
    except BaseException:
        report["error"] = traceback.format_exc(limit=8)
    finally:
        # Whole or not at all: a rank stopped while writing has not reported.
        write_atomically(out, json.dumps(report))
        if dist.is_initialized():
            dist.destroy_process_group()


def rank_from_pickle(
    rank: int,
    payload: bytes,
    *,
    world_size: int,
    store: str,
    interface: str,
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
        write_atomically(outputs[rank], json.dumps(report))
        return
    _rank_main(rank, world_size, store, interface, factory, epochs, timeout_s, outputs[rank])


def run_ranks(factory: Pickled, world_size: int, *, epochs: int, timeout_s: float) -> list[RankOutcome]:
    """Run the pickled ``factory``'s loaders on ``world_size`` ranks; every process has ended when
    this returns. Raises :class:`Unavailable` when the ranks cannot be started faithfully."""
    interface = loopback_interface()
    if interface is None:
        raise Unavailable(
            "torchcontract keeps the connections between the ranks it starts on the loopback network "
            "interface, and this host has none (no lo or lo0)"
        )
    # A directory of this run's own (mode 0700): the store and the ranks' reports, private to this user.
    with tempfile.TemporaryDirectory(prefix="torchcontract-ranks-") as folder:
        outputs = [str(Path(folder) / f"rank{rank}.json") for rank in range(world_size)]
        # The collectives' own timeout ends a rank blocked by a dead peer before the parent's does.
        group_timeout = max(1.0, timeout_s * 0.6)
        rank_args = {
            "world_size": world_size,
            "store": str(Path(folder) / "store"),
            "interface": interface,
            "epochs": epochs,
            "timeout_s": group_timeout,
            "outputs": outputs,
        }
        codes = run_tasks(
            factory,
            entry=rank_from_pickle,
            tasks=world_size,
            arguments=rank_args,
            timeout_s=timeout_s,
            described="shards",
            imports=("torch",),  # the ranks run torch.distributed: imported before, outside their deadline
        )
        outcomes, setup_errors = [], []
        for rank, (code, output) in enumerate(zip(codes, outputs, strict=True)):
            outcome = RankOutcome(rank=rank)
            path = Path(output)
            if path.exists():
                data = json.loads(path.read_text(encoding="utf-8"))
                outcome.epochs, outcome.error = data["epochs"], data.get("error")
                if data.get("setup_error"):
                    setup_errors.append(f"rank {rank}: {data['setup_error'].strip().splitlines()[-1]}")
            elif code is None or code < 0:
                outcome.error = f"rank {rank} did not finish within {timeout_s:g} s and was stopped"
            else:
                outcome.error = f"rank {rank} exited with status {code} without reporting"
            outcomes.append(outcome)
        if setup_errors and not any(outcome.error for outcome in outcomes):
            # Every rank that failed did so starting the group, before the loader's code ran (a rank
            # whose factory failed to unpickle, or that died, is the cause when there is one).
            raise HelperFailed(
                f"torchcontract could not start its gloo process group of {world_size} ranks "
                f"({'; '.join(setup_errors[:2])}); this is not the object's failure"
            )
        return outcomes


# -- inside a process group that already exists (torchrun) ----------------------------------------------


#: What ``torchrun`` (torch.distributed.run) sets for each rank; ``env://`` initialisation reads them.
def in_process_group() -> bool:
    """True when ``torch.distributed`` is initialised in this process (never imports torch itself)."""
    import sys

    if "torch" not in sys.modules:
        return False
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_initialized())


def group_rank_and_size() -> tuple[int, int]:
    """This process's rank and the world size of the current (default) process group."""
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


@dataclass
class GroupRun:
    """What :func:`launcher_group` found: the final barrier's error (None when every rank reached it in
    time, or when the group was not initialised there)."""

    final_barrier_error: str | None = None


@contextlib.contextmanager
def launcher_group(timeout_s: float) -> Iterator[GroupRun]:
    """Within the block, the process group of a launched rank: initialised here (gloo, ``env://``,
    collectives bounded by ``timeout_s``) when torchrun's variables are set and no group exists yet.
    At the end, when it initialised the group, a ``monitored_barrier`` bounded by ``timeout_s`` (its
    error kept in ``final_barrier_error``), then the group is destroyed. Outside a launcher, nothing."""
    run = GroupRun()
    if in_process_group() or not launched():
        yield run
        return
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=timeout_s))
    try:
        yield run
        run.final_barrier_error = _barrier(None, timeout_s)
    finally:
        dist.destroy_process_group()


def _barrier(group: Any, timeout_s: float) -> str | None:
    """A gloo ``monitored_barrier`` of every rank in ``group``: None, or the message of its failure."""
    import torch.distributed as dist

    try:
        dist.monitored_barrier(group, timeout=timedelta(seconds=max(timeout_s, 1.0)), wait_all_ranks=True)
    except Exception as error:
        return _missing_ranks(str(error)) or f"{type(error).__name__}: {error}".strip()
    return None


_MISSING = re.compile(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier")
_SILENT_ZERO = "received errors while waiting for send/recv from rank 0"


def _missing_ranks(message: str) -> str | None:
    """The ranks a failed ``monitored_barrier`` names, as "rank 1" or "ranks 1, 2"; None if none."""
    found = _MISSING.search(message)
    if found is not None:
        ranks = [part.strip() for part in found.group(1).split(",") if part.strip()]
        return f"rank{'s' if len(ranks) > 1 else ''} {', '.join(ranks)}"
    if _SILENT_ZERO in message:
        return "rank 0"
    return None


def _cpu_group(timeout_s: float) -> Any:
    """The group to exchange on: the default one when it has a CPU backend (gloo), else a gloo group
    of every rank (monitored_barrier and the exchanged Python objects need one), e.g. under NCCL."""
    import torch
    import torch.distributed as dist

    default = dist.distributed_c10d._get_default_group()
    if torch.device("cpu") in getattr(default, "_device_types", [torch.device("cpu")]):
        return None
    return dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s))


def _local_epochs(
    factory: Callable[[int, int], Any], rank: int, world_size: int, epochs: int
) -> dict[str, Any]:
    """This rank's loader, iterated for ``epochs`` epochs: per epoch its batch count and a digest per
    sample; or the traceback of what the loader raised."""
    report: dict[str, Any] = {"epochs": [], "error": None}
    try:
        loader = factory(rank, world_size)
        for epoch in range(epochs):
            report["epochs"].append(read_epoch(loader, epoch))
    except Exception:
        report["error"] = traceback.format_exc(limit=8)
    return report


def gather_in_group(
    factory: Callable[[int, int], Any], *, epochs: int, timeout_s: float
) -> list[RankOutcome]:
    """Collectively, on every rank of the current process group: build this rank's loader with
    ``factory(rank, world_size)``, iterate it, and exchange what every rank saw. Returns one outcome
    per rank, the same on every rank that is alive; a rank that did not reach the exchange within
    ``timeout_s`` (counted from the call) gets an outcome whose error names it."""
    import torch.distributed as dist

    deadline = time.monotonic() + timeout_s
    rank, world_size = group_rank_and_size()
    group = _cpu_group(timeout_s)
    local = _local_epochs(factory, rank, world_size, epochs)
    waited = max(deadline - time.monotonic(), 1.0)
    missing = _barrier(group, waited)
    if missing is not None:
        return _unreached(rank, world_size, missing, waited)
    gathered: list[Any] = [None] * world_size
    try:
        dist.all_gather_object(gathered, local, group=group)
    except Exception as error:
        return _unreached(rank, world_size, f"{type(error).__name__}: {error}", waited)
    outcomes = []
    for peer, report in enumerate(gathered):
        outcome = RankOutcome(rank=peer, error=report["error"])
        for epoch, seen in enumerate(report["epochs"]):
            row = dict(seen)
            row["gathered"] = [
                other["epochs"][epoch]["batches"] if epoch < len(other["epochs"]) else None
                for other in gathered
            ]
            outcome.epochs.append(row)
        outcomes.append(outcome)
    return outcomes


def _unreached(rank: int, world_size: int, missing: str, waited: float) -> list[RankOutcome]:
    """The outcomes when the exchange failed: the ranks it names failed (or, when it names none, this
    rank's view of it); the others' outcomes are unknown here and left empty."""
    named = [int(n) for n in re.findall(r"\d+", missing)] if missing.startswith("rank") else []
    outcomes = [RankOutcome(rank=peer) for peer in range(world_size)]
    if named:
        for peer in named:
            if 0 <= peer < world_size:
                outcomes[peer].error = (
                    f"rank {peer} did not reach the exchange of batch counts within {waited:.3g} s "
                    f"(rank {rank} waited in a monitored_barrier): it died, hung or was stopped"
                )
    else:
        outcomes[
            rank
        ].error = f"rank {rank} could not exchange its batch counts with the other ranks: {missing}"
    return outcomes
