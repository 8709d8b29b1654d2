"""Results: one :class:`CheckResult` per check, gathered in a :class:`Report` per target, and the
reports of one run in a :class:`RunReport`: the one JSON layout that ``check()``'s report, the CLI
(``--json``) and the pytest plugin (``--conformance-report``) write, described by the JSON Schema
``report.schema.json`` (``torchcontract schema`` prints it)."""

from __future__ import annotations

import json
import platform
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

__all__ = [
    "SCHEMA_VERSION",
    "STATUSES",
    "CheckResult",
    "Report",
    "RunReport",
    "Status",
    "count_statuses",
    "environment",
    "report_schema",
]

# passed / failed: the clause holds / is violated. error: torchcontract's own code raised (an internal
# error: nothing is known about the object). unverified: the clause applies but could not be decided
# (the object hung in an earlier check, a prerequisite could not be verified, the time budget ran out).
# skipped: the clause does not apply (or a prerequisite failed, which already fails the run).
Status = Literal["passed", "failed", "error", "unverified", "skipped", "xfailed", "xpassed"]
STATUSES: tuple[Status, ...] = ("passed", "failed", "error", "unverified", "skipped", "xfailed", "xpassed")
# The version of the report's JSON layout; bump it when a field changes meaning or goes away.
# 2: the statuses "error" and "unverified"; "passed" also requires no error and no unverified
# required clause.
# 3: one layout for every report (check()'s, the CLI's, the plugin's): {schema_version, environment,
# passed, counts, targets: [{target, protocol, device, passed, counts, options,
# stale_expected_failures, results}]}; the CLI's "reports" and the per-report environment are gone.
# (Still 3: a result of a per-dtype check of a target with dtypes= has a "dtype" field, which no other
# result has; an addition, so every report without dtypes= is as it was.)
SCHEMA_VERSION = 3


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one target (and device, for device-dependent checks; and dtype,
    ``"float64"``, for a per-dtype check of a target with ``dtypes=``)."""

    check_id: str
    protocol: str
    severity: Literal["required", "recommended"]
    status: Status
    message: str
    duration_s: float
    device: str | None = None
    dtype: str | None = None

    @property
    def label(self) -> str:
        """The check id, with the dtype of a per-dtype result: ``module.x[float64]`` (also the key of an
        expected failure for that dtype only)."""
        return self.check_id if self.dtype is None else f"{self.check_id}[{self.dtype}]"

    @property
    def is_violation(self) -> bool:
        """A failed required check: the object violates a required clause."""
        return self.status == "failed" and self.severity == "required"

    @property
    def blocks_pass(self) -> bool:
        """What makes :attr:`Report.passed` false: a violation, an internal error (of any clause), or
        a required clause that could not be verified."""
        return (
            self.is_violation
            or self.status == "error"
            or (self.status == "unverified" and self.severity == "required")
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["dtype"] is None:  # only the results of a dtype matrix carry one
            del data["dtype"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(**data)


def count_statuses(results: Iterable[CheckResult]) -> dict[str, int]:
    """How many results have each status, every status named (in :data:`STATUSES` order): the one
    place where results are counted, for a target and for a whole run."""
    counter = Counter(result.status for result in results)
    return {status: counter.get(status, 0) for status in STATUSES}


def environment() -> dict[str, str | None]:
    """The versions a report was made with (shown in its JSON, so results can be reproduced)."""
    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    for module in ("numpy", "torch", "torchvision"):
        loaded = sys.modules.get(module)
        versions[module] = getattr(loaded, "__version__", None) if loaded else None
    try:
        from importlib.metadata import version

        versions["torchcontract"] = version("torchcontract")
    except Exception:
        versions["torchcontract"] = None
    return versions


@dataclass(frozen=True)
class Report:
    """Every check's result for one target.

    ``passed`` is true when every required clause that applies was verified and holds: no required
    check failed, none is unverified, and torchcontract had no internal error. Failed recommended
    checks, skips (clauses that do not apply), expected failures and unexpected passes are reported
    but do not change it.
    """

    target: str
    protocol: str
    device: str
    results: tuple[CheckResult, ...]
    stale_expected_failures: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not any(result.blocks_pass for result in self.results)

    @property
    def errors(self) -> tuple[CheckResult, ...]:
        """Internal errors of torchcontract (checks that say nothing about the object)."""
        return tuple(result for result in self.results if result.status == "error")

    @property
    def unverified(self) -> tuple[CheckResult, ...]:
        """Clauses that apply but could not be decided."""
        return tuple(result for result in self.results if result.status == "unverified")

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """Failed checks, required and recommended."""
        return tuple(result for result in self.results if result.status == "failed")

    def counts(self) -> dict[str, int]:
        return count_statuses(self.results)

    def entry(self) -> dict[str, Any]:
        """This report as one entry of a run report's ``targets``."""
        return {
            "target": self.target,
            "protocol": self.protocol,
            "device": self.device,
            "passed": self.passed,
            "counts": self.counts(),
            "options": self.options,
            "stale_expected_failures": list(self.stale_expected_failures),
            "results": [result.to_dict() for result in self.results],
        }

    @classmethod
    def from_entry(cls, data: Mapping[str, Any]) -> Report:
        """The report of one entry of a run report's ``targets`` (its ``passed`` and ``counts`` are
        recomputed from its results)."""
        return cls(
            target=data["target"],
            protocol=data["protocol"],
            device=data["device"],
            results=tuple(CheckResult.from_dict(result) for result in data["results"]),
            stale_expected_failures=tuple(data["stale_expected_failures"]),
            options=dict(data["options"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """The run report of this one target (the layout every torchcontract report has)."""
        return RunReport((self,)).to_dict()

    def to_json(self, indent: int | None = 2) -> str:
        return RunReport((self,)).to_json(indent)

    def __str__(self) -> str:
        """One line per check, with the messages of those that did not pass, under a header with
        :attr:`passed` and the counts (in the words the CLI and the pytest plugin use)."""
        from torchcontract.conformance._report.text import report_block

        return report_block(self)


@dataclass(frozen=True)
class RunReport:
    """The reports of one run (``check()``, ``torchcontract check``/``report``, a pytest session)
    and the versions it ran with: what every JSON report holds, in one layout.

    ``passed`` is true when every report passed; ``counts`` counts the results of all of them.

    >>> import json
    >>> from torchcontract.conformance import check
    >>> from torchcontract.protocols import Sampler
    >>> run = RunReport((check(range(4), Sampler, data_source_len=4),))
    >>> run.passed, run.counts()["failed"]
    (True, 0)
    >>> RunReport.from_dict(json.loads(run.to_json())).passed
    True
    """

    reports: tuple[Report, ...]
    environment: dict[str, str | None] = field(default_factory=lambda: environment())

    @property
    def passed(self) -> bool:
        return all(report.passed for report in self.reports)

    def counts(self) -> dict[str, int]:
        return count_statuses(result for report in self.reports for result in report.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "environment": dict(self.environment),
            "passed": self.passed,
            "counts": self.counts(),
            "targets": [report.entry() for report in self.reports],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=repr)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunReport:
        """The run report that :meth:`to_dict` gave (ValueError for another schema version)."""
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"a torchcontract report of schema version {data.get('schema_version')!r}; expected "
                f"{SCHEMA_VERSION} (this torchcontract's)"
            )
        return cls(
            reports=tuple(Report.from_entry(entry) for entry in data["targets"]),
            environment=dict(data["environment"]),
        )

    def write(self, path: str | Path) -> None:
        """Write the JSON report to ``path``, creating its directory, atomically: a failure (a full
        disk) raises :class:`~torchcontract._files.OutputError` naming the path and
        leaves the old file as it was."""
        from torchcontract._files import write_atomically

        write_atomically(path, self.to_json())


def report_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a run report's JSON (:meth:`RunReport.to_dict`)."""
    text = resources.files("torchcontract.conformance").joinpath("report.schema.json").read_text("utf-8")
    return cast(dict[str, Any], json.loads(text))
