"""A check whose prerequisite failed is skipped, through every level of prerequisites; one that
was not applicable skips nothing."""

from __future__ import annotations

import pytest

from torchcontract.conformance import check
from torchcontract.protocols import MapDataset

from .correct import NoisyPoints
from .mutants.map_dataset import AugmentsWithoutDeclaring, HoldsLambdaTransform, LenIsFloat
from .reports import status as _status

# -- prerequisites are transitive ---------------------------------------------------------------------


@pytest.mark.clause("map_dataset.getitem_is_deterministic", "map_dataset.len_is_non_negative_int")
def test_a_failed_len_skips_every_check_that_depends_on_it_even_indirectly() -> None:
    # getitem_is_deterministic requires getitem_in_range_succeeds, which requires len_is_non_negative_int.
    # Before the fix only direct prerequisites counted, so a broken __len__ failed four checks.
    report = check(LenIsFloat(), MapDataset)
    failed = [r.check_id for r in report.results if r.status == "failed"]
    assert failed == ["map_dataset.len_is_non_negative_int"]
    status, message = _status(report, "map_dataset.getitem_is_deterministic")
    assert status == "skipped"
    assert message == "not run: prerequisite map_dataset.len_is_non_negative_int failed"


@pytest.mark.clause(
    "map_dataset.getitem_is_deterministic",
    "map_dataset.iteration_matches_indexing",
    "map_dataset.pickle_round_trip",
)
def test_a_prerequisite_skipped_as_not_applicable_does_not_skip_its_dependents() -> None:
    # deterministic=False skips getitem_is_deterministic; the checks that require it still run.
    report = check(NoisyPoints(), MapDataset, deterministic=False)
    assert _status(report, "map_dataset.getitem_is_deterministic")[0] == "skipped"
    assert _status(report, "map_dataset.pickle_round_trip")[0] == "passed"
    assert _status(report, "map_dataset.iteration_matches_indexing")[0] == "passed"


# -- pickle_round_trip requires determinism -----------------------------------------------------------


@pytest.mark.clause("map_dataset.getitem_is_deterministic", "map_dataset.pickle_round_trip")
def test_an_undeclared_random_dataset_fails_determinism_not_pickling() -> None:
    report = check(AugmentsWithoutDeclaring(), MapDataset)
    assert _status(report, "map_dataset.getitem_is_deterministic")[0] == "failed"
    status, message = _status(report, "map_dataset.pickle_round_trip")
    assert (status, message) == (
        "skipped",
        "not run: prerequisite map_dataset.getitem_is_deterministic failed",
    )


@pytest.mark.clause("map_dataset.pickle_round_trip")
def test_pickling_is_still_checked_on_a_declared_random_dataset() -> None:
    class RandomAndUnpicklable(HoldsLambdaTransform, NoisyPoints):
        pass

    report = check(RandomAndUnpicklable(), MapDataset, deterministic=False)
    status, message = _status(report, "map_dataset.pickle_round_trip")
    assert status == "failed"
    assert "pickle.dumps(ds) raised" in message
