"""``check_distributed``: the loader clauses across ranks of a real process group, as one call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torchcontract.conformance._engine import Target
from torchcontract.conformance._results import Report
from torchcontract.protocols import Loader

__all__ = ["check_distributed"]


def check_distributed(
    factory: Callable[[int, int], Any],
    world_size: int,
    *,
    name: str | None = None,
    time_budget_s: float = 60.0,
) -> Report:
    """Run the loader that ``factory(rank, world_size)`` builds on every rank of a real gloo process
    group on 127.0.0.1, for two epochs, and check that the ranks yield the same number of batches
    and together cover the dataset (``factory(0, 1)``'s) once per epoch, up to padding.

    ``factory`` must be picklable (a module-level function): each rank is a new process. Every
    process has ended when this returns, also when a rank hangs (after ``time_budget_s``) or dies.
    """
    target = Target(
        factory,
        Loader,
        name=name if name is not None else getattr(factory, "__qualname__", "shards"),
        shards=factory,
        world_size=world_size,
    )
    return target.run(time_budget_s=time_budget_s, select=lambda spec: "distributed" in spec.needs)
