"""pytest plugin for torchcontract (registered through the ``pytest11`` entry point).

It expands tests decorated with :func:`~torchcontract.conformance.parametrize_with_checks` into one
test per (target, check[, device][, dtype]), adds the ``--conformance-*`` options, prints a per-target
summary and writes the JSON report, the Markdown summary and the written baseline. What the results
mean (verdicts, baselines, counts, Markdown) is the reporting layer's (:mod:`._report`), shared with
the CLI; this module is the pytest side: its state lives in one :class:`ConformanceRun`, registered in
``pytest_configure`` (as pytest's ``junitxml`` registers its ``LogXML``). Under pytest-xdist each
worker sends its results to the controller, which judges the run and writes the files once, with
every result exactly once; under torchrun, rank 0 writes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import importlib.util
import json
import os
import sys
from pathlib import Path
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
from torchcontract.conformance._pytest_shared import MARK, RUN, ExpectedCheckFailure

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from torchcontract.conformance._core.registry import Check
    from torchcontract.conformance._core.target import Target
    from torchcontract.conformance._parametrize import CheckCase
    from torchcontract.conformance._report.baseline import Baseline
    from torchcontract.conformance._report.outcomes import Policy, Problem
    from torchcontract.conformance._report.plan import BaselineUse
    from torchcontract.conformance._report.verdict import JudgedRun
    from torchcontract.conformance._results import CheckResult, RunReport

__all__ = ["FAMILY_MARKERS", "ConformanceRun"]

# What a pytest-xdist worker sends the controller: its run report, and what the controller needs to
# judge it (the targets it collected, where each was declared, what their baseline tables changed).
_WORKER_RUN_KEY = "torchcontract_results"
_WORKER_TARGETS_KEY = "torchcontract_targets"


def _path_option(parse: Callable[[str], str]) -> Callable[[str], str]:
    """A file option's argparse ``type=``: ``parse``, except that an empty value (``--conformance-baseline=``)
    turns off what the ini file sets."""

    def parse_or_off(text: str) -> str:
        return text if text == "" else parse(text)

    parse_or_off.__name__ = getattr(parse, "__name__", "path")
    return parse_or_off


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchcontract", "torchcontract conformance checks")
    # Every option is also an ini key of the same name with underscores (pytest.ini, pyproject.toml's
    # [tool.pytest.ini_options]); the command line wins. Values are validated at parse time.
    options: list[tuple[str, str, Any, str]] = [
        (
            "report",
            "PATH",
            _path_option(writable_file),
            "write a JSON report of every (target, check) result to PATH",
        ),
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
            _path_option(writable_file),
            (
                "write a Markdown summary (a table per target) to PATH; appended when PATH is the file "
                "$GITHUB_STEP_SUMMARY names (a job summary), else replaced"
            ),
        ),
        (
            "baseline",
            "PATH",
            _path_option(readable_file),
            'known failures in a TOML file: a [target] table of "check.id" = "reason" per target',
        ),
        (
            "write-baseline",
            "PATH",
            _path_option(writable_file),
            "write this run's failed checks to a baseline file at PATH, with the reason TODO",
        ),
    ]
    for name, metavar, parse, what in options:
        key = f"conformance_{name.replace('-', '_')}"
        off = f"; --conformance-{name}= turns off the ini key {key}" if metavar == "PATH" else ""
        group.addoption(f"--conformance-{name}", metavar=metavar, type=parse, default=None, help=what + off)
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


@dataclasses.dataclass(frozen=True)
class _Settings:
    """The plugin's options, from the command line or else the ini file, validated once. A file
    option is None when unset (an empty value on the command line turns off the ini file's)."""

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

    @classmethod
    def of(cls, config: pytest.Config) -> _Settings:
        budget = _resolved(config, "time_budget", time_budget_argument)
        return cls(
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


def _resolved(config: pytest.Config, name: str, parse: Any) -> Any:
    """``--conformance-<name>`` if given, else the ini key ``conformance_<name>`` parsed like it; None
    when neither is set, or when the command line gives an empty value."""
    import argparse

    value = config.getoption(f"--conformance-{name.replace('_', '-')}")
    if value is not None:
        return value if value != "" else None
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


def _installed_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _rank() -> int:
    """This process's rank under a launcher (0 otherwise): only rank 0 writes the reports."""
    try:
        return int(os.environ.get("RANK", "0")) if launched() else 0
    except ValueError:
        return 0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARK}(targets): one test per (target, conformance check); "
        "use torchcontract.conformance.parametrize_with_checks",
    )
    for name, what in FAMILY_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {what} (added by torchcontract)")
    if not config.pluginmanager.hasplugin("xdist"):  # xdist registers its own; --strict-markers
        config.addinivalue_line("markers", "xdist_group(name): pytest-xdist's group, for --dist loadgroup")
    settings = _Settings.of(config)
    baseline: Baseline = {}
    if settings.baseline is not None:
        from torchcontract.conformance._report.baseline import BaselineError, read_baseline

        try:
            baseline = read_baseline(settings.baseline)
        except BaselineError as error:
            raise pytest.UsageError(str(error)) from None
    run = ConformanceRun(config, settings, baseline)
    config.stash[RUN] = run
    config.pluginmanager.register(run, "torchcontract-run")


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is None:
        return
    run.leave_launched_group()  # the session ended early (an interrupt, a usage error): leave the group
    config.pluginmanager.unregister(run)
    del config.stash[RUN]


@dataclasses.dataclass
class _TargetResults:
    """One target's results as its tests run."""

    device: str
    options: dict[str, Any]
    results: list[CheckResult] = dataclasses.field(default_factory=list)
    stale: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _Collected:
    """A target the session collected: the test function that generated its tests (where pytest
    shows a problem of the target), and what its baseline table changed."""

    origin: str
    baseline: BaselineUse | None


# A target of the run: its name and its protocol's (two test functions may check one name against two
# protocols; its reports are two).
_Key = tuple[str, str]


def _key(target: Target) -> _Key:
    return (target.name, target.protocol.__name__)


class _Results:
    """Each target's results, recorded once as its tests run (on pytest-xdist's controller: merged
    from the workers), and built into the run's :class:`RunReport` at the end: the one record that
    the JSON report, the terminal summary, the Markdown summary and the written baseline come from."""

    def __init__(self) -> None:
        self.targets: dict[_Key, _TargetResults] = {}
        # Every target collected (also those whose tests were all deselected).
        self.collected: dict[_Key, _Collected] = {}
        # Under pytest-xdist, the workers' versions (torch may be imported there only).
        self.worker_environments: list[dict[str, str | None]] = []

    def declare(self, target: Target, device: str, use: BaselineUse | None, origin: str) -> None:
        """``target`` was collected: its device-independent checks run on ``device``."""
        self.collected[_key(target)] = _Collected(origin, use)
        self.targets.setdefault(_key(target), _TargetResults(device, target.options.changed()))

    def _entry(self, target: Target, device: str) -> _TargetResults:
        entry = self.targets.get(_key(target))
        if entry is None:  # a target the test body checks itself
            entry = self.targets[_key(target)] = _TargetResults(device, target.options.changed())
        return entry

    def record(self, target: Target, result: CheckResult) -> None:
        self._entry(target, result.device or "cpu").results.append(result)

    def record_stale(self, target: Target, check_id: str) -> None:
        entry = self._entry(target, "cpu")
        if check_id not in entry.stale:
            entry.stale.append(check_id)

    def names(self) -> set[str]:
        return {name for name, _ in self.collected}

    def baselines(self) -> dict[_Key, BaselineUse]:
        return {key: c.baseline for key, c in self.collected.items() if c.baseline is not None}

    def to_worker_output(self) -> dict[str, str]:
        collected = [
            [name, protocol, c.origin, c.baseline.to_dict() if c.baseline else None]
            for (name, protocol), c in self.collected.items()
        ]
        return {
            _WORKER_RUN_KEY: self.run_report().to_json(indent=None),
            _WORKER_TARGETS_KEY: json.dumps(collected),
        }

    def merge(self, output: dict[str, str]) -> None:
        """Add a pytest-xdist worker's results (:meth:`to_worker_output`)."""
        from torchcontract.conformance._report.plan import BaselineUse
        from torchcontract.conformance._results import RunReport

        for name, protocol, origin, baseline in json.loads(output.get(_WORKER_TARGETS_KEY) or "[]"):
            use = BaselineUse.from_dict(baseline) if baseline is not None else None
            self.collected.setdefault((name, protocol), _Collected(origin, use))
        if not output.get(_WORKER_RUN_KEY):
            return
        run = RunReport.from_dict(json.loads(output[_WORKER_RUN_KEY]))
        self.worker_environments.append(run.environment)
        for report in run.reports:
            key = (report.target, report.protocol)
            entry = self.targets.setdefault(key, _TargetResults(report.device, report.options))
            entry.results.extend(report.results)
            entry.stale.extend(s for s in report.stale_expected_failures if s not in entry.stale)

    def ran(self) -> bool:
        return any(entry.results or entry.stale for entry in self.targets.values())

    def run_report(self) -> RunReport:
        """The targets that have results (or stale expected failures), in the order they were
        collected; each target's results in its checks' order (the registry's, then the devices and
        dtypes in the order they ran), whatever order the tests ran in."""
        # Imported here: its dataclasses take milliseconds to build, at every pytest start otherwise.
        from torchcontract.conformance._results import Report, RunReport, environment

        order: dict[str, int] = {}
        if any(entry.results for entry in self.targets.values()):  # the engine is imported then
            from torchcontract.conformance._core.registry import CHECKS

            order = {check_id: position for position, check_id in enumerate(CHECKS)}
        versions = environment()
        for worker in self.worker_environments:
            versions.update({key: value for key, value in worker.items() if versions.get(key) is None})
        reports = []
        # In the order they were collected (every pytest-xdist worker collects them all, in one order).
        for name, protocol in dict.fromkeys([*self.collected, *self.targets]):
            entry = self.targets.get((name, protocol))
            if entry is None or not (entry.results or entry.stale):
                continue
            devices = list(dict.fromkeys(result.device for result in entry.results))
            dtypes = [None, *entry.options.get("dtypes", ())]
            results = sorted(
                entry.results,
                key=lambda r: (
                    order.get(r.check_id, len(order)),
                    devices.index(r.device),
                    dtypes.index(r.dtype) if r.dtype in dtypes else len(dtypes),
                ),
            )
            reports.append(
                Report(
                    target=name,
                    protocol=protocol,
                    device=entry.device,
                    results=tuple(results),
                    stale_expected_failures=tuple(entry.stale),
                    options=entry.options,
                )
            )
        return RunReport(tuple(reports), versions)


def _case(item: pytest.Item) -> Any:
    """The generated test's CheckCase or StaleExpectedFailure, or None for any other test."""
    if item.get_closest_marker(MARK) is None:
        return None
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("check") if callspec is not None else None


def _case_of(item: pytest.Item) -> CheckCase | None:
    """The generated test's CheckCase, or None (a stale expected failure, any other test)."""
    case = _case(item)
    if case is None:
        return None
    from torchcontract.conformance._parametrize import CheckCase

    return case if isinstance(case, CheckCase) else None


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


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


def _collected_everything(config: pytest.Config) -> bool:
    """Whether this session collected the whole suite: pytest was given no paths (it collected its
    ``testpaths`` or the invocation directory), or paths that hold all of those. A session given some
    test files cannot tell a baseline table of a target declared in another file from a stale one;
    nor can one under ``--lf``, which skips the files without a previous failure."""
    if config.getoption("lf", False):
        return False
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return True
    here = config.invocation_params.dir
    testpaths = config.getini("testpaths")
    defaults = [
        Path(found)
        for pattern in testpaths
        for found in (sorted(glob.glob(str(config.rootpath / pattern), recursive=True)) or [pattern])
    ] or [here]
    given = [(here / arg.split("::", 1)[0]).resolve() for arg in config.args]
    return all(
        any(path == root or root in path.parents for root in given)
        for path in ((here / default).resolve() for default in defaults)
    )


def _appends(path: str) -> bool:
    """Whether the Markdown summary is added to what ``path`` holds: only for the file that
    ``$GITHUB_STEP_SUMMARY`` names, which collects the summaries of every step of a job; any other
    file holds this run's summary alone."""
    job_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    return bool(job_summary) and os.path.realpath(path) == os.path.realpath(str(job_summary))


def _error_report(nodeid: str, headline: str, message: str) -> pytest.TestReport:
    """A failure of the conformance run that no test carries, as pytest's summary counts and lists
    an error: "ERROR <nodeid> - <message>", and in its final line."""
    return pytest.TestReport(
        nodeid=nodeid,
        location=(nodeid.split("::", 1)[0], None, headline),
        keywords={},
        outcome="failed",
        longrepr=message,
        when="teardown",
    )


class ConformanceRun:
    """The plugin's state in one pytest configuration, and the hooks that use it: the settings, the
    baseline, the targets as configured for the run, each target's results, and (under torchrun) the
    process group the session joined. Registered by ``pytest_configure`` as ``torchcontract-run``."""

    def __init__(self, config: pytest.Config, settings: _Settings, baseline: Baseline) -> None:
        self.config = config
        self.settings = settings
        self.baseline = baseline
        self.results = _Results()
        # id(declared target) -> (the declared target, kept so that its id stays its own; the target
        # the run checks: the command line's world size and isolation, the baseline's expected
        # failures; what the baseline changed)
        self._planned: dict[int, tuple[Target, Target, BaselineUse | None]] = {}
        # (id(target), device, dtype) -> [the target, how many of its selected tests have not run yet]
        self._pending: dict[tuple[int, str, str | None], list[Any]] = {}
        # (id(target), device) -> the check ids of its selected tests, until its first test runs
        self._selected: dict[tuple[int, str], set[str]] = {}
        # Under torchrun: the process group this rank joined for the session (closed with a final
        # barrier when it finishes), and what joining it returned.
        self._launched_group: contextlib.ExitStack | None = None
        self._launched_run: Any = None
        self._barrier_error: str | None = None
        # The files that could not be written at the end of the run: path -> why.
        self.not_written: dict[str, str] = {}
        self.judged: JudgedRun | None = None
        self._notes: list[str] = []

    @property
    def policy(self) -> Policy:
        from torchcontract.conformance._report.outcomes import Policy

        return Policy(
            strict=self.settings.strict,
            allow_empty=self.settings.allow_empty,
            xfail_strict=bool(self.config.getini("xfail_strict")),
        )

    # ----------------------------------------------------------------------------------------------
    # collection

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        """The versions and settings a conformance run depends on, in pytest's header (the installed
        versions: reading them imports nothing)."""
        shown = {key: value for key, value in dataclasses.asdict(self.settings).items() if value is not None}
        versions = {name: _installed_version(name) for name in ("torchcontract", "torch", "numpy")}
        torchcontract, torch, numpy = versions.values()
        return [
            f"torchcontract {torchcontract}, torch {torch}, numpy {numpy}",
            "torchcontract settings: " + ", ".join(f"{key}={value}" for key, value in shown.items()),
        ]

    def _devices(self) -> list[str]:
        if self.settings.devices is not None:
            return self.settings.devices
        devices = ["cpu"]
        if importlib.util.find_spec("torch") is not None:
            import torch

            if torch.cuda.is_available():
                devices.append("cuda")
        return devices

    def _plan(self, declared: Target) -> tuple[Target, BaselineUse | None]:
        """``declared`` as the run checks it, as a new Target (the user's own is never changed): one
        per target for the whole run, so that tests sharing a target share its results."""
        if id(declared) not in self._planned:
            from torchcontract.conformance._report.plan import plan_baseline

            changes: dict[str, object] = {}
            if self.settings.world_size is not None and declared.options.world_size is None:
                changes["world_size"] = self.settings.world_size
            if self.settings.isolate and not declared.options.isolate:
                changes["isolate"] = True
            target = declared.replace(**changes) if changes else declared
            target, use = plan_baseline(target, self.baseline, self.settings.baseline or "")
            self._planned[id(declared)] = (declared, target, use)
        _, target, use = self._planned[id(declared)]
        return target, use

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
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
        from torchcontract.conformance._parametrize import CheckCase, StaleExpectedFailure

        settings = self.settings
        planned = [self._plan(declared) for declared in mark.args[0]]
        needs_devices = any(spec.per_device for target, _ in planned for spec in target.checks)
        devices = self._devices() if needs_devices else ["cpu"]
        params = []
        for target, use in planned:
            cases = []
            for spec in target.checks:
                for device, dtype in (
                    (device, dtype)
                    for device in (devices if spec.per_device else devices[:1])
                    for dtype in target.dtypes_of(spec)
                ):
                    case = CheckCase(
                        target,
                        spec.check_id,
                        device,
                        settings.time_budget_s,
                        recorder=self.results.record,
                        strict=settings.strict,
                        todo=use.todo_for(spec.check_id, dtype) if use is not None else None,
                        dtype=dtype,
                    )
                    test_id = (
                        f"{target.name}-{spec.check_id}"
                        + (f"-{device}" if spec.per_device else "")
                        + (f"-{dtype}" if dtype is not None else "")
                    )
                    marks = [getattr(pytest.mark, name) for name in _family_markers(spec, device)]
                    # With pytest-xdist's --dist loadgroup a target's tests stay on one worker, so
                    # that the work they share (one recorded epoch, one process-group run) is done once.
                    marks.append(pytest.mark.xdist_group(name=f"torchcontract:{target.name}"))
                    reason = target.expected_failure(spec.check_id, dtype)
                    if reason is not None:
                        # pytest's own xfail_strict decides whether an xpass of a declaration in code
                        # fails; an entry of a baseline file that passes is stale, and always fails.
                        strict = (
                            {"strict": True} if use is not None and use.owns(spec.check_id, dtype) else {}
                        )
                        marks.append(pytest.mark.xfail(reason=reason, raises=ExpectedCheckFailure, **strict))
                    cases.append(pytest.param(target, case, id=test_id, marks=marks))
            if not cases:
                raise pytest.UsageError(
                    f"{metafunc.definition.nodeid}: target {target.name!r} ({target.protocol.__name__}) "
                    "collected zero conformance checks; a conformance run that checks nothing must not pass"
                )
            self.results.declare(target, devices[0], use, metafunc.definition.nodeid)
            for stale in target.stale_expected_failures:
                stale_id = f"{target.name}-stale_expected_failure-{stale}"
                source = settings.baseline if use is not None and stale in use.from_file else None
                cases.append(pytest.param(target, StaleExpectedFailure(target, stale, source), id=stale_id))
            params.extend(cases)
        metafunc.parametrize(("target", "check"), params)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """Count each target's selected tests (after -k/-m deselection), so that its shared work (the
        recorded epochs and their iterators) is released after its last one, as ``Target.run`` does;
        and note which checks are selected, for its first test to start the fresh interpreter."""
        self._pending, self._selected = {}, {}
        for item in items:
            case = _case_of(item)
            if case is not None:
                key = (id(case.target), case.device, case.dtype)
                self._pending.setdefault(key, [case.target, 0])[1] += 1
                self._selected.setdefault((id(case.target), case.device), set()).add(case.check_id)

    # ----------------------------------------------------------------------------------------------
    # running

    def _prestart(self, case: CheckCase) -> None:
        """At a target's first test: start the fresh interpreter now when one of its selected tests
        will use it, as ``Target.run`` does, so that its start overlaps the tests before. Not in a
        pytest-xdist worker, which runs only some of the tests it collected (and starts it lazily)."""
        selected = self._selected.pop((id(case.target), case.device), None)
        if not selected or hasattr(self.config, "workerinput"):
            return
        from torchcontract.conformance._core.registry import CHECKS

        session = case.target.session(case.device, case.time_budget_s)
        case.target.prestart_fresh_interpreter(session, [CHECKS[c] for c in sorted(selected) if c in CHECKS])

    def _join_launched_group(self) -> None:
        """Under torchrun, every rank runs the same session: the distributed clauses run collectively
        on one process group (gloo, on the launcher's address), joined once, at the first of them,
        unless the session already has one (a fixture of the user's)."""
        if self._launched_group is not None:
            return
        if getattr(self.config.option, "numprocesses", None):
            raise pytest.UsageError(
                "torchcontract: under torchrun every rank runs the distributed clauses together, in the same "
                "order: run pytest without -n (pytest-xdist) there"
            )
        from torchcontract.conformance._core import process_group as _process_group

        stack = contextlib.ExitStack()
        budget = self.settings.time_budget_s
        launcher = _process_group.launcher_group(spanning_processes_limit_s(budget))
        self._launched_run = stack.enter_context(launcher)
        self._launched_group = stack

    def leave_launched_group(self) -> None:
        """Close the group with its final barrier, keeping the barrier's failure (a rank missing)."""
        stack, self._launched_group = self._launched_group, None
        if stack is None:
            return
        stack.close()
        self._barrier_error = self._launched_run.final_barrier_error

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
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
            self.results.record_stale(target, case.check_id)
            item.user_properties.extend(
                [("status", "stale"), ("message", _first_line(target.stale_message(case.check_id)))]
            )
            return
        if spec is not None and "distributed" in spec.needs and launched():
            self._join_launched_group()
        self._prestart(case)
        result = case.run()
        item.user_properties.extend([("status", result.status), ("message", _first_line(result.message))])
        if result.status == "error":
            pytest.fail(f"{result.check_id}: {result.message}", pytrace=False)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if _case(item) is None or report.when not in ("setup", "call"):
            return report
        outcome = _outcome(report)
        if outcome is not None and not any(name == "outcome" for name, _ in item.user_properties):
            item.user_properties.append(("outcome", outcome))
            report.user_properties.append(("outcome", outcome))
        if report.skipped and not hasattr(report, "wasxfail") and isinstance(report.longrepr, tuple):
            # A skip is raised in torchcontract's code; pytest's -rs groups skips by where they were
            # raised, so it would group them all under that file. Show the user's test instead, as
            # pytest does for a skip marker.
            path, lineno, _ = item.reportinfo()
            report.longrepr = (os.fspath(path), (lineno or 0) + 1, report.longrepr[2])
        return report

    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        case = _case_of(item)
        entry = self._pending.get((id(case.target), case.device, case.dtype)) if case else None
        if case is None or entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:  # under pytest-xdist, only where this worker ran every test of the target
            case.target.session(case.device, case.time_budget_s, case.dtype).release_shared_work()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """pytest-xdist: merge a finished worker's results into the controller's."""
        self.results.merge(getattr(node, "workeroutput", {}))

    # ----------------------------------------------------------------------------------------------
    # the end of the run

    def _writes_files(self) -> bool:
        settings = self.settings
        return bool(settings.report or settings.summary_md or settings.write_baseline)

    def _baseline_problems(self) -> list[Problem]:
        """The baseline's tables that name no collected target: failures of a session that collected
        the whole suite; notes of one given some test files (the target may be declared in another)."""
        from torchcontract.conformance._report.plan import unknown_tables

        if not self.baseline:
            return []
        unknown = unknown_tables(self.baseline, self.results.names(), self.settings.baseline or "")
        if _collected_everything(self.config):
            return unknown
        self._notes.extend(
            f"{problem.detail} (not judged: this session collected only the test files it was given, "
            "and the target may be declared in another; a session of the whole suite fails on it)"
            for problem in unknown
        )
        return []

    def _nodeid(self, path: str | None) -> str:
        """Where pytest shows a problem of the run: the file it concerns, relative to the rootdir when
        it lies there (as a test's node id is), or torchcontract's name."""
        if not path:
            return "torchcontract"
        resolved = Path(path).resolve()
        root = self.config.rootpath
        return resolved.relative_to(root).as_posix() if root in resolved.parents else path

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        worker_output = getattr(self.config, "workeroutput", None)
        if worker_output is not None:  # an xdist worker: the controller judges the run and writes
            worker_output.update(self.results.to_worker_output())
            return
        self.leave_launched_group()
        if not (self.results.ran() or self._writes_files() or self.baseline):
            # No conformance test ran (the common case in a project that has torchcontract installed):
            # nothing to build, which would cost every pytest run milliseconds.
            return
        from torchcontract.conformance._report.outcomes import Problem
        from torchcontract.conformance._report.verdict import judge_run

        problems = self._baseline_problems()
        if self._barrier_error is not None:
            problems.append(
                Problem(
                    "a rank missed the final barrier",
                    f"the ranks' final barrier failed: {self._barrier_error}",
                )
            )
        run = self.results.run_report()
        self.judged = judged = judge_run(run, self.policy, self.results.baselines(), problems)
        if _rank() == 0:  # every rank ran the same checks; rank 0 writes what they found
            self._write_files(judged)
        # What fails the run but no test: a target that verified nothing, a problem of the run.
        errors = [
            _error_report(
                self.results.collected[key].origin
                if (key := (report.target, report.protocol)) in self.results.collected
                else "torchcontract",
                f"the conformance checks of {report.target} ({report.protocol})",
                f"{report.target} ({report.protocol}) {problem.detail}"
                + (
                    ""
                    if self.settings.allow_empty
                    else "; --conformance-allow-empty lets a deliberately narrowed run pass"
                ),
            )
            for report, verdict in judged.pairs()
            for problem in verdict.problems
            if problem.marker == "EMPTY"
        ]
        # A baseline's table is shown under the baseline file, its message without the file's name.
        in_baseline = f"baseline {self.settings.baseline}: "
        errors.extend(
            _error_report(
                self._nodeid(self.settings.baseline),
                "the conformance run",
                problem.detail[len(in_baseline) :],
            )
            if problem.detail.startswith(in_baseline)
            else _error_report("torchcontract", "the conformance run", problem.detail or problem.summary)
            for problem in judged.problems
        )
        errors.extend(
            _error_report(self._nodeid(path), "the conformance run", f"torchcontract: error: {why}")
            for path, why in self.not_written.items()
        )
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and errors:
            reporter.stats.setdefault("error", []).extend(errors)
        if errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.not_written:
            # The run's results stand (and are shown); what it was asked to write is not there: a usage
            # error, as for a path refused at the start, naming each file.
            for problem in self.not_written.values():
                sys.stderr.write(f"torchcontract: error: {problem}\n")
            session.exitstatus = pytest.ExitCode.USAGE_ERROR

    def _write_files(self, judged: JudgedRun) -> None:
        from torchcontract._files import OutputError, write_atomically
        from torchcontract.conformance._report.baseline import write_baseline
        from torchcontract.conformance._report.markdown import render_markdown
        from torchcontract.conformance._report.plan import written_baseline

        settings = self.settings
        writes: list[tuple[str | None, Callable[[str], None]]] = [
            (settings.report, judged.run.write),
            (
                settings.summary_md,
                # The old text and this run's replace the file in one step, so that a full disk cannot
                # leave a cut table in it.
                lambda path: write_atomically(path, render_markdown(judged), append=_appends(path)),
            ),
            (
                settings.write_baseline,
                lambda path: write_baseline(path, written_baseline(judged.run, self.baseline, judged.policy)),
            ),
        ]
        for path, write in writes:
            if not path:
                continue
            try:
                write(path)
            except OutputError as error:  # each file whole or not at all; the others are still written
                self.not_written[path] = str(error)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        judged = self.judged
        if judged is None or not (judged.run.reports or judged.problems or self._notes):
            return  # nothing to show
        from torchcontract.conformance._report.text import target_line

        settings = self.settings
        terminalreporter.section("torchcontract conformance")
        for report, verdict in judged.pairs():
            terminalreporter.write_line(target_line(report, verdict, judged.policy), red=not verdict.passed)
            for problem in verdict.problems:
                if problem.marker == "EMPTY":
                    terminalreporter.write_line(
                        f"{report.target} ({report.protocol}) {problem.detail}"
                        + (
                            ""
                            if settings.allow_empty
                            else "; a conformance run that verifies nothing fails "
                            "(--conformance-allow-empty lets a deliberately narrowed run pass)"
                        ),
                        red=True,
                    )
        for problem in judged.problems:
            terminalreporter.write_line(problem.detail or problem.summary, red=True)
        for note in self._notes:
            terminalreporter.write_line(note, yellow=True)
        for label, path in (
            ()
            if _rank() != 0
            else (  # rank 0 alone writes them (torchrun)
                ("JSON report", settings.report),
                ("Markdown summary", settings.summary_md),
                ("baseline written", settings.write_baseline),
            )
        ):
            if path and path in self.not_written:
                terminalreporter.write_line(f"{label}: not written ({self.not_written[path]})", red=True)
            elif path:
                terminalreporter.write_line(f"{label}: {path}")
        if judged.run.reports:
            terminalreporter.write_line(judged.closing_line(), red=not judged.passed, bold=True)
