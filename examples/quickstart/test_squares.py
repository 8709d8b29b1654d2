"""The quick start's conformance test: one pytest test per check of the dataset."""

from squares import Squares

from torchcontract.conformance import Target, parametrize_with_checks
from torchcontract.protocols import MapDataset


@parametrize_with_checks([Target(Squares(10), MapDataset, name="squares")])
def test_conformance(target, check):
    check(target)
