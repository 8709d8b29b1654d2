"""Counting the samples of a batch (``_values.sample_count``), also of batches that keep their
samples whole (``collate_fn=list``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

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


@pytest.mark.clause("loader.batches_cover_dataset", "loader.batches_match_collate")
def test_a_loader_whose_batches_are_lists_of_samples_is_counted_right() -> None:
    # Before the fix: "batches held 9 samples in all (3 batches of sizes 3); expected 10".
    report = check(BatchLoader(Points(10), 4, collate_fn=list), Loader)
    assert _status(report, "loader.batches_cover_dataset")[0] == "passed"
    assert _status(report, "loader.batches_match_collate")[0] == "passed"


@pytest.mark.clause("collate_fn.batch_has_one_row_per_sample", "collate_fn.batch_mirrors_sample_structure")
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


# -- torch's collate semantics: default_convert, padded token lists, one value per sample ------------


def convert_each(samples: list[Any]) -> list[Any]:
    """A collate shaped like torch's ``default_convert`` over a batch: every sample kept whole, its
    tuples turned into lists (``utils/data/_utils/collate.py``: "Backwards compatibility")."""

    def convert(value: Any) -> Any:
        if isinstance(value, tuple) and not hasattr(type(value), "_fields"):
            return [convert(item) for item in value]
        return value

    return [convert(sample) for sample in samples]


def pad_tokens(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """A padding collate of token lists: one padded row (a list) per sample."""
    width = max(len(sample["tokens"]) for sample in samples)
    return {"tokens": [sample["tokens"] + [0] * (width - len(sample["tokens"])) for sample in samples]}


def pad_tokens_to_array(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The same rows, as one (batch, width) array."""
    return {"tokens": np.asarray(pad_tokens(samples)["tokens"])}


def dict_of_lists(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Each key holds the list of its samples' values, unbatched."""
    return {key: [sample[key] for sample in samples] for key in samples[0]}


TOKENS = [{"tokens": [1, 2, 3]}, {"tokens": [4]}, {"tokens": [5, 6]}, {"tokens": [7, 8, 9, 10]}]
PAIRS = [{"pair": (i, i + 1), "label": i % 2} for i in range(4)]
POINTS = [(np.full(3, i, dtype=np.float32), i % 2, f"point {i}") for i in range(4)]


def test_a_converting_collate_is_counted_by_its_samples_not_their_fields() -> None:
    batch = convert_each(POINTS)
    assert sample_count(batch, like=POINTS[0]) == 4  # not 3 (a sample's fields), nor 3 (its features)
    assert sample_count(convert_each(POINTS[:1]), like=POINTS[0]) == 1
    report = check(convert_each, CollateFn, example_inputs=POINTS)
    assert report.passed, report


@pytest.mark.clause("loader.batches_cover_dataset", "loader.batches_match_collate")
def test_a_loader_with_a_converting_collate_covers_its_dataset() -> None:
    dataset = [(np.full(2, i, dtype=np.float32), i, "x") for i in range(10)]
    report = check(BatchLoader(dataset, 4, collate_fn=convert_each), Loader)
    assert _status(report, "loader.batches_cover_dataset")[0] == "passed", report
    assert _status(report, "loader.batches_match_collate")[0] == "passed", report


@pytest.mark.clause("collate_fn.batch_mirrors_sample_structure")
@pytest.mark.parametrize("collate", [pad_tokens, pad_tokens_to_array, dict_of_lists])
def test_padded_token_lists_and_lists_of_values_mirror_their_samples(collate: Any) -> None:
    report = check(collate, CollateFn, example_inputs=TOKENS)
    assert _status(report, "collate_fn.batch_mirrors_sample_structure")[0] == "passed", report
    assert report.passed, report


@pytest.mark.clause("collate_fn.batch_mirrors_sample_structure")
def test_a_dict_of_lists_of_tuples_mirrors_its_samples() -> None:
    report = check(dict_of_lists, CollateFn, example_inputs=PAIRS)
    assert _status(report, "collate_fn.batch_mirrors_sample_structure")[0] == "passed", report
    assert report.passed, report


@pytest.mark.clause("collate_fn.batch_mirrors_sample_structure")
def test_a_collate_that_keeps_samples_whole_but_drops_a_field_still_fails() -> None:
    def drops_weight(samples: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [sample[:2] for sample in samples]

    report = check(drops_weight, CollateFn, example_inputs=POINTS)
    status, message = _status(report, "collate_fn.batch_mirrors_sample_structure")
    assert status == "failed", report
    assert "4 fields but each sample has 3" in message


@pytest.mark.clause("loader.batches_cover_dataset")
def test_torch_default_convert_is_a_collate_function_and_a_loaders() -> None:
    torch = pytest.importorskip("torch", reason="torch's own default_convert")
    from torch.utils.data import DataLoader, default_convert

    samples = [(torch.tensor([1.0, 2.0]), i, "a") for i in range(4)]
    assert check(default_convert, CollateFn, example_inputs=samples).passed
    dataset = [(torch.tensor([float(i)]), i, "x") for i in range(10)]
    report = check(DataLoader(dataset, batch_size=4, collate_fn=default_convert), Loader)
    assert _status(report, "loader.batches_cover_dataset")[0] == "passed", report
