"""Property-based tests: random lengths, batch sizes and drop_last for the clauses that count.

The correct objects must pass for every draw. The mutants must fail exactly when their bug can show
(dropping the partial batch only shows when there is one), so the checks are not tuned to one
size. Derandomized, so that a run is reproducible; few examples, since CI has two cores.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchcontract.conformance import Report, check
from torchcontract.protocols import CollateFn, Loader, MapDataset, Sampler

from ..conftest import HAS_TORCH, NO_TORCH_REASON
from .correct import BatchLoader, Points, SeededShuffleSampler, numpy_collate
from .mutants.collate_fn import pair_for_mixup
from .mutants.loader import DropsPartialBatchAnyway, LenIsCeilButDropsLast
from .mutants.map_dataset import LenOneTooShort, WrapsIndexModuloLen

PROPERTIES = settings(
    derandomize=True,
    database=None,
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

lengths = st.integers(min_value=0, max_value=40)
batch_sizes = st.integers(min_value=1, max_value=12)


def failed(report: Report) -> list[str]:
    """Every failed check, recommended included."""
    return [r.check_id for r in report.results if r.status == "failed"]


# -- loaders ------------------------------------------------------------------------------------------


@PROPERTIES
@given(n=lengths, batch_size=batch_sizes, drop_last=st.booleans())
def test_batch_loader_conforms_for_any_size(n: int, batch_size: int, drop_last: bool) -> None:
    loader = BatchLoader(Points(n), batch_size, drop_last=drop_last)
    assert failed(check(loader, Loader)) == []


@PROPERTIES
@given(n=lengths, batch_size=batch_sizes)
def test_list_of_batches_conforms_for_any_size(n: int, batch_size: int) -> None:
    batches = [np.zeros((min(batch_size, n - start), 3)) for start in range(0, n, batch_size)]
    assert failed(check(batches, Loader)) == []


@pytest.mark.clause("loader.batches_cover_dataset")
@PROPERTIES
@given(n=lengths, batch_size=batch_sizes)
def test_dropping_the_partial_batch_fails_exactly_when_there_is_one(n: int, batch_size: int) -> None:
    report = check(DropsPartialBatchAnyway(Points(n), batch_size), Loader)
    expected = ["loader.batches_cover_dataset"] if n % batch_size else []
    assert failed(report) == expected


@pytest.mark.clause("loader.len_matches_batch_count")
@PROPERTIES
@given(n=lengths, batch_size=batch_sizes)
def test_a_ceil_len_with_drop_last_fails_exactly_when_a_batch_is_dropped(n: int, batch_size: int) -> None:
    report = check(LenIsCeilButDropsLast(Points(n), batch_size, drop_last=True), Loader)
    expected = ["loader.len_matches_batch_count"] if n % batch_size else []
    assert failed(report) == expected


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)
@PROPERTIES
@given(
    n=lengths,
    batch_size=batch_sizes,
    drop_last=st.booleans(),
    shuffle=st.booleans(),
    seeded=st.booleans(),
)
def test_torch_dataloader_conforms_for_any_size(
    n: int, batch_size: int, drop_last: bool, shuffle: bool, seeded: bool
) -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    dataset = TensorDataset(torch.arange(n * 2.0).reshape(n, 2), torch.arange(n))
    if shuffle and n == 0:
        return  # RandomSampler rejects an empty dataset when the DataLoader is built
    generator = torch.Generator().manual_seed(n) if seeded else None
    loader = DataLoader(dataset, batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator)
    assert failed(check(loader, Loader)) == []


# -- map-style datasets -------------------------------------------------------------------------------


@PROPERTIES
@given(n=lengths)
def test_points_and_plain_sequences_conform_for_any_length(n: int) -> None:
    assert failed(check(Points(n), MapDataset)) == []
    assert failed(check(list(range(n)), MapDataset)) == []
    assert failed(check(tuple(str(i) for i in range(n)), MapDataset)) == []


@pytest.mark.clause("map_dataset.index_past_end_raises_index_error")
@PROPERTIES
@given(n=st.integers(min_value=1, max_value=60))
def test_index_bugs_are_caught_for_any_length(n: int) -> None:
    for dataset in (WrapsIndexModuloLen(n), LenOneTooShort(n)):
        report = check(dataset, MapDataset)
        violations = [r.check_id for r in report.results if r.is_violation]
        assert violations == ["map_dataset.index_past_end_raises_index_error"], type(dataset).__name__


# -- samplers -----------------------------------------------------------------------------------------


@PROPERTIES
@given(n=st.integers(min_value=0, max_value=200), seed=st.integers(min_value=0, max_value=2**16))
def test_seeded_shuffle_sampler_conforms_for_any_length(n: int, seed: int) -> None:
    assert failed(check(SeededShuffleSampler(range(n), seed), Sampler)) == []


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)
@PROPERTIES
@given(
    n=st.integers(min_value=1, max_value=50),
    batch_size=batch_sizes,
    drop_last=st.booleans(),
    replacement=st.booleans(),
    num_samples=st.none() | st.integers(min_value=1, max_value=80),
)
def test_torch_samplers_conform_for_any_size(
    n: int, batch_size: int, drop_last: bool, replacement: bool, num_samples: int | None
) -> None:
    from torch.utils.data import BatchSampler, RandomSampler

    if num_samples is not None and not replacement:
        num_samples = min(num_samples, n)  # without replacement, at most one of each
    sampler = RandomSampler(range(n), replacement=replacement, num_samples=num_samples)
    assert failed(check(sampler, Sampler)) == []
    assert failed(check(BatchSampler(sampler, batch_size, drop_last), Sampler)) == []


# -- collate functions --------------------------------------------------------------------------------


@pytest.mark.clause("collate_fn.batch_has_one_row_per_sample")
@PROPERTIES
@given(n=st.integers(min_value=1, max_value=12))
def test_dropping_the_odd_sample_out_fails_exactly_when_a_batch_is_odd(n: int) -> None:
    samples = [(np.full(3, i, dtype=np.float32), i) for i in range(n)]
    assert failed(check(numpy_collate, CollateFn, example_inputs=samples)) == []
    # The check collates samples, samples[:1] and (for n > 2) samples[:n-1]: one of the last two has
    # odd length > 1 exactly when n >= 3; a single sample is kept.
    report = check(pair_for_mixup, CollateFn, example_inputs=samples)
    assert failed(report) == (["collate_fn.batch_has_one_row_per_sample"] if n >= 3 else [])
