"""What the pytest plugin and ``parametrize_with_checks`` share: the mark's name, the exception a
generated test fails with, and where a configuration holds the plugin's state (whether it is active).

A leaf, so that neither imports the other for them: the plugin imports :mod:`._parametrize` in its
hooks only (it stays cheap at every pytest start), and :mod:`._parametrize` needs these at import.
Light: it imports pytest alone.
"""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["MARK", "RUN", "ExpectedCheckFailure", "active_in"]

MARK = "torchcontract_checks"

# The plugin's state in a configuration: the ConformanceRun that its pytest_configure registers.
RUN = pytest.StashKey[Any]()


def active_in(config: pytest.Config) -> bool:
    """Whether the plugin is active in ``config`` (not disabled with ``-p no:torchcontract``):
    parametrize_with_checks, imported by pytest's collection where it is not, says so instead of leaving
    every generated test to error on a missing 'target' fixture."""
    return RUN in config.stash


class ExpectedCheckFailure(pytest.fail.Exception):  # type: ignore[misc,name-defined]
    """How a generated test fails when its check failed: the only failure a declared expected failure
    turns into an xfail (a check that could not be verified, or an internal error, stays what it is)."""
