"""The ``torchcontract`` command.

``torchcontract check MODULE:ATTR --protocol NAME`` checks one object (or what a zero-argument factory
returns; a factory may return a ready :class:`Target`). ``torchcontract report`` checks the reference
implementation and, when installed, torch and torchvision, and prints the conformance table.
``torchcontract list`` lists the checks; ``torchcontract schema`` prints the JSON Schema of the
``--json`` report (the pytest plugin's ``--conformance-report`` has the same layout). Exit status, as
pytest's: 0 when every report passed, 1 when a required check failed or could not be verified, 2 for
unusable arguments, 3 when torchcontract itself failed (an internal error: nothing is known about the
object).
"""

from __future__ import annotations

import argparse
import importlib
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

from torchcontract.conformance._engine import (
    DEFAULT_TIME_BUDGET_S,
    Options,
    Target,
    time_budget_argument,
    validate_device,
)
from torchcontract.conformance._registry import PROTOCOLS, checks_for, protocol_by_name
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


def writable_file(text: str) -> str:
    """argparse ``type=`` for an output file (``--json``): refused at parse time, before a long run,
    when it names a directory, lies under a regular file, or cannot be written."""
    import argparse

    problem = output_file_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def output_file_problem(text: str) -> str | None:
    """Why a report cannot be written to ``text``, or None."""
    if not text:
        return "expected a file path, got an empty string"
    path = Path(text)
    if path.is_dir():
        return f"{text!r} is a directory; name a file in it"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{text!r} cannot be created: {str(parent)!r} is not a directory"
            if not os.access(parent, os.W_OK | os.X_OK) and not path.exists():
                return f"{text!r} cannot be created: {str(parent)!r} is not writable"
            break
    if path.exists() and not os.access(path, os.W_OK):
        return f"{text!r} is not writable"
    return None


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


EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL_ERROR = 0, 1, 2, 3


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
                lines.append(f"{report.target}: {result.check_id}: {kind}")
                lines.extend(f"    {line}" for line in result.message.splitlines())
    return "\n".join(lines)


def _print_reports(reports: Sequence[Report]) -> None:
    print(_table(reports))
    details = _details(reports)
    if details:
        print()
        print(details)


def _command_check(args: argparse.Namespace) -> int:
    target = _target(args)
    if args.isolate and not target.options.isolate:
        target = target.replace(isolate=True)
    report = target.run(args.device, args.time_budget)
    print(report)
    if args.json:
        RunReport((report,)).write(args.json)
    return _exit_status([report])


def _command_report(args: argparse.Namespace) -> int:
    from torchcontract.conformance._default_targets import default_targets

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="torchcontract-report-") as workdir:
        targets = default_targets(Path(workdir))
        reports = [target.run(args.device, args.time_budget) for target in targets]
    run = RunReport(tuple(reports))
    _print_reports(reports)
    failed = sum(not report.passed for report in reports)
    versions = run.environment
    print()
    print(
        f"{len(reports)} targets, {sum(len(r.results) for r in reports)} check results, "
        f"{failed} target(s) failing; torch {versions['torch'] or 'not installed'}, "
        f"torchvision {versions['torchvision'] or 'not installed'}, numpy {versions['numpy']}; "
        f"{time.perf_counter() - started:.1f} s"
    )
    if args.json:
        run.write(args.json)
        print(f"JSON report: {args.json}")
    return _exit_status(reports)


def _command_schema(args: argparse.Namespace) -> int:
    print(json.dumps(report_schema(), indent=2))
    return 0


def _command_list(args: argparse.Namespace) -> int:
    try:
        protocols = [protocol_by_name(args.protocol)] if args.protocol else list(PROTOCOLS.values())
    except KeyError as error:
        raise UsageError(str(error.args[0])) from None
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
    commands = parser.add_subparsers(dest="command", required=True)

    def run_options(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--json", metavar="PATH", type=writable_file, help="also write the results as JSON to PATH"
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
    report = commands.add_parser("report", help="the conformance table of the reference and of torch")
    run_options(report)
    listing = commands.add_parser("list", help="list the checks")
    listing.add_argument("--protocol", help="only this protocol's own checks")
    commands.add_parser("schema", help="print the JSON Schema (draft 2020-12) of the --json reports")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    commands = {
        "check": _command_check,
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


if __name__ == "__main__":
    sys.exit(main())
