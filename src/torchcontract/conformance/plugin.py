"""pytest plugin for torchcontract (registered through the ``pytest11`` entry point).

It expands tests decorated with :func:`~torchcontract.conformance.parametrize_with_checks` into one
test per (target, check[, device]), adds the ``--conformance-*`` options, prints a per-target summary
and writes the JSON report. Under pytest-xdist each worker sends its results to the controller, which
writes the report once, with every result exactly once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import sys
from typing import TYPE_CHECKING, Any

import pytest

# Only light modules here: pytest imports this plugin at every start, in every project where
# torchcontract is installed. The engine (and NumPy) are imported once a test uses
# parametrize_with_checks (pytest_generate_tests), as Hypothesis's plugin does.
from torchcontract.conformance._core.arguments import (
    DEFAULT_TIME_BUDGET_S,
    devices_argument,
    launched,
    readable_file,
    spanning_processes_limit_s,
    time_budget_argument,
    world_size_argument,
    writable_file,
)
from torchcontract.conformance._pytest_shared import ACTIVE, MARK, ExpectedCheckFailure

if TYPE_CHECKING:
    from collections.abc import Callable

    from torchcontract.conformance._core.registry import Check
    from torchcontract.conformance._core.target import Target
    from torchcontract.conformance._parametrize import CheckCase
    from torchcontract.conformance._results import CheckResult, Report, RunReport

_RESULTS = pytest.StashKey["_Results"]()
_WORKER_OUTPUT_KEY = "torchcontract_results"


@dataclasses.dataclass
class _TargetResults:
    """One target's report as its tests run."""

    device: str
    options: dict[str, Any]
    results: list[CheckResult] = dataclasses.field(default_factory=list)
    stale: list[str] = dataclasses.field(default_factory=list)


class _Results:
    """(target name, protocol) -> its results, in the order the tests ran; built into the run's
    :class:`RunReport` (the layout of every torchcontract report) at the end."""

    def __init__(self) -> None:
        self.targets: dict[tuple[str, str], _TargetResults] = {}
        # Under pytest-xdist, the workers' versions (torch may be imported there only).
        self.worker_environments: list[dict[str, str | None]] = []

    def declare(self, target: Target, device: str) -> _TargetResults:
        """``target``'s entry: its device-independent checks run on ``device``."""
        key = (target.name, target.protocol.__name__)
        entry = self.targets.setdefault(key, _TargetResults(device, target.options.changed()))
        entry.stale.extend(s for s in target.stale_expected_failures if s not in entry.stale)
        return entry

    def record(self, target: Target, result: CheckResult) -> None:
        entry = self.targets.get((target.name, target.protocol.__name__))
        if entry is None:  # a target the test body checks itself
            entry = self.declare(target, result.device or "cpu")
        entry.results.append(result)

    def merge(self, data: dict[str, Any]) -> None:
        """Add a pytest-xdist worker's run report (:meth:`RunReport.to_dict`)."""
        from torchcontract.conformance._results import RunReport

        run = RunReport.from_dict(data)
        self.worker_environments.append(run.environment)
        for report in run.reports:
            key = (report.target, report.protocol)
            entry = self.targets.setdefault(key, _TargetResults(report.device, report.options))
            entry.results.extend(report.results)
            entry.stale.extend(s for s in report.stale_expected_failures if s not in entry.stale)

    def run_report(self) -> RunReport:
        """The targets that have results (or stale expected failures), in the order they were
        generated."""
        # Imported here: its dataclasses take milliseconds to build, at every pytest start otherwise.
        from torchcontract.conformance._results import Report, RunReport, environment

        versions = environment()
        for worker in self.worker_environments:
            versions.update({key: value for key, value in worker.items() if versions.get(key) is None})
        reports = tuple(
            Report(
                target=name,
                protocol=protocol,
                device=entry.device,
                results=tuple(entry.results),
                stale_expected_failures=tuple(entry.stale),
                options=entry.options,
            )
            for (name, protocol), entry in self.targets.items()
            if entry.results or entry.stale
        )
        return RunReport(reports, versions)


def _idle(report: Report) -> bool:
    """Every check of the target that ran was skipped: nothing about it was verified."""
    return bool(report.results) and all(result.status == "skipped" for result in report.results)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchcontract", "torchcontract conformance checks")
    # Every option is also an ini key of the same name with underscores (pytest.ini, pyproject.toml's
    # [tool.pytest.ini_options]); the command line wins. Values are validated at parse time.
    options: list[tuple[str, str, Any, str]] = [
        ("report", "PATH", writable_file, "write a JSON report of every (target, check) result to PATH"),
        (
            "devices",
            "LIST",
            devices_argument,
            "comma-separated devices for device-dependent checks (default: cpu, plus cuda when available)",
        ),
        (
            "world-size",
            "N",
            world_size_argument,
            "turn on the distributed checks with N ranks (off by default)",
        ),
        (
            "time-budget",
            "SECONDS",
            time_budget_argument,
            f"seconds each check may take before it fails as hung (default {DEFAULT_TIME_BUDGET_S:g})",
        ),
        (
            "summary-md",
            "PATH",
            writable_file,
            "write a Markdown summary (a table per target) to PATH, e.g. $GITHUB_STEP_SUMMARY",
        ),
        (
            "baseline",
            "PATH",
            readable_file,
            'known failures in a TOML file: a [target] table of "check.id" = "reason" per target',
        ),
        (
            "write-baseline",
            "PATH",
            writable_file,
            "write this run's failed checks to a baseline file at PATH, with the reason TODO",
        ),
    ]
    for name, metavar, parse, what in options:
        group.addoption(f"--conformance-{name}", metavar=metavar, type=parse, default=None, help=what)
        key = f"conformance_{name.replace('-', '_')}"
        parser.addini(key, help=f"{what} (as --conformance-{name})", default=None)
    flags = [
        (
            "isolate",
            (
                "run each target's checks in a child process: a crash or a GIL-holding hang of the "
                "object fails a check instead of ending the run"
            ),
        ),
        ("strict", "failed (or unverified) recommended checks fail their tests too, not only warn"),
        (
            "allow-empty",
            "let a deliberately narrowed run pass when a target's every selected check is skipped",
        ),
    ]
    for name, what in flags:
        key = f"conformance_{name.replace('-', '_')}"
        group.addoption(
            f"--conformance-{name}", action="store_true", default=None, help=f"{what} (ini {key})"
        )
        parser.addini(key, type="bool", default=False, help=f"{what} (as --conformance-{name})")


# Markers of the generated tests, so that `-m "not conformance_workers"` deselects a family.
FAMILY_MARKERS = {
    "conformance": "a test generated by parametrize_with_checks",
    "conformance_workers": "a conformance check that starts worker processes",
    "conformance_distributed": "a conformance check under a process group or across ranks",
    "conformance_cuda": "a conformance check on a CUDA device",
    "conformance_slow": "a conformance check that starts processes (workers, ranks): seconds each",
}


def _family_markers(spec: Check, device: str) -> list[str]:
    names = ["conformance"]
    if "workers" in spec.needs:
        names.append("conformance_workers")
    # The clauses across ranks: a loader's need a process group, a sampler's only world_size.
    if {"distributed", "world_size"} & spec.needs:
        names.append("conformance_distributed")
    if "cuda" in spec.needs or device.startswith("cuda"):
        names.append("conformance_cuda")
    if {"conformance_workers", "conformance_distributed"} & set(names):
        names.append("conformance_slow")
    return names


_SETTINGS = pytest.StashKey["_Settings"]()


@dataclasses.dataclass(frozen=True)
class _Settings:
    """The plugin's options, from the command line or else the ini file, validated once."""

    report: str | None
    devices: list[str] | None
    world_size: int | None
    time_budget_s: float
    isolate: bool
    strict: bool = False
    allow_empty: bool = False
    summary_md: str | None = None
    baseline: str | None = None
    write_baseline: str | None = None


def _resolved(config: pytest.Config, name: str, parse: Any) -> Any:
    """``--conformance-<name>`` if given, else the ini key ``conformance_<name>`` parsed like it."""
    import argparse

    value = config.getoption(f"--conformance-{name.replace('_', '-')}")
    if value is not None:
        return value
    raw = config.getini(f"conformance_{name}")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        return parse(str(raw).strip())
    except argparse.ArgumentTypeError as error:
        raise pytest.UsageError(f"ini key conformance_{name} = {raw!r}: {error}") from None


def _flag(config: pytest.Config, name: str) -> bool:
    return bool(
        config.getoption(f"--conformance-{name.replace('_', '-')}") or config.getini(f"conformance_{name}")
    )


def _settings(config: pytest.Config) -> _Settings:
    return config.stash[_SETTINGS]


def _installed_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The versions and settings a conformance run depends on, in pytest's header (the installed
    versions: reading them imports nothing)."""
    settings = config.stash.get(_SETTINGS, None)
    if settings is None:
        return []
    shown = {key: value for key, value in dataclasses.asdict(settings).items() if value is not None}
    versions = {name: _installed_version(name) for name in ("torchcontract", "torch", "numpy")}
    return [
        f"torchcontract {versions['torchcontract']}, torch {versions['torch']}, numpy {versions['numpy']}",
        "torchcontract settings: " + ", ".join(f"{key}={value}" for key, value in shown.items()),
    ]


_BASELINE = pytest.StashKey[dict[str, dict[str, str]]]()


def pytest_unconfigure(config: pytest.Config) -> None:
    if config in ACTIVE:
        ACTIVE.remove(config)
    group = config.stash.get(_LAUNCHED_GROUP, None)
    if group is not None:  # the session ended early (an interrupt, a usage error): leave the group
        config.stash[_LAUNCHED_GROUP] = None
        group.close()


# Under torchrun (``torchrun --nproc-per-node N -m pytest``): the process group this rank joined for
# the session, closed (a final barrier, then destroyed) when the session finishes.
_LAUNCHED_GROUP = pytest.StashKey["contextlib.ExitStack | None"]()
_LAUNCHED_RUN = pytest.StashKey[Any]()


def _join_launched_group(config: pytest.Config, time_budget_s: float) -> None:
    """Under torchrun, every rank runs the same session: the distributed clauses run collectively on
    one process group (gloo, on the launcher's address), joined once, at the first of them, unless
    the session already has one (a fixture of the user's)."""
    if config.stash.get(_LAUNCHED_GROUP, None) is not None:
        return
    if getattr(config.option, "numprocesses", None):
        raise pytest.UsageError(
            "torchcontract: under torchrun every rank runs the distributed clauses together, in the same "
            "order: run pytest without -n (pytest-xdist) there"
        )
    from torchcontract.conformance._core import process_group as _process_group

    stack = contextlib.ExitStack()
    config.stash[_LAUNCHED_RUN] = stack.enter_context(
        _process_group.launcher_group(spanning_processes_limit_s(time_budget_s))
    )
    config.stash[_LAUNCHED_GROUP] = stack


def _leave_launched_group(session: pytest.Session) -> str | None:
    """Close the group with its final barrier; the barrier's failure (a rank missing), or None."""
    stack = session.config.stash.get(_LAUNCHED_GROUP, None)
    if stack is None:
        return None
    session.config.stash[_LAUNCHED_GROUP] = None
    stack.close()
    error: str | None = session.config.stash[_LAUNCHED_RUN].final_barrier_error
    return error


def _rank() -> int:
    """This process's rank under a launcher (0 otherwise): only rank 0 writes the reports."""
    try:
        return int(os.environ.get("RANK", "0")) if launched() else 0
    except ValueError:
        return 0


def pytest_configure(config: pytest.Config) -> None:
    ACTIVE.append(config)
    config.addinivalue_line(
        "markers",
        f"{MARK}(targets): one test per (target, conformance check); "
        "use torchcontract.conformance.parametrize_with_checks",
    )
    for name, what in FAMILY_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {what} (added by torchcontract)")
    if not config.pluginmanager.hasplugin("xdist"):  # xdist registers its own; --strict-markers
        config.addinivalue_line("markers", "xdist_group(name): pytest-xdist's group, for --dist loadgroup")
    config.stash[_RESULTS] = _Results()
    config.stash[_OUTCOMES] = _Outcomes()
    config.pluginmanager.register(_Collector(config.stash[_OUTCOMES]), "torchcontract-outcomes")
    budget = _resolved(config, "time_budget", time_budget_argument)
    settings = _Settings(
        report=_resolved(config, "report", writable_file),
        devices=_resolved(config, "devices", devices_argument),
        world_size=_resolved(config, "world_size", world_size_argument),
        time_budget_s=DEFAULT_TIME_BUDGET_S if budget is None else budget,
        isolate=_flag(config, "isolate"),
        strict=_flag(config, "strict"),
        allow_empty=_flag(config, "allow_empty"),
        summary_md=_resolved(config, "summary_md", writable_file),
        baseline=_resolved(config, "baseline", readable_file),
        write_baseline=_resolved(config, "write_baseline", writable_file),
    )
    config.stash[_SETTINGS] = settings
    if settings.baseline is not None:
        from torchcontract.conformance._baseline import BaselineError, read_baseline

        try:
            config.stash[_BASELINE] = read_baseline(settings.baseline)
        except BaselineError as error:
            raise pytest.UsageError(str(error)) from None


def _devices(config: pytest.Config) -> list[str]:
    option = _settings(config).devices
    if option is not None:
        return option
    devices = ["cpu"]
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            devices.append("cuda")
    return devices


_CONFIGURED = pytest.StashKey["dict[int, tuple[Target, Target]]"]()


def _configured(config: pytest.Config, target: Target, world_size: int | None, isolate: bool) -> Target:
    """``target`` with the command line's world size and isolation, as a new Target (the user's own
    is never changed): one per target for the whole run, so that tests sharing a target share its
    results."""
    changes: dict[str, object] = {}
    if world_size is not None and target.options.world_size is None:
        changes["world_size"] = world_size
    if isolate and not target.options.isolate:
        changes["isolate"] = True
    if not changes:
        return target
    # Keyed by id(): Targets compare by identity; the original is kept so that its id stays its own.
    configured = config.stash.setdefault(_CONFIGURED, {})
    if id(target) not in configured:
        configured[id(target)] = (target, target.replace(**changes))
    return configured[id(target)][1]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    mark = metafunc.definition.get_closest_marker(MARK)
    if mark is None:
        return
    missing = {"target", "check"} - set(metafunc.fixturenames)
    if missing:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: a test decorated with parametrize_with_checks must take "
            f"the arguments 'target' and 'check' (missing: {', '.join(sorted(missing))})"
        )
    # The engine, from here on only.
    from torchcontract.conformance._baseline import TODO, todo_message, with_expected_failures
    from torchcontract.conformance._parametrize import CheckCase, StaleExpectedFailure

    config = metafunc.config
    settings = _settings(config)
    results = config.stash[_RESULTS]
    baseline = config.stash.get(_BASELINE, {})
    targets: tuple[Target, ...] = mark.args[0]
    targets = tuple(_configured(config, target, settings.world_size, settings.isolate) for target in targets)
    needs_devices = any(spec.per_device for target in targets for spec in target.checks)
    devices = _devices(config) if needs_devices else ["cpu"]
    params = []
    for declared in targets:
        config.stash[_OUTCOMES].known_targets.add(declared.name)
        entries = baseline.get(declared.name, {})
        todo = {check_id for check_id, reason in entries.items() if reason.strip() == TODO}
        known = {spec.check_id for spec in declared.checks}
        known.update(  # an entry for one dtype of a per-dtype check: "check_id[float64]"
            f"{spec.check_id}[{dtype}]"
            for spec in declared.checks
            for dtype in declared.dtypes_of(spec)
            if dtype
        )
        # Entries of the baseline become expected failures; those still TODO fail instead (unless they
        # name no check: then they are stale, and fail as such).
        blessed = {c: r for c, r in entries.items() if c not in todo or c not in known}
        from_baseline = set(blessed) - set(declared.expected_failures)
        target = with_expected_failures(declared, blessed) if blessed else declared
        cases = []
        for spec in target.checks:
            for device, dtype in (
                (device, dtype)
                for device in (devices if spec.per_device else devices[:1])
                for dtype in target.dtypes_of(spec)
            ):
                label = spec.check_id if dtype is None else f"{spec.check_id}[{dtype}]"
                todo_key = label if label in todo else spec.check_id
                case = CheckCase(
                    target,
                    spec.check_id,
                    device,
                    settings.time_budget_s,
                    recorder=results.record,
                    strict=settings.strict,
                    todo=(
                        todo_message(settings.baseline or "", target.name, todo_key)
                        if todo_key in todo and todo_key not in declared.expected_failures
                        else None
                    ),
                    dtype=dtype,
                )
                test_id = (
                    f"{target.name}-{spec.check_id}"
                    + (f"-{device}" if spec.per_device else "")
                    + (f"-{dtype}" if dtype is not None else "")
                )
                marks = [getattr(pytest.mark, name) for name in _family_markers(spec, device)]
                # With pytest-xdist's --dist loadgroup a target's tests stay on one worker, so that
                # the work they share (one recorded epoch, one process-group run) is done once.
                marks.append(pytest.mark.xdist_group(name=f"torchcontract:{target.name}"))
                reason = target.expected_failure(spec.check_id, dtype)
                if reason is not None:
                    # pytest's own xfail_strict decides whether an xpass of a declaration in code fails;
                    # an entry of a baseline file that passes is stale, and always fails.
                    key = label if label in target.expected_failures else spec.check_id
                    strict = {"strict": True} if key in from_baseline else {}
                    marks.append(pytest.mark.xfail(reason=reason, raises=ExpectedCheckFailure, **strict))
                cases.append(pytest.param(target, case, id=test_id, marks=marks))
        if not cases:
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: target {target.name!r} ({target.protocol.__name__}) "
                "collected zero conformance checks; a conformance run that checks nothing must not pass"
            )
        results.declare(target, devices[0])
        for stale in target.stale_expected_failures:
            stale_id = f"{target.name}-stale_expected_failure-{stale}"
            source = settings.baseline if stale in from_baseline else None
            cases.append(pytest.param(target, StaleExpectedFailure(target, stale, source), id=stale_id))
        params.extend(cases)
    metafunc.parametrize(("target", "check"), params)


def _case(item: pytest.Item) -> Any:
    """The generated test's CheckCase or StaleExpectedFailure, or None for any other test."""
    if item.get_closest_marker(MARK) is None:
        return None
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("check") if callspec is not None else None


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def _case_of(item: pytest.Item) -> CheckCase | None:
    """The generated test's CheckCase, or None (a stale expected failure, any other test)."""
    case = _case(item)
    if case is None:
        return None
    from torchcontract.conformance._parametrize import CheckCase

    return case if isinstance(case, CheckCase) else None


# (id(target), device, dtype) -> [the target, how many of its selected tests have not run yet]
_PENDING = pytest.StashKey["dict[tuple[int, str, str | None], list[Any]]"]()
# (id(target), device) -> the check ids of its selected tests, until its first test runs
_SELECTED = pytest.StashKey["dict[tuple[int, str], set[str]]"]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Count each target's selected tests (after -k/-m deselection), so that its shared work (the
    recorded epochs and their iterators) is released after its last one, as ``Target.run`` does;
    and note which checks are selected, for its first test to start the fresh interpreter."""
    pending: dict[tuple[int, str, str | None], list[Any]] = {}
    selected: dict[tuple[int, str], set[str]] = {}
    for item in items:
        case = _case_of(item)
        if case is not None:
            pending.setdefault((id(case.target), case.device, case.dtype), [case.target, 0])[1] += 1
            selected.setdefault((id(case.target), case.device), set()).add(case.check_id)
    config.stash[_PENDING] = pending
    config.stash[_SELECTED] = selected


def _prestart(config: pytest.Config, case: CheckCase) -> None:
    """At a target's first test: start the fresh interpreter now when one of its selected tests will
    use it, as ``Target.run`` does, so that its start overlaps the tests before. Not in a
    pytest-xdist worker, which runs only some of the tests it collected (and starts it lazily)."""
    selected = config.stash.get(_SELECTED, {}).pop((id(case.target), case.device), None)
    if not selected or hasattr(config, "workerinput"):
        return
    from torchcontract.conformance._core.registry import CHECKS

    session = case.target.session(case.device, case.time_budget_s)
    case.target.prestart_fresh_interpreter(session, [CHECKS[c] for c in sorted(selected) if c in CHECKS])


def pytest_runtest_teardown(item: pytest.Item) -> None:
    case = _case_of(item)
    pending = item.config.stash.get(_PENDING, {})
    entry = pending.get((id(case.target), case.device, case.dtype)) if case else None
    if case is None or entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:  # under pytest-xdist, only where this worker ran every test of the target
        case.target.session(case.device, case.time_budget_s, case.dtype).release_shared_work()


@pytest.hookimpl(trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Run a generated test's check in its setup, so that an internal error of torchcontract is a
    pytest *error* (an error in setup), never a failure blamed on the object. Last, after the
    test's fixtures (a user's autouse seeding applies to the check)."""
    case = _case(item)
    if case is None:
        return
    from torchcontract.conformance._core.registry import CHECKS
    from torchcontract.conformance._parametrize import CheckCase

    target = case.target
    spec = CHECKS.get(case.check_id)
    # What CI reporters (--junitxml) carry for each generated test; "outcome" follows its report.
    item.user_properties.extend(
        [
            ("check_id", case.check_id),
            ("severity", spec.severity if spec is not None else "required"),
            ("protocol", target.protocol.__name__),
            ("target", target.name),
            ("device", getattr(case, "device", "cpu")),
        ]
    )
    if getattr(case, "dtype", None) is not None:  # only the per-dtype tests of a dtype matrix
        item.user_properties.append(("dtype", case.dtype))
    if not isinstance(case, CheckCase):  # a stale expected failure
        item.user_properties.extend(
            [("status", "stale"), ("message", _first_line(target.stale_message(case.check_id)))]
        )
        return
    if spec is not None and "distributed" in spec.needs and launched():
        _join_launched_group(item.config, _settings(item.config).time_budget_s)
    _prestart(item.config, case)
    result = case.run()
    item.user_properties.extend([("status", result.status), ("message", _first_line(result.message))])
    if result.status == "error":
        pytest.fail(f"{result.check_id}: {result.message}", pytrace=False)


def _outcome(report: pytest.TestReport) -> str | None:
    """pytest's outcome of a generated test, from its setup or call report (None: not decided yet)."""
    xfail = hasattr(report, "wasxfail")
    if report.when == "setup":
        if report.failed:
            return "error"
        return ("xfailed" if xfail else "skipped") if report.skipped else None
    if report.when == "call":
        if report.failed:
            return "failed"
        if report.skipped:
            return "xfailed" if xfail else "skipped"
        return "xpassed" if xfail else "passed"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if _case(item) is not None and report.when in ("setup", "call"):
        outcome = _outcome(report)
        if outcome is not None and not any(name == "outcome" for name, _ in item.user_properties):
            item.user_properties.append(("outcome", outcome))
            report.user_properties.append(("outcome", outcome))
    return report


_OUTCOMES = pytest.StashKey["_Outcomes"]()
_PROPERTIES = ("check_id", "severity", "protocol", "target", "device", "outcome")
# pytest's outcomes of the generated tests, in the order of pytest's summary line.
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


class _Outcomes:
    """pytest's outcome of each generated test, read from its reports (so also on pytest-xdist's
    controller, where the reports of the workers arrive): the per-target counts agree with pytest."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.known_targets: set[str] = set()

    def add(self, properties: dict[str, str]) -> None:
        self.rows.setdefault((properties["target"], properties["protocol"]), []).append(properties)


class _Collector:
    """Registered per pytest configuration: records the outcome of each generated test from its
    teardown report, which carries every property of the test."""

    def __init__(self, outcomes: _Outcomes) -> None:
        self.outcomes = outcomes

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        properties = {name: str(value) for name, value in report.user_properties}
        if all(name in properties for name in _PROPERTIES):
            self.outcomes.add(properties)


def _warned(row: dict[str, str]) -> bool:
    return row["outcome"] == "passed" and row.get("status") in ("failed", "unverified")


def _target_line(rows: list[dict[str, str]]) -> str:
    from torchcontract.conformance._results import STATUSES

    counts = {outcome: sum(row["outcome"] == outcome for row in rows) for outcome in OUTCOMES}
    shown = ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n) or "no results"
    # The checks' own statuses where they say more than pytest's outcome (a hang, an unverified
    # clause), and the recommended failures that passed with a warning (counted once).
    statuses = {
        status: sum(row.get("status") == status and not _warned(row) for row in rows) for status in STATUSES
    }
    notable = {
        s: n for s, n in statuses.items() if n and s not in ("passed", "skipped", "xfailed", "xpassed")
    }
    warned = sum(_warned(row) for row in rows)
    details = [f"{n} {status}" for status, n in notable.items()]
    if warned:
        details.append(f"{warned} recommended with a warning")
    return shown + (f"; checks: {', '.join(details)}" if details else "")


def _unknown_baseline_targets(config: pytest.Config) -> list[str]:
    baseline = config.stash.get(_BASELINE, {})
    return [name for name in baseline if name not in config.stash[_OUTCOMES].known_targets]


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    worker_output = getattr(config, "workeroutput", None)
    if worker_output is None and not config.stash[_RESULTS].targets and not _writes_files(config):
        # No conformance test ran (the common case in a project that has torchcontract installed):
        # nothing to build, which would cost every pytest run milliseconds.
        if _unknown_baseline_targets(config) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return
    run = config.stash[_RESULTS].run_report()
    if worker_output is not None:  # an xdist worker: the controller writes the report
        worker_output[_WORKER_OUTPUT_KEY] = run.to_json(indent=None)
        worker_output[_WORKER_TARGETS_KEY] = json.dumps(sorted(config.stash[_OUTCOMES].known_targets))
        return
    settings = _settings(config)
    idle = any(_idle(report) for report in run.reports) and not settings.allow_empty
    failing = idle or _unknown_baseline_targets(config)
    missing = _leave_launched_group(session)
    if missing is not None:
        sys.stderr.write(f"torchcontract: the ranks' final barrier failed: {missing}\n")
    if (failing or missing is not None) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if _rank() != 0:  # every rank ran the same checks; rank 0 writes what they found
        return
    from torchcontract._files import OutputError

    writes: list[tuple[str | None, Callable[[str], None]]] = [
        (settings.report, run.write),
        (settings.summary_md, lambda path: _write_summary(config, path)),
        (settings.write_baseline, lambda path: _write_baseline(config, path)),
    ]
    not_written = config.stash.setdefault(_NOT_WRITTEN, {})
    for path, write in writes:
        if not path:
            continue
        try:
            write(path)
        except OutputError as error:  # each file whole or not at all; the others are still written
            not_written[path] = str(error)
    if not_written:
        # The run's results stand (and are shown); what it was asked to write is not there: a usage
        # error, as for a path refused at the start, naming each file.
        for problem in not_written.values():
            sys.stderr.write(f"torchcontract: error: {problem}\n")
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


_WORKER_TARGETS_KEY = "torchcontract_targets"
# The files that could not be written at the end of the run: path -> why.
_NOT_WRITTEN = pytest.StashKey[dict[str, str]]()


def _writes_files(config: pytest.Config) -> bool:
    settings = _settings(config)
    return bool(settings.report or settings.summary_md or settings.write_baseline)


def _write_summary(config: pytest.Config, path: str) -> None:
    from torchcontract.conformance._markdown import Row, TargetSummary, render

    summaries = []
    for (name, protocol), rows in config.stash[_OUTCOMES].rows.items():
        failed = any(row["outcome"] in ("failed", "error") for row in rows)
        summary = TargetSummary(name, protocol, "FAILED" if failed else "passed")
        for row in rows:
            outcome = row["outcome"] + (" (warning)" if _warned(row) else "")
            check = row["check_id"] + (f"[{row['dtype']}]" if "dtype" in row else "")
            summary.rows.append(Row(check, row["severity"], outcome, row.get("message", "")))
        summaries.append(summary)
    text = render(summaries, OUTCOMES, "torchcontract conformance")
    from torchcontract._files import write_atomically

    # Appending: $GITHUB_STEP_SUMMARY is one file for a whole job. The old text and this run's replace
    # the file in one step, so that a full disk cannot leave a cut table in it.
    write_atomically(path, text, append=True)


def _write_baseline(config: pytest.Config, path: str) -> None:
    """The run's failed checks, with reason TODO; the entries of the baseline in use that still fail
    keep their reasons."""
    from torchcontract.conformance._baseline import TODO, write_baseline

    current = config.stash.get(_BASELINE, {})
    written: dict[str, dict[str, str]] = {}
    for (name, _protocol), rows in config.stash[_OUTCOMES].rows.items():
        entries = written.setdefault(name, {})
        for row in rows:
            # A per-dtype test's entry names its dtype, "check_id[float64]" (unless the baseline in use
            # has one for every dtype).
            key = row["check_id"] + (f"[{row['dtype']}]" if "dtype" in row else "")
            key = (
                row["check_id"]
                if key not in current.get(name, {}) and row["check_id"] in current.get(name, {})
                else key
            )
            known = current.get(name, {}).get(key)
            if row.get("status") in ("failed", "xfailed") and (row["outcome"] == "failed" or known):
                entries[key] = known or TODO
        if not entries:
            del written[name]
    write_baseline(path, written)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: merge a finished worker's results into the controller's."""
    output = getattr(node, "workeroutput", {})
    if output.get(_WORKER_OUTPUT_KEY):
        node.config.stash[_RESULTS].merge(json.loads(output[_WORKER_OUTPUT_KEY]))
    if output.get(_WORKER_TARGETS_KEY):
        node.config.stash[_OUTCOMES].known_targets.update(json.loads(output[_WORKER_TARGETS_KEY]))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, None)
    outcomes = config.stash.get(_OUTCOMES, None)
    if results is None or outcomes is None or not (outcomes.rows or results.targets):
        return  # nothing to show (and nothing to build)
    run = results.run_report()
    if not (outcomes.rows or run.reports):
        return
    settings = _settings(config)
    terminalreporter.section("torchcontract conformance")
    for (name, protocol), rows in outcomes.rows.items():
        terminalreporter.write_line(f"{name} ({protocol}): {_target_line(rows)}")
    for report in run.reports:
        for check_id in report.stale_expected_failures:
            terminalreporter.write_line(
                f"{report.target} ({report.protocol}): stale expected failure {check_id!r} matches no check"
            )
    if not settings.allow_empty:
        for report in filter(_idle, run.reports):
            name, protocol = report.target, report.protocol
            terminalreporter.write_line(
                f"{name} ({protocol}): ran zero conformance checks (every selected check was skipped); "
                "a conformance run that verifies nothing fails (--conformance-allow-empty lets a "
                "deliberately narrowed run pass)",
                red=True,
            )
    for name in _unknown_baseline_targets(config):
        terminalreporter.write_line(
            f"baseline {settings.baseline}: table [{name!r}] names no target of this run; remove or "
            "rename it so it cannot hide a regression",
            red=True,
        )
    not_written = config.stash.get(_NOT_WRITTEN, {})
    for label, path in (
        ()
        if _rank() != 0
        else (  # rank 0 alone writes them (torchrun)
            ("JSON report", settings.report),
            ("Markdown summary", settings.summary_md),
            ("baseline written", settings.write_baseline),
        )
    ):
        if path and path in not_written:
            terminalreporter.write_line(f"{label}: not written ({not_written[path]})", red=True)
        elif path:
            terminalreporter.write_line(f"{label}: {path}")
