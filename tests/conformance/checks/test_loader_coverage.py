"""Regression tests: a loader's batches are counted by the indices of the sampler it exposes, not by
their content, which a padding collate_fn changes.

``torch.nn.utils.rnn.pad_sequence`` pads time-major by default: a batch of 4 sequences of up to 7
tokens is a (7, 4) tensor, whose leading dimension is not its sample count. torch's fetcher loads
exactly the indices of the loader's batch sampler (``utils/data/_utils/fetch.py``,
``_MapDatasetFetcher.fetch``), so those say which samples each batch holds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils import data as tud

from torchcontract.conformance import check
from torchcontract.protocols import Loader

from ..reports import status


class Tokens:
    """10 sequences of 1 to 7 tokens."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -10 <= index < 10:
            raise IndexError(index)
        index %= 10
        return torch.arange(1, 2 + index % 7) + 10 * index


@pytest.mark.clause("loader.batches_cover_dataset", "loader.batches_match_collate")
def test_time_major_padding_is_counted_by_the_batch_samplers_indices() -> None:
    # Before: "an epoch's batches held 14 samples in all (3 batches of sizes 3, 4, 7); expected 10".
    report = check(tud.DataLoader(Tokens(), batch_size=4, collate_fn=pad_sequence), Loader)
    assert status(report, "loader.batches_cover_dataset")[0] == "passed", report
    assert status(report, "loader.batches_match_collate")[0] == "passed", report
    assert report.passed, report


class DropsTheTail(tud.BatchSampler):
    """A bucketing batch sampler that says drop_last=False but drops the last, partial batch."""

    def __iter__(self) -> Iterator[list[int]]:
        for batch in super().__iter__():
            if len(batch) == self.batch_size:
                yield batch

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size  # type: ignore[arg-type]


@pytest.mark.clause("loader.batches_cover_dataset")
def test_a_batch_sampler_that_drops_samples_fails_by_its_indices() -> None:
    sampler = DropsTheTail(tud.SequentialSampler(range(10)), batch_size=4, drop_last=False)
    report = check(tud.DataLoader(Tokens(), batch_sampler=sampler, collate_fn=pad_sequence), Loader)
    verdict, message = status(report, "loader.batches_cover_dataset")
    assert verdict == "failed", report
    assert "held 8 samples in all" in message
    assert "expected 10" in message
