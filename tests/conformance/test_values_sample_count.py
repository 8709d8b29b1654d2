"""Counting the samples of a batch (``_values.sample_count``), also of batches that keep their
samples whole (``collate_fn=list``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from torchcontract.conformance import check
from torchcontract.conformance._values import sample_count
from torchcontract.protocols import CollateFn, Loader

from .correct import BatchLoader, Points, numpy_collate
from .reports import status as _status

# -- a batch that keeps its samples whole is counted by its length ------------------------------------


def test_sample_count_of_a_list_of_samples_is_its_length_given_an_example() -> None:
    samples = [(np.full(3, i, dtype=np.float32), i % 2) for i in range(4)]
    # Without an example, the samples' own leading dimension (3) would be taken for the batch's.
    assert sample_count(samples) == 3
    assert sample_count(samples, like=samples[0]) == 4  # collate_fn=lambda b: b
    assert sample_count(tuple(zip(*samples, strict=True)), like=samples[0]) == 4  # tuple(zip(*b))
    assert sample_count(numpy_collate(samples), like=samples[0]) == 4  # stacked: unchanged
    assert sample_count(numpy_collate(samples[:3]), like=samples[0]) == 3


def test_a_loader_whose_batches_are_lists_of_samples_is_counted_right() -> None:
    # Before the fix: "batches held 9 samples in all (3 batches of sizes 3); expected 10".
    report = check(BatchLoader(Points(10), 4, collate_fn=list), Loader)
    assert _status(report, "loader.batches_cover_dataset")[0] == "passed"
    assert _status(report, "loader.batches_match_collate")[0] == "passed"


def test_a_collate_that_keeps_samples_whole_passes_and_one_that_drops_them_fails() -> None:
    samples = [{"image": np.zeros((2, 2)), "label": i} for i in range(4)]
    assert check(list, CollateFn, example_inputs=samples).passed

    def drops_last(batch: list[Any]) -> list[Any]:
        return batch[:-1]

    report = check(drops_last, CollateFn, example_inputs=samples)
    assert _status(report, "collate_fn.batch_has_one_row_per_sample")[0] == "failed"
    # The structure is intact: only the count is wrong, and only that check says so.
    assert _status(report, "collate_fn.batch_mirrors_sample_structure")[0] == "passed"


def test_a_sequence_of_stacked_fields_is_not_taken_for_a_list_of_samples() -> None:
    sample = np.zeros(3, dtype=np.float32)
    assert sample_count([np.zeros((4, 3))], like=sample) == 4  # [stack(samples)]: one more dimension
    assert sample_count((np.zeros((5, 4)), np.arange(4)), like=sample) is None  # (T, B) and lengths
    assert sample_count([np.zeros(3), np.zeros(3)], like=sample) == 2  # the samples themselves
