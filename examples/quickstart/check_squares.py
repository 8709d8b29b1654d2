"""Check the quick start's dataset from a plain script: python check_squares.py"""

from squares import Squares

from torchcontract.conformance import check
from torchcontract.protocols import MapDataset

report = check(Squares(10), MapDataset)
print(report)
