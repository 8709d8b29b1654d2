"""The ``torchcontract`` command.

``torchcontract check TARGET...`` checks the user's objects and prints one block per target (a line
per check) as each finishes; ``torchcontract report [TARGET...]`` prints the conformance table of the
user's targets, or without any, of the reference implementation and, when installed, of torch and
torchvision. A TARGET is ``MODULE:ATTR`` (an object, a zero-argument factory, a :class:`Target`, or a
list of Targets, or a factory returning one) or ``MODULE`` (every Target defined at its module
level); all of them are checked in one process and judged as one run. ``torchcontract list`` lists
the checks; ``torchcontract schema`` prints the JSON Schema of the ``--json`` report (the pytest
plugin's ``--conformance-report`` has the same layout). ``torchcontract check-distributed
MODULE:FACTORY`` runs the loader clauses across the ranks of a process group: under ``torchrun``
(``torchrun --nproc-per-node N -m torchcontract check-distributed ...``) on the job's own group, rank
0 printing the report and writing the JSON, the exit status the same on every rank; elsewhere on
``--world-size N`` ranks it starts on 127.0.0.1.

What a run's results mean (verdicts, baselines, counts, the Markdown) is the reporting layer's
(:mod:`._report`), shared with the pytest plugin: both count and word results alike. The last line
a run prints is its verdict and why. Exit status, as pytest's: 0 when the run passed, 1 when it
failed (a required check failed or could not be verified, a recommended one under ``--strict``, an
expected failure or a baseline entry is stale or still TODO, a target verified nothing), 2 for
unusable arguments, 3 when torchcontract itself failed (an internal error: nothing is known about
the object), 4 when the checks ran but ``--json`` or ``--write-baseline`` could not be written (a
full disk; the file named is left as it was, the results are on the terminal). ``--json -`` writes
the JSON to standard output, and the human-readable report to standard error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import operator
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

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
from torchcontract.conformance._report.baseline import Baseline, BaselineError, read_baseline, write_baseline
from torchcontract.conformance._report.markdown import render_markdown
from torchcontract.conformance._report.outcomes import Policy, Problem
from torchcontract.conformance._report.plan import (
    BaselineUse,
    plan_baseline,
    unknown_tables,
    written_baseline,
)
from torchcontract.conformance._report.text import details, overview_table, report_block
from torchcontract.conformance._report.verdict import JudgedRun, judge, judge_run
from torchcontract.conformance._results import Report, RunReport, report_schema
from torchcontract.conformance._values.describe import describe

__all__ = ["main"]


class UsageError(Exception):
    """Unusable command-line arguments: exit status 2 with the message."""


EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL_ERROR, EXIT_NOT_WRITTEN = 0, 1, 2, 3, 4


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


def _import(module_name: str) -> Any:
    if (
        "/" in module_name
        or os.sep in module_name
        or (module_name.endswith(".py") and os.path.isfile(module_name))
    ):
        parts = [part for part in re.split(r"[/\\]", module_name.removesuffix(".py")) if part.strip(".")]
        if len(parts) > 1 and parts[0] == "src":  # the src layout: the package is what src holds
            parts = parts[1:]
        raise UsageError(
            f"{module_name!r} is a file path; give the module's dotted name as Python imports it (such as "
            f"{'.'.join(parts)!r})"
        )
    # Like `python -m`: modules in the current directory are importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except SystemExit as error:  # sys.exit(0) at import would otherwise exit 0 with nothing checked
        raise UsageError(
            f"importing {module_name!r} called sys.exit({error.code!r}); nothing was checked. Guard the "
            "module's script code with if __name__ == '__main__':"
        ) from None
    except Exception as error:
        hint = _import_hint(module_name, error)
        raise UsageError(f"cannot import {module_name!r}: {type(error).__name__}: {error}{hint}") from error


def _import_hint(module_name: str, error: Exception) -> str:
    """The way out of a module name that could not be imported: an attribute written with a dot
    instead of ``:``, or a package that is not on the import path."""
    if not isinstance(error, ModuleNotFoundError):
        return ""
    parent, _, attribute = module_name.rpartition(".")
    if parent and error.name == module_name:
        try:
            found = hasattr(importlib.import_module(parent), attribute)
        except Exception:  # the parent is no module either: nothing better to say
            found = False
        if found:
            return f"; to name {attribute!r} of module {parent!r}, write {parent}:{attribute}"
    if error.name == module_name.partition(".")[0]:
        return (
            f"; is the package {module_name.partition('.')[0]!r} installed in this environment "
            f"({sys.executable}), or on PYTHONPATH? The current directory is importable, as with python -m"
        )
    return ""


def _load(spec: str) -> Any:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"expected MODULE:ATTR (e.g. mypackage.data:train_set), got {spec!r}")
    module = _import(module_name)
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


def _given(spec: str, targets: list[Target], args: argparse.Namespace) -> list[Target]:
    """Targets as ``spec`` gives them: their protocols and options are their own."""
    if args.protocol or args.option:
        noun = "a Target" if len(targets) == 1 else "Targets"
        raise UsageError(
            f"{spec} gives {noun}: protocols and options come from the Target (--protocol and -o are for "
            "plain objects)"
        )
    return targets


def _targets_of(spec: str, args: argparse.Namespace) -> list[Target]:
    """The targets ``spec`` names: ``MODULE`` (every Target at its module level) or ``MODULE:ATTR``
    (an object, a factory, a Target, or a list of Targets, or a factory returning one)."""
    module_name, sep, attribute = spec.partition(":")
    if not module_name or (sep and not attribute):
        raise UsageError(f"expected MODULE or MODULE:ATTR (e.g. mypackage.data:train_set), got {spec!r}")
    if not sep:
        module = _import(module_name)
        # By identity: one Target bound to two names is one target.
        found = list({id(v): v for v in vars(module).values() if isinstance(v, Target)}.values())
        if not found:
            raise UsageError(
                f"module {module_name!r} defines no Target at module level; name an object, a factory or "
                f"a Target in it: {module_name}:ATTR"
            )
        return _given(spec, found, args)
    value = _load(spec)
    if _is_factory(value):
        try:
            value = value()
        except SystemExit as error:
            raise UsageError(f"{spec}() called sys.exit({error.code!r}); nothing was checked") from None
        except Exception as error:
            raise UsageError(f"{spec}() raised {type(error).__name__}: {error}") from error
    if isinstance(value, Target):
        return _given(spec, [value], args)
    if isinstance(value, (list, tuple)) and any(isinstance(item, Target) for item in value):
        for position, item in enumerate(value):
            if not isinstance(item, Target):
                raise UsageError(
                    f"{spec} gives a list of Targets, but item {position} is {describe(item)}; "
                    "give only Targets"
                )
        return _given(spec, list(value), args)
    if not args.protocol:
        raise UsageError(
            f"--protocol is needed to check {spec} (one of {', '.join(PROTOCOLS)}), or name a Target, a "
            "list of Targets, or a module that defines Targets"
        )
    try:
        protocol = protocol_by_name(args.protocol)
    except KeyError as error:
        raise UsageError(str(error.args[0])) from None
    options = dict(_parse_option(text) for text in args.option)
    try:
        return [Target(value, protocol, name=spec, options=Options.from_kwargs(options))]
    except TypeError as error:
        hint = ""
        if "example_inputs" in str(error):
            hint = f"; point at a function returning Target(obj, {protocol.__name__}, example_inputs=...)"
        raise UsageError(f"{error}{hint}") from None


def _targets(specs: Sequence[str], args: argparse.Namespace) -> list[Target]:
    """Every target the command line names, in order; their names must be unique (a baseline's
    tables and a report's entries are keyed by them)."""
    targets = [target for spec in specs for target in _targets_of(spec, args)]
    names = [target.name for target in targets]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(
            f"target names must be unique in a run (a baseline names its targets): {', '.join(repeated)} "
            "given twice; give one of them another name=",
        )
    if args.isolate:
        targets = [target if target.options.isolate else target.replace(isolate=True) for target in targets]
    for target in targets:  # refused before any target is checked
        _validate_run(target, args)
    return targets


def _validate_run(target: Target, args: argparse.Namespace) -> None:
    """What the target cannot be run with (more ranks than torchcontract starts, say): a usage error."""
    try:
        target.validate_run(args.device, args.time_budget)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None


def device_argument(text: str) -> str:
    """argparse ``type=`` for ``--device``."""
    try:
        return validate_device(text, "--device")
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _baseline_file(text: str) -> str:
    """argparse ``type=`` for ``--write-baseline``: a file, as ``--json``'s, never standard output."""
    if text == STANDARD_OUTPUT:
        raise argparse.ArgumentTypeError("name a file for the baseline ('-' is standard output)")
    return output_argument(text)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _Progress:
    """Which target is being checked, on a line of standard error rewritten in place: only when
    standard error is a terminal (a log or a pipe gets nothing of it)."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _is_terminal(self.stream)
        self.total = total
        self._width = 0

    def show(self, position: int, target: Target) -> None:
        if not self.enabled:
            return
        text = f"torchcontract: checking {position}/{self.total}: {target.name} ({target.protocol.__name__})"
        text = text[: max(shutil.get_terminal_size().columns - 1, 20)]  # a wrapped line cannot be rewritten
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def clear(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _shown_on(args: argparse.Namespace) -> TextIO:
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


def _read_baseline(path: str | None) -> Baseline:
    if path is None:
        return {}
    try:
        return read_baseline(path)
    except BaselineError as error:
        raise UsageError(str(error)) from None


def _policy(args: argparse.Namespace) -> Policy:
    return Policy(strict=args.strict)


def _planned(
    targets: Sequence[Target], args: argparse.Namespace
) -> tuple[list[Target], dict[tuple[str, str], BaselineUse], list[Problem]]:
    """The targets with their baseline tables applied, what each table changed, and the tables that
    name no target of the run."""
    baseline = _read_baseline(args.baseline)
    planned, uses = [], {}
    for declared in targets:
        target, use = plan_baseline(declared, baseline, args.baseline or "")
        planned.append(target)
        if use is not None:
            uses[target.name, target.protocol.__name__] = use
    return planned, uses, unknown_tables(baseline, (t.name for t in targets), args.baseline or "")


def _checked(
    targets: Sequence[Target], args: argparse.Namespace, finished: Callable[[Report], None] | None = None
) -> RunReport:
    """Check every target, one after the other, in this process; ``finished`` is called with each
    report as it is made."""
    progress = _Progress(len(targets))
    reports = []
    try:
        for position, target in enumerate(targets, start=1):
            progress.show(position, target)
            report = target.run(args.device, args.time_budget)
            progress.clear()
            reports.append(report)
            if finished is not None:
                finished(report)
    finally:
        progress.clear()
    return RunReport(tuple(reports))


def _finish(args: argparse.Namespace, judged: JudgedRun, out: TextIO) -> int:
    """Write the files the run was asked for, print its closing line (also on standard error when
    the Markdown goes to standard output, where a CI job's summary collects it) and give its exit
    status."""
    if args.json:
        _write_json(judged.run, args.json)
    if args.write_baseline:
        write_baseline(
            args.write_baseline, written_baseline(judged.run, _read_baseline(args.baseline), judged.policy)
        )
    if args.json and args.json != STANDARD_OUTPUT and args.format == "text":
        print(f"JSON report: {args.json}", file=out)
    if args.write_baseline and args.format == "text":
        print(f"baseline written: {args.write_baseline}", file=out)
    closing = judged.closing_line(prefix=f"torchcontract {args.command}")
    print(closing, file=out if args.format == "text" else sys.stderr, flush=True)
    if judged.internal_error:
        return EXIT_INTERNAL_ERROR
    return EXIT_PASSED if judged.passed else EXIT_FAILED


def _command_check(args: argparse.Namespace) -> int:
    targets, uses, problems = _planned(_targets(args.target, args), args)
    policy, out = _policy(args), _shown_on(args)

    def show(report: Report) -> None:  # each target's block as soon as it is checked
        verdict = judge(report, policy, uses.get((report.target, report.protocol)))
        print(report_block(report, verdict, policy), file=out, flush=True)

    run = _checked(targets, args, show if args.format == "text" else None)
    judged = judge_run(run, policy, uses, problems)
    if args.format == "markdown":
        print(render_markdown(judged), file=out)
    else:
        if len(run.reports) > 1:
            print(file=out)
            print(overview_table(judged.pairs(), policy), file=out)
        for problem in judged.problems:
            print(problem.detail or problem.summary, file=out)
    return _finish(args, judged, out)


@contextmanager
def _default_targets() -> Iterator[list[Target]]:
    """The targets of the conformance table of the reference implementation, torch and torchvision."""
    from torchcontract.conformance._runtime import fresh as _fresh_interpreter
    from torchcontract.conformance._targets.defaults import default_targets

    # The report's datasets are rebuilt in the fresh interpreter, torch's and torchvision's among them:
    # started now, it imports those while this process does (on another core) and builds the targets.
    _fresh_interpreter.prestart(
        tuple(name for name in _fresh_interpreter.ON_DEMAND if importlib.util.find_spec(name) is not None)
    )
    with tempfile.TemporaryDirectory(prefix="torchcontract-report-") as workdir:
        yield default_targets(Path(workdir))


def _command_report(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    policy, out = _policy(args), _shown_on(args)
    if args.target:
        targets, uses, problems = _planned(_targets(args.target, args), args)
        run = _checked(targets, args)
    else:
        if args.protocol or args.option or args.isolate:
            raise UsageError("--protocol, -o and --isolate are for the targets you name; none is named")
        with _default_targets() as declared:
            targets, uses, problems = _planned(declared, args)
            run = _checked(targets, args)
    judged = judge_run(run, policy, uses, problems)
    if args.format == "markdown":
        print(render_markdown(judged), file=out)
        return _finish(args, judged, out)
    print(overview_table(judged.pairs(), policy), file=out)
    text = details(judged.pairs(), policy)
    if text:
        print(file=out)
        print(text, file=out)
    for problem in judged.problems:
        print(problem.detail or problem.summary, file=out)
    versions = run.environment
    print(file=out)
    print(
        f"torch {versions['torch'] or 'not used'}, "
        f"torchvision {versions['torchvision'] or 'not used'}, numpy {versions['numpy']}; "
        f"{time.perf_counter() - started:.1f} s",
        file=out,
    )
    return _finish(args, judged, out)


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
        judged = judge_run(RunReport((report,)), Policy())
        if rank == 0:
            out = _shown_on(args)
            if args.format == "markdown":
                print(render_markdown(judged), file=out)
            else:
                print(report_block(report, judged.verdicts[0]), file=out)
            if args.json:
                _write_json(judged.run, args.json)
            print(
                judged.closing_line(prefix=f"torchcontract {args.command}"),
                file=out if args.format == "text" else sys.stderr,
                flush=True,
            )
    status = EXIT_INTERNAL_ERROR if judged.internal_error else EXIT_PASSED if judged.passed else EXIT_FAILED
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
        command.add_argument(
            "--write-baseline",
            metavar="PATH",
            type=_baseline_file,
            help="write this run's failed checks to a baseline file at PATH, with the reason TODO (the "
            "entries of --baseline that still fail keep their reasons)",
        )
        command.add_argument(
            "--strict",
            action="store_true",
            help="a failed (or unverified) recommended check fails the run too, not only warns",
        )
        command.add_argument("--protocol", help=f"for plain objects: one of {', '.join(PROTOCOLS)}")
        command.add_argument(
            "-o",
            "--option",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="for plain objects: a target option, e.g. deterministic=false (repeatable)",
        )
        command.add_argument(
            "--isolate",
            action="store_true",
            help="run each target's checks in a child process: a crash of the object fails a check, "
            "not the run",
        )

    targets_help = (
        "MODULE:ATTR (an object, a zero-argument factory, a Target, a list of Targets or a factory "
        "returning one) or MODULE (every Target defined at its module level)"
    )
    check = commands.add_parser(
        "check", help="check objects against their protocols, one block of lines per target"
    )
    check.add_argument("target", nargs="+", metavar="TARGET", help=targets_help)
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
    report = commands.add_parser(
        "report",
        help="the conformance table of your targets, or without any, of the reference implementation, "
        "torch and torchvision",
    )
    report.add_argument("target", nargs="*", metavar="TARGET", help=targets_help)
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
