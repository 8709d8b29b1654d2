"""``loader.batches_match_collate`` over a dataset with ``__getitems__`` (found on a DataLoader over a
tensordict ``TensorDict``, whose ``__getitems__`` returns the batch as one TensorDict).

torch's ``_MapDatasetFetcher.fetch`` calls ``dataset.__getitems__(indices)`` when the dataset has it
and passes the result to ``collate_fn``; the clause built its expected batch from ``[ds[i] for i in
indices]`` instead, so a loader that does exactly what torch does (``collate_fn=lambda batch: batch``
over a dataset that fetches batches at once) failed it. The expected batch now comes the way the
fetcher gets it.
"""

from __future__ import annotations

from typing import Any

import pytest

from torchcontract.conformance import check

from ...conftest import HAS_TORCH, NO_TORCH_REASON

CLAUSE = "loader.batches_match_collate"

pytestmark = [pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON), pytest.mark.clause(CLAUSE)]

if HAS_TORCH:
    import torch
    from torch.utils import data

    from torchcontract.protocols import Loader

    class BatchFetching:
        """Rows of a table; ``__getitems__`` returns the rows asked for as one dict of stacked
        columns (the shape of a TensorDict, or of a columnar store's batched read)."""

        def __init__(self) -> None:
            self.x = torch.arange(20.0).reshape(10, 2)

        def __len__(self) -> int:
            return 10

        def __getitem__(self, index: int) -> dict[str, Any]:
            if not -10 <= index < 10:
                raise IndexError(index)
            return {"x": self.x[index].clone()}

        def __getitems__(self, indices: list[int]) -> dict[str, Any]:
            return {"x": self.x[indices].clone()}

    def keep(batch: Any) -> Any:
        return batch

    class OffByOne:
        """A loader over BatchFetching whose batches start one row late: not what its dataset and
        collate_fn give for the batch, so the clause must still fail it."""

        batch_size = 4

        def __init__(self) -> None:
            self.dataset = BatchFetching()
            self.collate_fn = keep

        def __iter__(self) -> Any:
            for start in range(0, 10, 4):
                rows = [(i + 1) % 10 for i in range(start, min(start + 4, 10))]
                yield self.collate_fn(self.dataset.__getitems__(rows))


def _result(loader: Any, **options: Any) -> Any:
    report = check(loader, Loader, **options)
    return next(r for r in report.results if r.check_id == CLAUSE)


def test_a_loader_that_collates_what_getitems_fetched_passes() -> None:
    result = _result(data.DataLoader(BatchFetching(), batch_size=4, collate_fn=keep))
    assert result.status == "passed", result.message


def test_batches_that_are_not_what_getitems_fetched_still_fail() -> None:
    result = _result(OffByOne(), ordered=True)
    assert result.status == "failed", result.message
    assert "__getitems__" in result.message
