"""pytest plugin for torchcontract (registered through the ``pytest11`` entry point).

It expands tests decorated with :func:`~torchcontract.conformance.parametrize_with_checks` into one
test per (target, check[, device]), adds the ``--conformance-*`` options, prints a per-target summary
and writes the JSON report. Under pytest-xdist each worker sends its results to the controller, which
writes the report once, with every result exactly once.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from typing import Any

import pytest

from torchcontract.conformance._engine import (
    DEFAULT_TIME_BUDGET_S,
    Target,
    time_budget_argument,
    validate_device,
)
from torchcontract.conformance._pytest import MARK, CheckCase, StaleExpectedFailure
from torchcontract.conformance._results import CheckResult, Report, RunReport, environment
from torchcontract.conformance.cli import output_file_problem

_RESULTS = pytest.StashKey["_Results"]()
_WORKER_OUTPUT_KEY = "torchcontract_results"


class ExpectedCheckFailure(pytest.fail.Exception):  # type: ignore[misc,name-defined]
    """How a generated test fails when its check failed: the only failure a declared expected failure
    turns into an xfail (a check that could not be verified, or an internal error, stays what it is)."""


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
    group.addoption(
        "--conformance-report",
        metavar="PATH",
        default=None,
        help="write a JSON report of every (target, check) result to PATH",
    )
    group.addoption(
        "--conformance-devices",
        metavar="LIST",
        type=_devices_argument,
        default=None,
        help="comma-separated devices for device-dependent checks (default: cpu, plus cuda when available)",
    )
    group.addoption(
        "--conformance-world-size",
        metavar="N",
        type=int,
        default=None,
        help="turn on the distributed checks with N ranks (off by default)",
    )
    group.addoption(
        "--conformance-isolate",
        action="store_true",
        default=None,
        help="run each target's checks in a child process: a crash or a GIL-holding hang of the object "
        "fails a check instead of ending the run (also the ini key conformance_isolate)",
    )
    parser.addini(
        "conformance_isolate",
        type="bool",
        default=False,
        help="run each target's checks in a child process (as --conformance-isolate)",
    )
    group.addoption(
        "--conformance-time-budget",
        metavar="SECONDS",
        type=time_budget_argument,
        default=None,
        help=f"seconds each check may take before it fails as hung (default {DEFAULT_TIME_BUDGET_S:g})",
    )
    # Every option also as an ini key of the same name (pytest.ini, pyproject.toml's
    # [tool.pytest.ini_options]); the command line wins.
    for key, what in (
        ("conformance_report", "write a JSON report of every result to this path"),
        ("conformance_devices", "comma-separated devices for device-dependent checks"),
        ("conformance_world_size", "turn on the distributed checks with this many ranks"),
        ("conformance_time_budget", "seconds each check may take"),
    ):
        parser.addini(key, help=f"{what} (as --{key.replace('_', '-')})", default=None)


def _devices_argument(text: str) -> list[str]:
    """``--conformance-devices``: a comma-separated list of device names, checked at parse time."""
    import argparse

    devices = [device.strip() for device in text.split(",") if device.strip()]
    if not devices:
        raise argparse.ArgumentTypeError("needs at least one device, e.g. cpu,cuda")
    try:
        return [validate_device(device, "device") for device in devices]
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# Markers of the generated tests, so that `-m "not conformance_workers"` deselects a family.
FAMILY_MARKERS = {
    "conformance": "a test generated by parametrize_with_checks",
    "conformance_workers": "a conformance check that starts worker processes",
    "conformance_distributed": "a conformance check under a process group or across ranks",
    "conformance_cuda": "a conformance check on a CUDA device",
}


def _family_markers(spec: Any, device: str) -> list[str]:
    names = ["conformance"]
    if "workers" in spec.needs:
        names.append("conformance_workers")
    # The clauses across ranks are those of checks/distributed.py (a sampler's need no process group).
    if "distributed" in spec.needs or spec.func.__module__.endswith(".checks.distributed"):
        names.append("conformance_distributed")
    if "cuda" in spec.needs or device.startswith("cuda"):
        names.append("conformance_cuda")
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


def _world_size_argument(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer number of ranks, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, got {value}")
    return value


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


def _settings(config: pytest.Config) -> _Settings:
    return config.stash[_SETTINGS]


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The versions and settings a conformance run depends on, in pytest's header."""
    settings = config.stash.get(_SETTINGS, None)
    if settings is None:
        return []
    versions = environment()
    shown = {key: value for key, value in dataclasses.asdict(settings).items() if value is not None}
    torch_version = versions["torch"] or "not imported"
    return [
        f"torchcontract {versions['torchcontract']}, torch {torch_version}, numpy {versions['numpy']}",
        "torchcontract settings: " + ", ".join(f"{key}={value}" for key, value in shown.items()),
    ]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARK}(targets): one test per (target, conformance check); "
        "use torchcontract.conformance.parametrize_with_checks",
    )
    for name, what in FAMILY_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {what} (added by torchcontract)")
    config.stash[_RESULTS] = _Results()
    report = _resolved(config, "report", str)
    problem = output_file_problem(report) if report is not None else None
    if problem:
        raise pytest.UsageError(f"--conformance-report: {problem}")
    budget = _resolved(config, "time_budget", time_budget_argument)
    world_size = _resolved(config, "world_size", _world_size_argument)
    config.stash[_SETTINGS] = _Settings(
        report=report,
        devices=_resolved(config, "devices", _devices_argument),
        world_size=world_size,
        time_budget_s=DEFAULT_TIME_BUDGET_S if budget is None else budget,
        isolate=bool(config.getoption("--conformance-isolate") or config.getini("conformance_isolate")),
    )
    if world_size is not None and world_size < 2:
        raise pytest.UsageError(f"--conformance-world-size must be at least 2, got {world_size}")


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
    config = metafunc.config
    budget = _settings(config).time_budget_s
    results = config.stash[_RESULTS]
    targets: tuple[Target, ...] = mark.args[0]
    world_size = _settings(config).world_size
    isolate = _settings(config).isolate
    targets = tuple(_configured(config, target, world_size, isolate) for target in targets)
    needs_devices = any(spec.per_device for target in targets for spec in target.checks)
    devices = _devices(config) if needs_devices else ["cpu"]
    params = []
    for target in targets:
        cases = []
        for spec in target.checks:
            for device in devices if spec.per_device else devices[:1]:
                case = CheckCase(target, spec.check_id, device, budget, recorder=results.record)
                test_id = f"{target.name}-{spec.check_id}" + (f"-{device}" if spec.per_device else "")
                marks = [getattr(pytest.mark, name) for name in _family_markers(spec, device)]
                reason = target.expected_failures.get(spec.check_id)
                if reason is not None:
                    marks.append(pytest.mark.xfail(reason=reason, strict=False, raises=ExpectedCheckFailure))
                cases.append(pytest.param(target, case, id=test_id, marks=marks))
        if not cases:
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: target {target.name!r} ({target.protocol.__name__}) "
                "collected zero conformance checks; a conformance run that checks nothing must not pass"
            )
        results.declare(target, devices[0])
        for stale in target.stale_expected_failures:
            stale_id = f"{target.name}-stale_expected_failure-{stale}"
            cases.append(pytest.param(target, StaleExpectedFailure(target, stale), id=stale_id))
        params.extend(cases)
    metafunc.parametrize(("target", "check"), params)


def _case_of(item: pytest.Item) -> CheckCase | None:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("check") if callspec is not None else None
    return case if isinstance(case, CheckCase) else None


# (id(target), device) -> [the target, how many of its selected tests have not run yet]
_PENDING = pytest.StashKey["dict[tuple[int, str], list[Any]]"]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Count each target's selected tests (after -k/-m deselection), so that its shared work (the
    recorded epochs and their iterators) is released after its last one, as ``Target.run`` does."""
    pending: dict[tuple[int, str], list[Any]] = {}
    for item in items:
        case = _case_of(item)
        if case is not None:
            pending.setdefault((id(case.target), case.device), [case.target, 0])[1] += 1
    config.stash[_PENDING] = pending


def pytest_runtest_teardown(item: pytest.Item) -> None:
    case = _case_of(item)
    entry = item.config.stash.get(_PENDING, {}).get((id(case.target), case.device)) if case else None
    if case is None or entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:  # under pytest-xdist, only where this worker ran every test of the target
        case.target.session(case.device, case.time_budget_s).release_shared_work()


@pytest.hookimpl(trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Run a generated test's check in its setup, so that an internal error of torchcontract is a
    pytest *error* (an error in setup), never a failure blamed on the object. Last, after the
    test's fixtures (a user's autouse seeding applies to the check)."""
    case = _case_of(item)
    if case is None:
        return
    result = case.run()
    if result.status == "error":
        pytest.fail(f"{result.check_id}: {result.message}", pytrace=False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    run = config.stash[_RESULTS].run_report()
    worker_output = getattr(config, "workeroutput", None)
    if worker_output is not None:  # an xdist worker: the controller writes the report
        worker_output[_WORKER_OUTPUT_KEY] = run.to_json(indent=None)
        return
    if any(_idle(report) for report in run.reports) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    path = _settings(config).report
    if path:
        run.write(path)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: merge a finished worker's results into the controller's."""
    output = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY)
    if output:
        node.config.stash[_RESULTS].merge(json.loads(output))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, None)
    run = results.run_report() if results is not None else None
    if run is None or not run.reports:
        return
    terminalreporter.section("torchcontract conformance")
    for report in run.reports:
        if report.results:
            shown = ", ".join(f"{n} {status}" for status, n in report.counts().items() if n)
            terminalreporter.write_line(f"{report.target} ({report.protocol}): {shown}")
    for report in run.reports:
        for check_id in report.stale_expected_failures:
            terminalreporter.write_line(
                f"{report.target} ({report.protocol}): stale expected failure {check_id!r} matches no check"
            )
    for report in filter(_idle, run.reports):
        terminalreporter.write_line(
            f"{report.target} ({report.protocol}): ran zero conformance checks (every selected check was "
            "skipped); a conformance run that verifies nothing fails",
            red=True,
        )
    path = _settings(config).report
    if path:
        terminalreporter.write_line(f"JSON report: {path}")
