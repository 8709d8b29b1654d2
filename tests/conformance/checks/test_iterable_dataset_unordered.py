"""``iterable_dataset.spawn_workers_yield_same_items`` under ``ordered=False`` (found on
mosaicml-streaming's shuffled ``StreamingDataset``, which starts a new epoch, in a new order, on every
``iter()``).

A stream declared ``ordered=False`` has its two passes compared in any order by
``iterable_dataset.new_iter_starts_new_pass``, but the spawn clause compared the fresh interpreter's
pass with this process's item by item, so the declaration that made the stream's first clause pass
failed the second. Both compare the items as a multiset now, and a worker that loses items still fails.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from torchcontract.conformance import check

from ...conftest import HAS_TORCH, NO_TORCH_REASON

SPAWN = "iterable_dataset.spawn_workers_yield_same_items"

pytestmark = [pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON), pytest.mark.clause(SPAWN)]

if HAS_TORCH:
    from torch.utils import data

    from torchcontract.protocols import IterableDataset

    class ReshufflingStream(data.IterableDataset[int]):
        """Items 0..11 in a seeded order that changes on every pass: its epoch counter lives outside
        the object (a file here, shared memory in StreamingDataset), so every process that opens the
        dataset, a spawned worker included, starts the next epoch."""

        def __init__(self, epochs: Path) -> None:
            self.epochs = epochs
            epochs.write_text("0")

        def __iter__(self) -> Iterator[int]:
            epoch = int(self.epochs.read_text())
            self.epochs.write_text(str(epoch + 1))
            order = list(range(12))
            random.Random(7 + epoch).shuffle(order)
            return iter(order)

    class LosesItemsWhenUnpickled(ReshufflingStream):
        """The same stream, but a copy rebuilt from its pickle yields only half of the items."""

        def __setstate__(self, state: dict[str, Any]) -> None:
            self.__dict__.update(state)
            self.halved = True

        def __iter__(self) -> Iterator[int]:
            items = list(super().__iter__())
            return iter(items[:6] if getattr(self, "halved", False) else items)

    class OtherItemsWhenUnpickled(LosesItemsWhenUnpickled):
        """As many items when rebuilt from its pickle, but other ones (12..23)."""

        def __iter__(self) -> Iterator[int]:
            items = list(ReshufflingStream.__iter__(self))
            return iter([item + 12 for item in items] if getattr(self, "halved", False) else items)


def _spawn_result(stream: Any) -> Any:
    report = check(stream, IterableDataset, ordered=False)
    return next(r for r in report.results if r.check_id == SPAWN)


def test_a_stream_that_reshuffles_each_pass_passes_when_declared_unordered(tmp_path: Path) -> None:
    result = _spawn_result(ReshufflingStream(tmp_path / "epoch"))
    assert result.status == "passed", result.message


def test_a_worker_that_loses_items_still_fails_when_declared_unordered(tmp_path: Path) -> None:
    result = _spawn_result(LosesItemsWhenUnpickled(tmp_path / "epoch"))
    assert result.status == "failed", result.message
    assert "yielded 6 items" in result.message


def test_a_worker_that_yields_other_items_fails_when_declared_unordered(tmp_path: Path) -> None:
    result = _spawn_result(OtherItemsWhenUnpickled(tmp_path / "epoch"))
    assert result.status == "failed", result.message
    assert "compared in any order" in result.message
