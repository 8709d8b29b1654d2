"""An infinite sampler is checked one epoch deep."""

from __future__ import annotations

import pytest

from torchcontract.conformance import check
from torchcontract.protocols import Sampler

from ..correct import EndlessShuffles
from ..reports import status as _status

# -- an infinite sampler repeats indices across epochs ------------------------------------------------


@pytest.mark.clause("sampler.each_index_once")
def test_an_endless_sampler_of_shuffled_epochs_is_checked_one_epoch_deep() -> None:
    report = check(EndlessShuffles(10), Sampler, infinite=True, data_source_len=10)
    status, message = _status(report, "sampler.each_index_once")
    assert (status, message) == (
        "passed",
        "infinite sampler: checked its first 10 indices, one epoch's worth",
    )
    unknown = check(EndlessShuffles(10), Sampler, infinite=True)
    assert _status(unknown, "sampler.each_index_once")[0] == "skipped"
