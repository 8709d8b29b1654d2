"""How a baseline file applies to the targets of a run, for the pytest plugin and the CLI alike.

Each entry of a target's table becomes an expected failure of that target, unless its reason is still
``TODO``: such an entry fails the run (the check's test, under pytest) until someone writes the reason,
so that a written baseline cannot silently bless a bug. An entry whose check passes (a strict xpass), or
that names no check of the target, or a table that names no target of the run, fails by name: a stale
entry could hide a regression. The target's own declarations in code win over the file's.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torchcontract.conformance._report.baseline import TODO, Baseline, quote
from torchcontract.conformance._report.outcomes import Policy, Problem, outcome

if TYPE_CHECKING:
    from torchcontract.conformance._core.target import Target
    from torchcontract.conformance._results import Report, RunReport

__all__ = [
    "BaselineUse",
    "expected_failure_key",
    "plan_baseline",
    "todo_message",
    "unknown_tables",
    "written_baseline",
]


def expected_failure_key(keys: Collection[str], check_id: str, dtype: str | None = None) -> str | None:
    """The key among ``keys`` that declares ``check_id`` (in ``dtype``) an expected failure, as
    ``Target.expected_failure`` reads them: ``check_id[dtype]`` for that dtype, else ``check_id``."""
    if dtype is not None and f"{check_id}[{dtype}]" in keys:
        return f"{check_id}[{dtype}]"
    return check_id if check_id in keys else None


def todo_message(source: str, target: str, key: str) -> str:
    return (
        f"baseline {source}: [{quote(target)}] {quote(key)} = {quote(TODO)}: write why the check fails in "
        "place of TODO (or fix the object and remove the entry); a baseline entry without a reason "
        "fails the run"
    )


@dataclass(frozen=True)
class BaselineUse:
    """What a baseline file's table changed of one target. Plain data, so that a pytest-xdist worker
    can send it to the controller, which judges the run.

    ``expected``: every expected-failure key of the planned target (the code's and the file's);
    ``from_file``: those that came from the file only; ``todo``: the file's entries whose reason is
    still TODO (left out of the expected failures: their checks fail as they are).
    """

    source: str
    target: str
    expected: frozenset[str]
    from_file: frozenset[str]
    todo: frozenset[str]

    def todo_for(self, check_id: str, dtype: str | None = None) -> str | None:
        """The message that fails ``check_id`` (in ``dtype``) while its entry reads TODO, or None."""
        key = expected_failure_key(self.todo, check_id, dtype)
        return None if key is None else todo_message(self.source, self.target, key)

    def owns(self, check_id: str, dtype: str | None = None) -> bool:
        """Whether the expected failure of ``check_id`` (in ``dtype``) is the file's: it fails when it
        passes, whatever pytest's ``xfail_strict``."""
        return expected_failure_key(self.expected, check_id, dtype) in self.from_file

    def problems(self, report: Report) -> list[Problem]:
        """The entries that fail ``report``'s target: those still TODO whose checks ran, those whose
        checks pass now, and those that name no check of it."""
        where = f"baseline {self.source}: [{quote(self.target)}]"
        ran = {result.label for result in report.results} | {result.check_id for result in report.results}
        found = [
            Problem(
                f"baseline entry {key!r} is still TODO",
                todo_message(self.source, self.target, key),
                "TODO",
            )
            for key in sorted(self.todo & ran)
        ]
        for result in report.results:
            key = expected_failure_key(self.expected, result.check_id, result.dtype)
            if result.status == "xpassed" and key in self.from_file:
                found.append(
                    Problem(
                        f"baseline entry {key!r} passes now",
                        f"{where} {quote(key or '')} passes now; remove the entry",
                        "XPASS",
                    )
                )
        found.extend(
            Problem(
                f"baseline entry {stale!r} matches no check",
                f"{where} {quote(stale)} matches no check of {report.protocol}; remove or rename it so it "
                "cannot hide a regression",
                "STALE",
            )
            for stale in report.stale_expected_failures
            if stale in self.from_file
        )
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "expected": sorted(self.expected),
            "from_file": sorted(self.from_file),
            "todo": sorted(self.todo),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BaselineUse:
        return cls(
            source=data["source"],
            target=data["target"],
            expected=frozenset(data["expected"]),
            from_file=frozenset(data["from_file"]),
            todo=frozenset(data["todo"]),
        )


def plan_baseline(target: Target, baseline: Baseline, source: str) -> tuple[Target, BaselineUse | None]:
    """``target`` with its table of ``baseline`` as expected failures (a new Target; the user's is
    left as it is), and what the table changed (None when the baseline has no table for it)."""
    entries = baseline.get(target.name)
    if not entries:
        return target, None
    declared = target.expected_failures
    # replace() validates the keys as the code's are, mapping a renamed check's old id to its current one.
    merged = target.replace(expected_failures={**entries, **declared})
    known = target.known_check_ids
    todo = frozenset(
        key
        for key, reason in merged.expected_failures.items()
        if key not in declared and key in known and reason.strip() == TODO
    )
    planned = (
        target.replace(expected_failures={k: r for k, r in merged.expected_failures.items() if k not in todo})
        if todo
        else merged
    )
    expected = frozenset(planned.expected_failures)
    use = BaselineUse(source, target.name, expected, expected - frozenset(declared), todo)
    return planned, use


def unknown_tables(baseline: Baseline, targets: Iterable[str], source: str) -> list[Problem]:
    """The tables of ``baseline`` that name none of ``targets``: a renamed target would otherwise leave
    its known failures silently unused."""
    names = set(targets)
    return [
        Problem(
            f"baseline table [{quote(name)}] names no target",
            f"baseline {source}: table [{quote(name)}] names no target of this run; remove or rename it so "
            "it cannot hide a regression",
            "STALE",
        )
        for name in baseline
        if name not in names
    ]


def written_baseline(run: RunReport, current: Baseline, policy: Policy) -> Baseline:
    """What ``--write-baseline`` writes for ``run``: each check that fails the run, with the reason TODO,
    and each entry of the baseline in use (``current``) whose check still fails, with its reason. A
    per-dtype result's entry names its dtype (``check_id[float64]``) unless the baseline in use has one
    for every dtype."""
    written: Baseline = {}
    for report in run.reports:
        known = current.get(report.target, {})
        entries: dict[str, str] = {}
        for result in report.results:
            key = result.label if result.label in known or result.check_id not in known else result.check_id
            fails = result.status == "failed" and outcome(result, policy) == "failed"
            if fails or (result.status in ("failed", "xfailed") and key in known):
                entries[key] = known.get(key, TODO)
        if entries:
            written.setdefault(report.target, {}).update(entries)
    return written
