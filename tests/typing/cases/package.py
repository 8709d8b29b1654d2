"""The package's own names, as type checkers see them.

``torchcontract.conformance`` imports its names on first use and ``torchcontract.__version__`` is read
on first use (PEP 562 ``__getattr__``), but type checkers see real imports and declarations: each name
has its type, and a misspelt one is an error, not ``Any``.
"""

from collections.abc import Mapping

from typing_extensions import assert_type

import torchcontract
import torchcontract.conformance as conformance
from torchcontract.conformance import CHECKS, Check, Report, Target, check
from torchcontract.protocols import MapDataset

assert_type(torchcontract.__version__, str)
assert_type(CHECKS, Mapping[str, Check])


def _names() -> None:
    assert_type(check([1, 2], MapDataset), Report)
    assert_type(conformance.CHECKS, Mapping[str, Check])
    assert_type(Target([1, 2], MapDataset), Target)


def _misspelt() -> object:
    from torchcontract.conformance import chekc  # type: ignore[attr-defined]

    conformance.chekc  # type: ignore[attr-defined]
    torchcontract.__verison__  # type: ignore[attr-defined]
    return chekc
