"""Checks of sharding across ranks (SPEC.md, "Distributed data").

They run when the target gives ``world_size`` (pytest: ``--conformance-world-size N``). Sampler
checks build every rank's sampler in this process with ``shards(rank, world_size)``; loader checks
run a real gloo process group on loopback (:mod:`torchcontract.conformance._process_group`).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from torchcontract.conformance import _fresh_interpreter as fresh
from torchcontract.conformance._calls import object_call
from torchcontract.conformance._engine import Context, Target
from torchcontract.conformance._process_group import RankOutcome, batch_rows, run_ranks, set_epoch
from torchcontract.conformance._registry import register_check
from torchcontract.conformance._results import Report
from torchcontract.conformance.checks._common import record_pass
from torchcontract.conformance.checks.sampler import ENDS as SAMPLER_ENDS
from torchcontract.conformance.checks.sampler import Items, classify_items, data_source_len
from torchcontract.conformance.checks.sampler import replacement as _replacement
from torchcontract.protocols import Loader, Sampler
from torchcontract.reference_impl import DistributedSampler as _ReferenceDistributedSampler

__all__ = ["check_distributed"]

EQUAL = "sampler.shards_have_equal_length"
COVER = "sampler.shards_cover_dataset"
_SAMPLER_ATTRIBUTES = ("dataset", "num_replicas", "rank", "shuffle", "seed", "drop_last")


def _world_size(ctx: Context) -> int:
    world_size = ctx.options.world_size
    if world_size is None:
        ctx.skip(
            "distributed checks are off: give world_size=N (pytest: --conformance-world-size N, CLI: "
            "-o world_size=N)"
        )
    return world_size


def _inferable_kinds() -> tuple[type[Any], ...]:
    """The samplers whose constructor is known: torch's DistributedSampler and the reference one."""
    kinds: list[type[Any]] = [_ReferenceDistributedSampler]
    torch_data = sys.modules.get("torch.utils.data")
    kind = getattr(torch_data, "DistributedSampler", None)
    if isinstance(kind, type):
        kinds.append(kind)
    return tuple(kinds)


def _sampler_factory(ctx: Context) -> Callable[[int, int], Any]:
    """``shards`` option, else one built from a DistributedSampler's attributes (exactly torch's or the
    reference implementation's class: a subclass's constructor may take other arguments, or more)."""
    if ctx.options.shards is not None:
        return ctx.options.shards
    sampler = ctx.obj
    kind = type(sampler)
    if kind not in _inferable_kinds() or not all(hasattr(sampler, name) for name in _SAMPLER_ATTRIBUTES):
        which = "" if kind not in _inferable_kinds() else " (it lacks DistributedSampler's attributes)"
        ctx.skip(
            f"the rank samplers are rebuilt only for torch's or the reference DistributedSampler itself, "
            f"not {kind.__qualname__}{which}: give shards=lambda rank, world_size: <the sampler of that "
            "rank> to check sharding"
        )

    def same_sampler_for(rank: int, world_size: int) -> Any:
        return kind(
            sampler.dataset,
            num_replicas=world_size,
            rank=rank,
            shuffle=sampler.shuffle,
            seed=sampler.seed,
            drop_last=sampler.drop_last,
        )

    return same_sampler_for


def _applies(ctx: Context, *, needs_finite: bool = True, covers: bool = False, repeats: bool = False) -> None:
    """Skip a sharding clause that relies on something the target declared away."""
    if needs_finite and ctx.options.infinite:
        ctx.skip("the target declares infinite=True: its shards have no end to count or compare")
    if covers and ctx.options.replacement:
        ctx.skip(
            "the target declares replacement=True: shards drawn with replacement need not cover the data"
        )
    if repeats and not ctx.options.deterministic:
        ctx.skip("the target declares deterministic=False: two builds of the shards need not agree")


def _build(ctx: Context, world_size: int) -> list[Any]:
    factory = _sampler_factory(ctx)
    return [
        ctx.call(f"shards({rank}, {world_size})", factory, rank, world_size) for rank in range(world_size)
    ]


def _read(ctx: Context, sampler: Any, label: str) -> Items:
    record = record_pass(
        ctx, ctx.call(f"iter({label})", iter, sampler), label, limit=10_000_000, keep=10_000_000
    )
    if not record.ended:
        ctx.fail(
            f"{label} did not end within the time budget ({ctx.time_budget_s:g} s); expected a finite "
            "pass (declare infinite=True otherwise)",
            reproduce=f"list({label})",
        )
    return classify_items(ctx, record.prefix, label)


def _passes(ctx: Context, epoch: int | None = None, samplers: list[Any] | None = None) -> list[Items]:
    """Every rank's pass (after ``set_epoch(epoch)`` when given)."""
    world_size = _world_size(ctx)
    if samplers is None:
        samplers = _build(ctx, world_size)
    passes = []
    for rank, sampler in enumerate(samplers):
        label = f"shards({rank}, {world_size})"
        if epoch is not None:
            ctx.call(f"{label}.set_epoch({epoch})", sampler.set_epoch, epoch)
        passes.append(_read(ctx, sampler, label))
    if any(items.kind == "keys" for items in passes):
        ctx.skip("the rank samplers yield keys, not int indices: their coverage cannot be judged")
    return passes


def _shards(ctx: Context, epoch: int | None = None, samplers: list[Any] | None = None) -> list[list[int]]:
    return [items.flat for items in _passes(ctx, epoch, samplers)]


def _allowed_drops(ctx: Context, world_size: int) -> tuple[bool, int]:
    """(whether the sharding drops the tail, how many more indices a batch sampler's drop_last may
    drop): for a batch sampler, drop_last is its own and the sharding's is its sampler's."""
    sampler = ctx.obj
    batch_size = getattr(sampler, "batch_size", None)
    inner = getattr(sampler, "sampler", None)
    if isinstance(batch_size, int) and not isinstance(batch_size, bool) and inner is not None:
        dropped = world_size * (batch_size - 1) if getattr(sampler, "drop_last", False) is True else 0
        return getattr(inner, "drop_last", False) is True, dropped
    return getattr(sampler, "drop_last", False) is True, 0


def _padding(ctx: Context, world_size: int, drop_last: bool) -> tuple[int, str]:
    """How many indices may repeat across the ranks, and why (for messages): the declared
    max_padding, none under uneven_shards=True, else the world_size - 1 of DistributedSampler's
    padding (none when it drops the tail instead)."""
    if ctx.options.uneven_shards:
        return 0, "the target declares uneven_shards=True: every index on exactly one rank, no padding"
    if ctx.options.max_padding is not None:
        return ctx.options.max_padding, f"at most the declared max_padding={ctx.options.max_padding} repeats"
    allowed = 0 if drop_last else world_size - 1
    return allowed, f"at most {allowed} repeats of padding to make the shards equal"


def _coverage_problem(
    shards: list[list[int]],
    length: int,
    drop_last: bool,
    what: str,
    dropped: int = 0,
    padding: tuple[int, str] | None = None,
) -> str | None:
    """Why the shards do not cover range(length) once (up to the documented padding), or None."""
    world_size = len(shards)
    counts = Counter(index for shard in shards for index in shard)
    missing = [index for index in range(length) if index not in counts]
    repeats = sum(n - 1 for n in counts.values() if n > 1)
    allowed_missing = world_size - 1 if drop_last else 0
    allowed_missing += dropped
    allowed_repeats, why = padding if padding is not None else (0 if drop_last else world_size - 1, "")
    if not why:
        why = f"at most {allowed_repeats} repeats of padding to make the shards equal"
    if len(missing) > allowed_missing:
        return (
            f"{what}: {len(missing)} of {length} indices are on no rank (first: {missing[:5]}); expected "
            f"every index on some rank{' (drop_last may drop fewer than world_size)' if drop_last else ''}"
        )
    if repeats > allowed_repeats:
        shared = [index for index, n in counts.items() if n > 1][:5]
        return (
            f"{what}: {repeats} indices are repeated across ranks (e.g. {shared}); expected disjoint shards "
            f"({why})"
        )
    return None


@register_check(EQUAL, protocol=Sampler, severity="required", requires=(SAMPLER_ENDS,))
def shards_have_equal_length(ctx: Context) -> None:
    """With world_size ranks, every rank's sampler yields the same number of indices (of batches, for a
    batch sampler)."""
    _world_size(ctx)
    _applies(ctx)
    if ctx.options.uneven_shards:
        ctx.skip(
            "the target declares uneven_shards=True: its ranks get unequal lengths by design (evaluation "
            "sharding, no padding); sampler.shards_cover_dataset checks every index is on exactly one rank"
        )
    passes = _passes(ctx)
    world_size = len(passes)
    batched = any(items.kind == "batches" for items in passes)
    lengths = [len(items.sizes) if batched else len(items.flat) for items in passes]
    if len(set(lengths)) > 1:
        unit = "batches" if batched else "indices"
        why = (
            " (a batch sampler: DDP runs one step per batch, so the batch counts must agree)"
            if batched
            else ""
        )
        ctx.fail(
            f"with world_size={world_size}, the ranks yield {lengths} {unit}{why}; expected the same number "
            "on every rank (each step runs collectives across all ranks: a rank that runs out first "
            "leaves the others waiting, and DDP hangs)",
            reproduce=f"[len(list(shards(rank, {world_size}))) for rank in range({world_size})]",
        )


@register_check(COVER, protocol=Sampler, severity="required", requires=(SAMPLER_ENDS,))
def shards_cover_dataset(ctx: Context) -> None:
    """Together the ranks cover every index once, up to the padding (or dropping) that makes them equal."""
    _world_size(ctx)
    _applies(ctx, covers=True)
    if _replacement(ctx):
        ctx.skip("the sampler draws with replacement: its shards need not cover the data")
    length = data_source_len(ctx)
    if length is None:
        ctx.skip("the data source's length is unknown (pass data_source_len=N)")
    shards = _shards(ctx)
    drop_last, dropped = _allowed_drops(ctx, len(shards))
    if ctx.options.uneven_shards:
        drop_last, dropped = False, 0
    padding = _padding(ctx, len(shards), drop_last)
    problem = _coverage_problem(shards, length, drop_last, f"with world_size={len(shards)}", dropped, padding)
    if problem:
        ctx.fail(problem, reproduce=f"[list(shards(rank, {len(shards)})) for rank in range({len(shards)})]")


@register_check(
    "sampler.set_epoch_reshuffles_every_rank_alike",
    protocol=Sampler,
    severity="required",
    requires=(COVER,),
)
def set_epoch_reshuffles_every_rank_alike(ctx: Context) -> None:
    """A shuffling sampler's set_epoch(e) changes the order, and every rank shards the same permutation."""
    world_size = _world_size(ctx)
    _applies(ctx)
    if ctx.options.ordered:
        ctx.skip("the target declares ordered=True: it does not shuffle")
    samplers = _build(ctx, world_size)
    if not callable(getattr(samplers[0], "set_epoch", None)):
        ctx.skip("the sampler has no set_epoch")
    if getattr(ctx.obj, "shuffle", True) is False:
        ctx.skip("the sampler does not shuffle")
    first = _shards(ctx, 0, samplers)
    second = _shards(ctx, 1, samplers)
    if first == second:
        ctx.fail(
            "after set_epoch(1) every rank yields the same order as after set_epoch(0); expected a new "
            "permutation each epoch (seeded from seed + epoch), or every epoch repeats the first",
            reproduce="s = shards(0, world_size); s.set_epoch(0); a = list(s); s.set_epoch(1); a == list(s)",
        )
    length = data_source_len(ctx)
    if length is not None and not ctx.options.replacement and not _replacement(ctx):
        drop_last, dropped = _allowed_drops(ctx, world_size)
        if ctx.options.uneven_shards:
            drop_last, dropped = False, 0
        padding = _padding(ctx, world_size, drop_last)
        problem = _coverage_problem(second, length, drop_last, "after set_epoch(1)", dropped, padding)
        if problem:
            ctx.fail(
                f"{problem}; the ranks must draw the same permutation for the same epoch",
                reproduce="[list(s) for s in rank_samplers]  # after s.set_epoch(1) on each",
            )


@register_check("sampler.same_seed_same_shards", protocol=Sampler, severity="required", requires=(COVER,))
def same_seed_same_shards(ctx: Context) -> None:
    """Building the rank samplers again (same seed) gives the same shards: ranks and restarts agree."""
    world_size = _world_size(ctx)
    _applies(ctx, repeats=True)

    def build() -> list[list[int]]:
        samplers = _build(ctx, world_size)
        epoch = 0 if callable(getattr(samplers[0], "set_epoch", None)) else None
        return _shards(ctx, epoch, samplers)

    if build() != build():
        ctx.fail(
            "building the rank samplers twice gave different shards; expected the order to follow from "
            "the seed (every rank builds its own sampler, in its own process: without a shared seed they "
            "shard different permutations)",
            reproduce="list(shards(0, world_size)) == list(shards(0, world_size))",
        )


# ----------------------------------------------------------------------------------------------------
# loaders under a real process group

GROUP = "loader.ranks_yield_equal_batch_counts"


def _group_run(ctx: Context) -> tuple[list[RankOutcome], int]:
    world_size = _world_size(ctx)
    if ctx.options.infinite:
        ctx.skip("the target declares infinite=True: the ranks' epochs have no end to count or compare")
    factory = ctx.options.shards
    if factory is None:
        ctx.skip("give shards=<a picklable function (rank, world_size) -> the loader of that rank>")

    def run() -> list[RankOutcome] | str:
        pickled = ctx.call("pickle.dumps(shards)", fresh.pickled, factory)
        try:
            # The fresh interpreter's start is not charged: the ranks get 80% of the budget after it.
            with object_call(
                f"a gloo process group of {world_size} ranks running shards(rank, {world_size})"
            ):
                return run_ranks(pickled, world_size, epochs=2, timeout_s=ctx.time_budget_s * 0.8)
        except fresh.Unavailable as why:
            return str(why)

    outcomes = ctx.shared("process_group", run)
    if isinstance(outcomes, str):
        ctx.skip(outcomes)
    failed = [outcome for outcome in outcomes if outcome.error]
    if failed:
        # A rank that died or hung is the cause; its peers then fail in a collective.
        failed.sort(key=lambda outcome: (outcome.epochs != [] or "Traceback" in (outcome.error or ""),))
        first = failed[0]
        error = (first.error or "").strip()
        others = ", ".join(f"rank {o.rank}: {(o.error or '').strip().splitlines()[-1]}" for o in failed[1:])
        ctx.fail(
            f"rank {first.rank} of {world_size} failed: {error.splitlines()[-1]}"
            + (f"; then {others}" if others else "")
            + "; every rank process was stopped",
            reproduce=f"torchcontract.conformance.check_distributed(shards, world_size={world_size})",
        )
    return outcomes, world_size


@register_check(GROUP, protocol=Loader, severity="required", needs=("torch", "distributed"))
def ranks_yield_equal_batch_counts(ctx: Context) -> None:
    """Under a process group, every rank's loader yields the same number of batches each epoch."""
    if ctx.options.uneven_shards:
        _world_size(ctx)
        ctx.skip(
            "the target declares uneven_shards=True: its ranks get unequal batch counts by design "
            "(evaluation sharding); loader.ranks_cover_dataset checks every sample is on exactly one rank"
        )
    outcomes, world_size = _group_run(ctx)
    for epoch in range(len(outcomes[0].epochs)):
        gathered = outcomes[0].epochs[epoch]["gathered"]
        if len(set(gathered)) > 1:
            ctx.fail(
                f"in epoch {epoch}, the {world_size} ranks yielded {gathered} batches (gathered with "
                "all_gather_object); expected the same number on every rank: in training, a rank "
                "with an extra batch blocks in its gradient all-reduce until the process-group timeout",
                reproduce=f"torchcontract.conformance.check_distributed(shards, world_size={world_size})",
            )


@register_check(
    "loader.ranks_cover_dataset",
    protocol=Loader,
    severity="required",
    needs=("torch", "distributed"),
    requires=(GROUP,),
)
def ranks_cover_dataset(ctx: Context) -> None:
    """Under a process group, the ranks' batches together hold every sample once per epoch (up to padding)."""
    if not ctx.options.deterministic:
        ctx.skip(
            "the target declares deterministic=False: the ranks' samples need not equal those of shards(0, 1)"
        )
    outcomes, world_size = _group_run(ctx)
    factory = ctx.options.shards
    whole = ctx.call("shards(0, 1)", factory, 0, 1) if factory is not None else None
    ctx.call("shards(0, 1).sampler.set_epoch(0)", set_epoch, whole, 0)
    expected: Counter[str] = Counter()
    batches: list[Any] = ctx.call("list(shards(0, 1))", list, whole)
    for batch in batches:
        rows = batch_rows(batch)
        if rows is None:
            ctx.skip("cannot split the batches into samples (their leaves disagree on the leading dimension)")
        expected.update(rows)
    sampler = getattr(whole, "sampler", None)
    batch_size = getattr(whole, "batch_size", None)
    allowed_missing = world_size - 1 if getattr(sampler, "drop_last", False) else 0
    if getattr(whole, "drop_last", False) and isinstance(batch_size, int):
        allowed_missing += world_size * (batch_size - 1)
    allowed_extra, why = world_size - 1, "up to the padding that makes the ranks equal"
    if ctx.options.uneven_shards:
        allowed_missing, allowed_extra = 0, 0
        why = "on exactly one rank: the target declares uneven_shards=True (no padding)"
    elif ctx.options.max_padding is not None:
        allowed_extra = ctx.options.max_padding
        why = f"up to the declared max_padding={allowed_extra} repeats"
    for epoch in range(len(outcomes[0].epochs)):
        seen: Counter[str] = Counter()
        for outcome in outcomes:
            seen.update(outcome.epochs[epoch]["rows"])
        missing, extra = expected - seen, seen - expected
        if sum(missing.values()) > allowed_missing or sum(extra.values()) > allowed_extra:
            ctx.fail(
                f"in epoch {epoch}, the {world_size} ranks' batches held {sum(seen.values())} samples, "
                f"of which {sum(extra.values())} beyond one copy of the dataset, and missed "
                f"{sum(missing.values())} of its {sum(expected.values())} samples; expected every "
                f"sample once per epoch, {why}",
                reproduce=f"torchcontract.conformance.check_distributed(shards, world_size={world_size})",
            )


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
