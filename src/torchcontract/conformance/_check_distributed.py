"""``check_distributed``: the loader clauses across ranks of a real process group, as one call."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from torchcontract.conformance._core.arguments import (
    DEFAULT_DISTRIBUTED_TIME_BUDGET_S,
    started_ranks_problem,
    world_size_problem,
)
from torchcontract.conformance._core.options import Options
from torchcontract.conformance._core.process_group import (
    group_rank_and_size,
    in_process_group,
    launcher_group,
)
from torchcontract.conformance._core.target import Target
from torchcontract.conformance._results import Report
from torchcontract.protocols import Loader

__all__ = ["check_distributed"]


def check_distributed(
    factory: Callable[[int, int], Any],
    world_size: int | None = None,
    *,
    name: str | None = None,
    time_budget_s: float = DEFAULT_DISTRIBUTED_TIME_BUDGET_S,
    expected_failures: Mapping[str, str] | None = None,
    **options: object,
) -> Report:
    """Run the loader that ``factory(rank, world_size)`` builds on every rank of a real process group,
    for two epochs, and check that the ranks yield the same number of batches and together cover the
    dataset (``factory(0, 1)``'s) once per epoch, up to padding.

    Outside a process group, this starts one: ``world_size`` ranks of gloo on 127.0.0.1, each a new
    process (at most 64: ``ValueError`` beyond), so ``factory`` must be picklable (a module-level
    function). Every process has ended when
    this returns, also when a rank hangs (after ``time_budget_s``) or dies.

    Inside one (a job started by ``torchrun``: already initialised, or torchrun's ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set, and then initialised here with gloo and
    destroyed afterwards), call it on every rank: the clauses run collectively on the group, each rank
    iterating its own ``factory(rank, world_size)``, and every rank gets the same report. Nothing is
    spawned; ``world_size`` defaults to the group's size. A rank that does not reach the exchange
    within 80% of ``time_budget_s`` fails the check, named.

    ``expected_failures`` and the target options are those of :func:`~torchcontract.conformance.check`
    (declarations such as ``max_padding=k``, ``uneven_shards=True``, ``transforms_samples=True``,
    ``deterministic=False``); ``shards`` and ``world_size`` are this function's own arguments.

    A run that verified nothing does not pass: when every clause was skipped (the ranks could not be
    started faithfully), they are reported unverified.

    For example, in a module of your own (each rank's process imports the factory by name)::

        from torch.utils.data import DataLoader, DistributedSampler

        def loader_of_rank(rank, world_size):
            sampler = DistributedSampler(DATASET, num_replicas=world_size, rank=rank, seed=0)
            return DataLoader(DATASET, batch_size=32, sampler=sampler)

        report = check_distributed(loader_of_rank, world_size=2)
        assert report.passed, report
    """
    for own in ("shards", "world_size"):
        if own in options:
            raise TypeError(f"check_distributed() takes {own} as its own argument, not as an option")
    checked_options = Options.from_kwargs(options)  # unusable options fail before any rank starts
    with launcher_group(time_budget_s):
        if in_process_group():
            group_size = group_rank_and_size()[1]
            if world_size is None:
                world_size = group_size
            elif world_size != group_size:
                raise ValueError(
                    f"world_size={world_size}, but the current process group has {group_size} ranks "
                    "(leave world_size out to use the group's)"
                )
            if world_size < 2:
                raise ValueError(
                    "the current process group has one rank: start at least two (torchrun --nproc-per-node 2)"
                )
        elif world_size is None:
            raise TypeError("check_distributed() needs world_size outside a process group (e.g. 2)")
        else:
            given: object = world_size
            if not isinstance(given, int) or isinstance(given, bool):
                raise TypeError(f"world_size must be an int number of ranks, not {given!r}")
            problem = started_ranks_problem(given) or world_size_problem(given)
            if problem:
                raise ValueError(f"world_size {problem}")
        target = Target(
            factory,
            Loader,
            name=name if name is not None else getattr(factory, "__qualname__", "shards"),
            expected_failures=expected_failures,
            options=checked_options,
        ).replace(shards=factory, world_size=world_size)
        report = target.run(time_budget_s=time_budget_s, select=lambda spec: "distributed" in spec.needs)
    return _verified_something(report)


def _verified_something(report: Report) -> Report:
    """The report, except that clauses which were all skipped are unverified: this call asks for them
    alone, so a run that verified none of them (its ranks could not be started faithfully: a factory
    in an unguarded main script, no os.fork) does not pass."""
    if any(result.status != "skipped" for result in report.results):
        return report
    results = tuple(
        dataclasses.replace(
            result,
            status="unverified",
            message=f"not verified: {result.message} (check_distributed runs only the clauses across "
            "ranks, and none could run)",
        )
        for result in report.results
    )
    return dataclasses.replace(report, results=results)
