"""The corpus of mutants: small broken implementations, each violating exactly one clause.

Each mutant is data: which protocol it claims, which check id it violates, how to build it, and what
to pass to ``check()``. The bugs are ones people ship (an off-by-one ``__len__``, an ``__iter__`` that
returns ``self``, a ``train()`` that forgets ``return self``, ...). The torch mutants live in
``torch_mutants`` and are imported only when torch is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...conftest import HAS_TORCH

__all__ = ["Mutant", "all_mutants"]


@dataclass(frozen=True)
class Mutant:
    """One broken implementation.

    name: says what is broken (the test id is ``test_id``).
    protocol: what it claims to implement.
    violates: the one check id it must fail.
    bug: the bug, in one line.
    factory: builds a fresh object (checks may change state, e.g. a sampler's position).
    kwargs: passed to ``check()`` (example_inputs, time_budget_s, options such as infinite=True).
    message_contains: fragments the failure message must contain (the failing expression, the numbers).
    hangs: the object hangs; every check after the failed one is unverified, with the hang as reason.
    """

    name: str
    protocol: type[Any]
    violates: str
    bug: str
    factory: Callable[[], object]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    message_contains: tuple[str, ...] = ()
    needs_torch: bool = False
    needs_cuda: bool = False
    hangs: bool = False

    @property
    def test_id(self) -> str:
        """``map_dataset.index_past_end_raises_index_error-len_one_too_short``: the check it violates and
        its name, so that ``pytest -k <check id>`` selects a clause's mutants."""
        return f"{self.violates}-{self.name}"


def all_mutants() -> list[Mutant]:
    """Every mutant; the torch ones only when torch is installed."""
    from . import (
        callable_module,
        collate_fn,
        iterable_dataset,
        loader,
        map_dataset,
        module,
        sampler,
        stateful,
    )

    corpus: list[Mutant] = [
        *map_dataset.MUTANTS,
        *iterable_dataset.MUTANTS,
        *loader.MUTANTS,
        *sampler.MUTANTS,
        *collate_fn.MUTANTS,
        *callable_module.MUTANTS,
        *module.MUTANTS,
        *stateful.MUTANTS,
    ]
    if HAS_TORCH:
        from . import torch_mutants

        corpus.extend(torch_mutants.MUTANTS)
        corpus.extend(stateful.TORCH_MUTANTS)
    names = [m.test_id for m in corpus]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"mutant names must be unique (they are test ids): {duplicates}")
    return corpus
