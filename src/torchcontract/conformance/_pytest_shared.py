"""What the pytest plugin and ``parametrize_with_checks`` share: the mark's name, the exception a
generated test fails with, and the configurations the plugin is active in.

A leaf, so that neither imports the other for them: the plugin imports :mod:`._parametrize` in its
hooks only (it stays cheap at every pytest start), and :mod:`._parametrize` needs these at import.
Light: it imports pytest alone.
"""

from __future__ import annotations

import pytest

__all__ = ["ACTIVE", "MARK", "ExpectedCheckFailure"]

MARK = "torchcontract_checks"

# The configurations this plugin is active in: parametrize_with_checks, imported by pytest's
# collection while none is, says the plugin is disabled instead of leaving every generated test to
# error on a missing 'target' fixture.
ACTIVE: list[pytest.Config] = []


class ExpectedCheckFailure(pytest.fail.Exception):  # type: ignore[misc,name-defined]
    """How a generated test fails when its check failed: the only failure a declared expected failure
    turns into an xfail (a check that could not be verified, or an internal error, stays what it is)."""
