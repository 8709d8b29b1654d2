"""The corpus's options (``--corpus-slice``, ``--corpus-summary``) and its summary."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from . import _support
from ._summary import Summary


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("corpus", "torchcontract's corpus of torch's own objects")
    group.addoption(
        "--corpus-slice",
        choices=("fast", "full"),
        default="full",
        help="full: every object of the corpus (about an hour on 2 cores); fast: the slice CI runs "
        "(a few module_db entries of each family, a few torchvision classifiers, one torch wrapper of each "
        "family, the data objects)",
    )
    group.addoption(
        "--corpus-summary",
        metavar="PATH",
        default=None,
        help="write the run's summary (objects, results, failures by class, time) as JSON to PATH",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Before the test files are imported: they choose their targets at import.
    _support.SLICE = config.getoption("--corpus-slice")
    config.pluginmanager.register(_Collector(config), "torchcontract-corpus-summary")


class _Collector:
    """Each test's results, kept from its reports (on pytest-xdist's controller too, where the workers'
    reports arrive with their user properties), and the summary at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.started = time.monotonic()
        self.rows: dict[str, list[dict[str, str]]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """The rows of the last phase's report that has them."""
        properties = {name: value for name, value in report.user_properties}
        if _support.PROPERTY in properties:
            self.rows[report.nodeid] = json.loads(str(properties[_support.PROPERTY]))
        elif "check_id" in properties and "status" in properties:  # a test of parametrize_with_checks
            self.rows[report.nodeid] = _support.rows_of_plugin_test(
                {name: str(value) for name, value in properties.items()}
            )
        elif report.failed and report.nodeid not in self.rows:
            # A corpus test that failed before it had a report (its object could not be built, say).
            last = str(report.longrepr).strip().splitlines()[-1:] or [""]
            self.rows[report.nodeid] = [
                {
                    "target": report.nodeid,
                    "check": "(the test)",
                    "severity": "required",
                    "status": "error",
                    "message": last[0],
                }
            ]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows:
            return
        summary = Summary(slice=_support.SLICE, seconds=time.monotonic() - self.started)
        for rows in self.rows.values():
            summary.add(rows)
        terminalreporter.section("torchcontract corpus")
        for line in summary.lines():
            terminalreporter.write_line(line)
        path = self.config.getoption("--corpus-summary")
        if path:
            summary.write(path)
            terminalreporter.write_line(f"corpus summary: {path}")
