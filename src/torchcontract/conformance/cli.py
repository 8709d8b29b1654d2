"""The ``torchcontract`` command.

``torchcontract check MODULE:ATTR --protocol NAME`` checks one object (or what a zero-argument factory
returns; a factory may return a ready :class:`Target`). ``torchcontract report`` checks the reference
implementation and, when installed, torch and torchvision, and prints the conformance table.
``torchcontract list`` lists the checks; ``torchcontract schema`` prints the JSON Schema of the
``--json`` report (the pytest plugin's ``--conformance-report`` has the same layout).
``torchcontract check-distributed MODULE:FACTORY`` runs the loader clauses across the ranks of a process
group: under ``torchrun`` (``torchrun --nproc-per-node N -m torchcontract check-distributed ...``) on
the job's own group, rank 0 printing the report and writing the JSON, the exit status the same on every
rank; elsewhere on ``--world-size N`` ranks it starts on 127.0.0.1. Exit status, as
pytest's: 0 when every report passed, 1 when a required check failed or could not be verified, 2 for
unusable arguments, 3 when torchcontract itself failed (an internal error: nothing is known about the
object), 4 when the checks ran but ``--json`` could not be written (a full disk; the file named is left
as it was, the results are on the terminal). ``--json -`` writes the JSON to standard output, and the
human-readable report to standard error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import operator
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torchcontract
from torchcontract._files import OutputError
from torchcontract.conformance._core.arguments import (
    DEFAULT_DISTRIBUTED_TIME_BUDGET_S,
    DEFAULT_TIME_BUDGET_S,
    STANDARD_OUTPUT,
    output_argument,
    readable_file,
    time_budget_argument,
    validate_device,
)
from torchcontract.conformance._core.options import Options
from torchcontract.conformance._core.registry import PROTOCOLS, checks_for, protocol_by_name
from torchcontract.conformance._core.target import Target
from torchcontract.conformance._results import STATUSES, Report, RunReport, report_schema

__all__ = ["main"]


class UsageError(Exception):
    """Unusable command-line arguments: exit status 2 with the message."""


def _parse_option(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise UsageError(f"--option takes NAME=VALUE, got {text!r}")
    lowered = raw.strip().lower()
    value: object
    if lowered in ("true", "false"):
        value = lowered == "true"
    elif lowered == "none":
        value = None
    else:
        try:
            value = int(raw)
        except ValueError:
            raise UsageError(f"--option {name}: {raw!r} is not true, false, none or an integer") from None
    return name.strip(), value


def _load(spec: str) -> Any:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"expected MODULE:ATTR (e.g. mypackage.data:train_set), got {spec!r}")
    # Like `python -m`: modules in the current directory are importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except SystemExit as error:  # sys.exit(0) at import would otherwise exit 0 with nothing checked
        raise UsageError(
            f"importing {module_name!r} called sys.exit({error.code!r}); nothing was checked. Guard the "
            "module's script code with if __name__ == '__main__':"
        ) from None
    except Exception as error:
        raise UsageError(f"cannot import {module_name!r}: {type(error).__name__}: {error}") from error
    try:
        return operator.attrgetter(attribute)(module)
    except AttributeError:
        raise UsageError(f"module {module_name!r} has no attribute {attribute!r}") from None


def _is_factory(value: Any) -> bool:
    """A class, or a function that can be called without arguments, is a factory of the target."""
    if isinstance(value, type):
        return True
    if not inspect.isfunction(value):
        return False
    try:
        inspect.signature(value).bind()
    except TypeError:
        return False
    return True


def _target(args: argparse.Namespace) -> Target:
    value = _load(args.target)
    if _is_factory(value):
        try:
            value = value()
        except SystemExit as error:
            raise UsageError(
                f"{args.target}() called sys.exit({error.code!r}); nothing was checked"
            ) from None
        except Exception as error:
            raise UsageError(f"{args.target}() raised {type(error).__name__}: {error}") from error
    if isinstance(value, Target):
        if args.protocol or args.option:
            raise UsageError(f"{args.target} gives a Target: its protocol and options come from it")
        return value
    if not args.protocol:
        raise UsageError(f"--protocol is needed to check {args.target} (one of {', '.join(PROTOCOLS)})")
    try:
        protocol = protocol_by_name(args.protocol)
    except KeyError as error:
        raise UsageError(str(error.args[0])) from None
    options = dict(_parse_option(text) for text in args.option)
    try:
        return Target(value, protocol, name=args.target, options=Options.from_kwargs(options))
    except TypeError as error:
        hint = ""
        if "example_inputs" in str(error):
            hint = f"; point at a function returning Target(obj, {protocol.__name__}, example_inputs=...)"
        raise UsageError(f"{error}{hint}") from None


def device_argument(text: str) -> str:
    """argparse ``type=`` for ``--device``."""
    import argparse

    try:
        return validate_device(text, "--device")
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _table(reports: Sequence[Report]) -> str:
    headers = ["target", "protocol", *STATUSES, "verdict"]
    rows = [
        [report.target, report.protocol, *map(str, report.counts().values()), _verdict(report)]
        for report in reports
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    header = "  ".join(cell.ljust(width) for cell, width in zip(headers, widths, strict=True))
    return "\n".join([header, "  ".join("-" * width for width in widths), *lines])


EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL_ERROR, EXIT_NOT_WRITTEN = 0, 1, 2, 3, 4


def _exit_status(reports: Sequence[Report]) -> int:
    if any(report.errors for report in reports):
        return EXIT_INTERNAL_ERROR
    return EXIT_PASSED if all(report.passed for report in reports) else EXIT_FAILED


def _verdict(report: Report) -> str:
    if report.errors:
        return "INTERNAL ERROR"
    if not report.passed:
        return "FAIL"
    return "pass (warnings)" if report.failures or report.unverified else "pass"


def _details(reports: Sequence[Report]) -> str:
    lines = []
    for report in reports:
        for result in report.results:
            if result.status in ("failed", "error", "unverified", "xpassed"):
                kind = "FAILED" if result.is_violation else result.status.upper()
                if result.status in ("failed", "unverified") and result.severity == "recommended":
                    kind = f"warning (recommended, {result.status})"
                lines.append(f"{report.target}: {result.label}: {kind}")
                lines.extend(f"    {line}" for line in result.message.splitlines())
    return "\n".join(lines)


def _shown_on(args: argparse.Namespace) -> Any:
    """Where the human-readable report goes: standard output, unless ``--json -`` puts the JSON there."""
    return sys.stderr if getattr(args, "json", None) == STANDARD_OUTPUT else sys.stdout


def _write_json(run: RunReport, path: str) -> None:
    """The JSON report to ``path`` (atomically), or to standard output for ``-``; a failure to write
    it raises OutputError (exit status 4)."""
    if path == STANDARD_OUTPUT:
        sys.stdout.write(run.to_json() + "\n")
        sys.stdout.flush()
        return
    run.write(path)


def _print_reports(reports: Sequence[Report], out: Any) -> None:
    print(_table(reports), file=out)
    details = _details(reports)
    if details:
        print(file=out)
        print(details, file=out)


def _markdown(reports: Sequence[Report]) -> str:
    from torchcontract.conformance._markdown import Row, TargetSummary, render

    summaries = []
    for report in reports:
        summary = TargetSummary(report.target, report.protocol, _verdict(report))
        summary.rows.extend(
            Row(result.label, result.severity, result.status, result.message) for result in report.results
        )
        summary.rows.extend(
            Row(
                stale,
                "required",
                "stale",
                f"expected failure {stale!r} matches no check of {report.protocol}",
            )
            for stale in report.stale_expected_failures
        )
        summaries.append(summary)
    return render(summaries, STATUSES, "torchcontract conformance")


def _baseline(path: str | None) -> dict[str, dict[str, str]]:
    if path is None:
        return {}
    from torchcontract.conformance._baseline import BaselineError, read_baseline

    try:
        return read_baseline(path)
    except BaselineError as error:
        raise UsageError(str(error)) from None


def _with_baseline(
    target: Target, baseline: dict[str, dict[str, str]], path: str | None
) -> tuple[Target, list[str]]:
    """The target with its baseline entries as expected failures (those still TODO left out), and
    the entries that fail the run whatever the checks say: TODO reasons."""
    from torchcontract.conformance._baseline import TODO, todo_message, with_expected_failures

    entries = baseline.get(target.name, {})
    known = {spec.check_id for spec in target.checks}
    known.update(f"{s.check_id}[{d}]" for s in target.checks for d in target.dtypes_of(s) if d)
    todo = [c for c, r in entries.items() if r.strip() == TODO and c in known]
    blessed = {c: r for c, r in entries.items() if c not in todo}
    problems = [todo_message(path or "", target.name, check_id) for check_id in todo]
    return (with_expected_failures(target, blessed) if blessed else target), problems


def _unknown_tables(baseline: dict[str, dict[str, str]], names: set[str], path: str | None) -> list[str]:
    """A table of the baseline that names no target of the run fails it by name (as under pytest):
    a renamed target would otherwise leave its known failures silently unused."""
    return [
        f"baseline {path}: table [{name!r}] names no target of this run; remove or rename it so it "
        "cannot hide a regression"
        for name in baseline
        if name not in names
    ]


def _baseline_problems(
    reports: Sequence[Report], baseline: dict[str, dict[str, str]], path: str | None
) -> list[str]:
    """Stale baseline entries: a check that passes now, or an id that names no check."""
    problems: list[str] = []
    for report in reports:
        entries = baseline.get(report.target, {})
        problems.extend(
            f"baseline {path}: [{report.target!r}] {key!r} passes now; remove the entry"
            for result in report.results
            for key in dict.fromkeys((result.label, result.check_id))
            if result.status == "xpassed" and key in entries
        )
        problems.extend(
            f"baseline {path}: [{report.target!r}] {stale!r} matches no check of {report.protocol}"
            for stale in report.stale_expected_failures
            if stale in entries
        )
    return problems


def _finish(args: argparse.Namespace, reports: Sequence[Report], problems: list[str]) -> int:
    status = _exit_status(reports)
    for problem in problems:
        print(f"torchcontract {args.command}: {problem}", file=sys.stderr)
    return EXIT_FAILED if problems and status == EXIT_PASSED else status


def _command_check(args: argparse.Namespace) -> int:
    target = _target(args)
    if args.isolate and not target.options.isolate:
        target = target.replace(isolate=True)
    baseline = _baseline(args.baseline)
    target, problems = _with_baseline(target, baseline, args.baseline)
    problems.extend(_unknown_tables(baseline, {target.name}, args.baseline))
    report = target.run(args.device, args.time_budget)
    print(_markdown([report]) if args.format == "markdown" else report, file=_shown_on(args))
    if args.json:
        _write_json(RunReport((report,)), args.json)
    return _finish(args, [report], problems + _baseline_problems([report], baseline, args.baseline))


def _command_report(args: argparse.Namespace) -> int:
    from torchcontract.conformance._runtime import fresh as _fresh_interpreter
    from torchcontract.conformance._targets.defaults import default_targets

    started = time.perf_counter()
    # The report's datasets are rebuilt in the fresh interpreter, torch's and torchvision's among them:
    # started now, it imports those while this process does (on another core) and builds the targets.
    _fresh_interpreter.prestart(
        tuple(name for name in _fresh_interpreter.ON_DEMAND if importlib.util.find_spec(name) is not None)
    )
    baseline = _baseline(args.baseline)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="torchcontract-report-") as workdir:
        targets = []
        for declared in default_targets(Path(workdir)):
            target, todo = _with_baseline(declared, baseline, args.baseline)
            targets.append(target)
            problems.extend(todo)
        reports = [target.run(args.device, args.time_budget) for target in targets]
    run = RunReport(tuple(reports))
    problems.extend(_unknown_tables(baseline, {target.name for target in targets}, args.baseline))
    problems.extend(_baseline_problems(reports, baseline, args.baseline))
    out = _shown_on(args)
    if args.format == "markdown":
        print(_markdown(reports), file=out)
        if args.json:
            _write_json(run, args.json)
        return _finish(args, reports, problems)
    _print_reports(reports, out)
    failed = sum(not report.passed for report in reports)
    versions = run.environment
    print(file=out)
    print(
        f"{len(reports)} targets, {sum(len(r.results) for r in reports)} check results, "
        f"{failed} target(s) failing; torch {versions['torch'] or 'not installed'}, "
        f"torchvision {versions['torchvision'] or 'not installed'}, numpy {versions['numpy']}; "
        f"{time.perf_counter() - started:.1f} s",
        file=out,
    )
    if args.json:
        _write_json(run, args.json)
        if args.json != STANDARD_OUTPUT:
            print(f"JSON report: {args.json}", file=out)
    return _finish(args, reports, problems)


def _command_check_distributed(args: argparse.Namespace) -> int:
    from torchcontract.conformance._check_distributed import check_distributed
    from torchcontract.conformance._core.process_group import (
        group_rank_and_size,
        in_process_group,
        launcher_group,
    )

    factory = _load(args.target)
    if not callable(factory):
        raise UsageError(f"{args.target} is not callable: give a function (rank, world_size) -> the loader")
    with launcher_group(args.time_budget) as group:
        collective = in_process_group()
        rank = group_rank_and_size()[0] if collective else 0
        if not collective and args.world_size is None:
            raise UsageError(
                "outside torchrun, give --world-size N (the ranks to start on 127.0.0.1); under torchrun "
                "the job's process group is used"
            )
        options: dict[str, Any] = dict(_parse_option(text) for text in args.option)
        try:
            report = check_distributed(
                factory, args.world_size, name=args.target, time_budget_s=args.time_budget, **options
            )
        except (TypeError, ValueError) as error:
            raise UsageError(str(error)) from None
        if rank == 0:
            shown = _markdown([report]) if args.format == "markdown" else report
            print(shown, file=_shown_on(args), flush=True)
            if args.json:
                _write_json(RunReport((report,)), args.json)
    status = _exit_status([report])
    if group.final_barrier_error is not None:
        # Every rank that is alive learns that one is not: the same (failing) status everywhere.
        barrier_error, budget = group.final_barrier_error, f"{args.time_budget:g} s"
        if barrier_error.startswith("rank"):
            what = f"{barrier_error} did not reach the final barrier within {budget}"
        else:
            what = f"the final barrier failed within {budget} ({barrier_error})"
        print(
            f"torchcontract check-distributed (rank {rank}): {what}; expected every rank to finish its "
            "checks and reach it",
            file=sys.stderr,
            flush=True,
        )
        status = max(status, EXIT_FAILED)
    return status


def _command_schema(args: argparse.Namespace) -> int:
    print(json.dumps(report_schema(), indent=2))
    return 0


def _command_list(args: argparse.Namespace) -> int:
    try:
        protocols = [protocol_by_name(args.protocol)] if args.protocol else list(PROTOCOLS.values())
    except KeyError as error:
        raise UsageError(str(error.args[0])) from None
    if args.json:
        rows = [
            {
                "check_id": spec.check_id,
                "protocol": spec.protocol_name,
                "severity": spec.severity,
                "since": spec.since,
                "needs": sorted(spec.needs),
                "requires": list(spec.requires),
                "per_device": spec.per_device,
                "per_dtype": spec.per_dtype,
                "rule": spec.rule,
            }
            for protocol in protocols
            for spec in checks_for(protocol)
            if spec.protocol is protocol
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for protocol in protocols:
        print(f"{protocol.__name__}:")
        for spec in checks_for(protocol):
            if spec.protocol is not protocol:
                continue
            needs = f" [needs {', '.join(sorted(spec.needs))}]" if spec.needs else ""
            print(f"  {spec.check_id} ({spec.severity}){needs}")
            print(f"      {spec.rule}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchcontract", description="Check objects against the contracts of PyTorch's data model."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {torchcontract.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def run_options(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--json",
            metavar="PATH",
            type=output_argument,
            help="also write the results as JSON to PATH (- for standard output; the report then goes to "
            "standard error)",
        )
        command.add_argument(
            "--device", default="cpu", type=device_argument, help="device for device-dependent checks"
        )
        command.add_argument(
            "--time-budget",
            type=time_budget_argument,
            default=DEFAULT_TIME_BUDGET_S,
            metavar="SECONDS",
            help=f"seconds each check may take (default {DEFAULT_TIME_BUDGET_S:g})",
        )
        command.add_argument(
            "--format",
            choices=("text", "markdown"),
            default="text",
            help="text (default), or markdown: a table per target, for a CI job summary",
        )
        command.add_argument(
            "--baseline",
            metavar="PATH",
            type=readable_file,
            help='known failures in a TOML file: a [target] table of "check.id" = "reason" entries',
        )

    check = commands.add_parser("check", help="check one object against a protocol")
    check.add_argument(
        "target", metavar="MODULE:ATTR", help="an object, a zero-argument factory, or a Target"
    )
    check.add_argument("--protocol", help=f"one of {', '.join(PROTOCOLS)}")
    check.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a target option, e.g. deterministic=false (repeatable)",
    )
    check.add_argument(
        "--isolate",
        action="store_true",
        help="run the checks in a child process: a crash of the object fails a check, not the run",
    )
    run_options(check)
    distributed = commands.add_parser(
        "check-distributed",
        help="the loader clauses across the ranks of a process group (under torchrun: the job's own)",
    )
    distributed.add_argument(
        "target", metavar="MODULE:FACTORY", help="a function (rank, world_size) -> the loader of that rank"
    )
    distributed.add_argument(
        "--world-size",
        type=int,
        metavar="N",
        help="outside torchrun: start N ranks on 127.0.0.1 (under torchrun: the group's size)",
    )
    distributed.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a target option, e.g. max_padding=4 or transforms_samples=true (repeatable)",
    )
    distributed.add_argument(
        "--json",
        metavar="PATH",
        type=output_argument,
        help="also write the results as JSON to PATH (rank 0; - for standard output)",
    )
    distributed.add_argument(
        "--time-budget",
        type=time_budget_argument,
        default=DEFAULT_DISTRIBUTED_TIME_BUDGET_S,
        metavar="SECONDS",
        help=(
            "seconds each check may take, and the bound on every collective "
            f"(default {DEFAULT_DISTRIBUTED_TIME_BUDGET_S:g})"
        ),
    )
    distributed.add_argument("--format", choices=("text", "markdown"), default="text")
    report = commands.add_parser("report", help="the conformance table of the reference and of torch")
    run_options(report)
    listing = commands.add_parser("list", help="list the checks")
    listing.add_argument("--protocol", help="only this protocol's own checks")
    listing.add_argument(
        "--json",
        action="store_true",
        help="as JSON: id, protocol, severity, since (the version that added it)",
    )
    commands.add_parser("schema", help="print the JSON Schema (draft 2020-12) of the --json reports")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    commands = {
        "check": _command_check,
        "check-distributed": _command_check_distributed,
        "report": _command_report,
        "list": _command_list,
        "schema": _command_schema,
    }
    try:
        return commands[args.command](args)
    except BrokenPipeError:
        # The reader went away (`torchcontract check ... | head`): not an error of the run. Point
        # stdout at devnull so that the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except UsageError as error:
        print(f"torchcontract {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OutputError as error:
        # The checks ran and their report is shown; only the file could not be written.
        print(
            f"torchcontract {args.command}: error: {error}; the checks ran, and their results are "
            "shown above",
            file=sys.stderr,
        )
        return EXIT_NOT_WRITTEN


if __name__ == "__main__":
    sys.exit(main())
