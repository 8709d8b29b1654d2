"""The settings the CLI and the pytest plugin take, validated at parse time (argparse ``type=``).

Light on purpose: the plugin is imported at every pytest start, so this module imports neither
NumPy nor the engine (torch only to recognise an unusual device name).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path

__all__ = [
    "DEFAULT_DISTRIBUTED_TIME_BUDGET_S",
    "DEFAULT_TIME_BUDGET_S",
    "LAUNCHER_VARIABLES",
    "MAX_STARTED_RANKS",
    "MAX_TIME_BUDGET_S",
    "MAX_WORLD_SIZE",
    "STANDARD_OUTPUT",
    "devices_argument",
    "launched",
    "output_argument",
    "output_file_problem",
    "readable_file",
    "spanning_processes_limit_s",
    "started_ranks_problem",
    "time_budget_argument",
    "validate_device",
    "validate_time_budget",
    "world_size_argument",
    "world_size_problem",
    "writable_file",
]

DEFAULT_TIME_BUDGET_S = 30.0
# check_distributed's (and the CLI's check-distributed): a whole process group's run per clause.
DEFAULT_DISTRIBUTED_TIME_BUDGET_S = 60.0
# A week: beyond it a budget is a typo (and threading's waits overflow near 1e9 s).
MAX_TIME_BUDGET_S = 7 * 24 * 3600.0


def validate_time_budget(time_budget_s: object, what: str = "time_budget_s") -> float:
    """``time_budget_s`` as a float; TypeError for a non-number, ValueError for one that is not a
    positive, finite number of seconds up to :data:`MAX_TIME_BUDGET_S`."""
    if isinstance(time_budget_s, bool) or not isinstance(time_budget_s, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {time_budget_s!r}")
    budget = float(time_budget_s) if isinstance(time_budget_s, float) or time_budget_s < 2**53 else math.inf
    if not (math.isfinite(budget) and 0 < budget <= MAX_TIME_BUDGET_S):
        raise ValueError(
            f"{what} must be a positive, finite number of seconds up to {MAX_TIME_BUDGET_S:g}, "
            f"not {time_budget_s!r}"
        )
    return budget


def spanning_processes_limit_s(time_budget_s: float) -> float:
    """The bound on a whole clause that starts processes (DataLoader workers, the ranks of a process
    group), or on a process group's collectives: such a clause bounds each of its waits by the time
    budget, so it gets several, and a minute more for starting the processes (importing torch in
    each)."""
    return 4 * time_budget_s + 60.0


def time_budget_argument(text: str) -> float:
    """argparse ``type=`` for a time budget (the CLI's and the plugin's): a usage error at parse time."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    try:
        return validate_time_budget(seconds, "the time budget")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


_DEVICE_NAME = re.compile(r"^(cpu|cuda|mps|xpu)(:\d+)?$")


def validate_device(device: object, what: str = "device") -> str:
    """``device`` if it names a device the checks can use: TypeError for a non-string, ValueError
    for a name that torch (or, without torch, the known device names) does not recognise."""
    if not isinstance(device, str) or not device.strip():
        raise TypeError(f"{what} must be a device name such as 'cpu' or 'cuda', not {device!r}")
    if device.split(":")[0] == "meta":
        # The device clauses compare values computed there with the CPU's: meta tensors hold none.
        raise ValueError(
            f"{what} {device!r} holds no data, so nothing computed there can be compared; name an "
            "accelerator such as 'cuda' (module.builds_on_meta_device already checks the meta device)"
        )
    if _DEVICE_NAME.match(device):
        return device
    # Any other name torch knows (privateuse backends) is a device; torch is imported only here.
    torch = sys.modules.get("torch")
    if torch is None:
        import importlib.util

        if importlib.util.find_spec("torch") is not None:
            import torch
    if torch is not None:
        try:
            torch.device(device)
        except (RuntimeError, ValueError):
            pass
        else:
            return device
    raise ValueError(f"{what} {device!r} is not a device torch knows (e.g. 'cpu', 'cuda', 'cuda:1')")


def devices_argument(text: str) -> list[str]:
    """argparse ``type=`` for a comma-separated list of device names."""
    devices = [device.strip() for device in text.split(",") if device.strip()]
    if not devices:
        raise argparse.ArgumentTypeError("needs at least one device, e.g. cpu,cuda")
    try:
        return [validate_device(device, "device") for device in devices]
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# The most ranks a sampler's clauses build (in this process, one sampler each: far beyond the largest
# jobs, which run tens of thousands of ranks), and the most ranks torchcontract starts as processes of
# its own (check_distributed outside torchrun: one process each, on this machine; a test of the
# loaders' sharding needs a few, and hundreds would only exhaust the machine).
MAX_WORLD_SIZE = 65_536
MAX_STARTED_RANKS = 64


def world_size_problem(world_size: int) -> str | None:
    """Why ``world_size`` (an int) is no number of ranks the checks can use, said of it ("must be at
    least 2, got 1"), or None."""
    if world_size < 2:
        return f"must be at least 2, got {world_size}"
    if world_size > MAX_WORLD_SIZE:
        return (
            f"is {world_size}, more ranks than the checks build (at most {MAX_WORLD_SIZE}: a sampler's "
            "rank samplers are built in this process, one per rank)"
        )
    return None


def started_ranks_problem(world_size: int) -> str | None:
    """Why torchcontract cannot start ``world_size`` ranks as processes of its own, said of it, or
    None."""
    if world_size > MAX_STARTED_RANKS:
        return (
            f"is {world_size}, more ranks than torchcontract starts as processes on this machine (at most "
            f"{MAX_STARTED_RANKS}: one process each); run a larger group under torchrun, where the job's "
            "own process group is used"
        )
    return None


def world_size_argument(text: str) -> int:
    """argparse ``type=`` for a number of ranks (at least 2, at most :data:`MAX_WORLD_SIZE`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer number of ranks, got {text!r}") from None
    problem = world_size_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def output_file_problem(text: str) -> str | None:
    """Why a report cannot be written to ``text``, or None (:func:`torchcontract._files.output_problem`)."""
    from torchcontract._files import output_problem

    return output_problem(text)


#: The name under which the CLI's ``--json`` writes to standard output.
STANDARD_OUTPUT = "-"


def writable_file(text: str) -> str:
    """argparse ``type=`` for an output file (``--conformance-report``): refused at parse time, before
    a long run, when it names a directory, lies under a regular file, or cannot be created."""
    if text == STANDARD_OUTPUT:
        raise argparse.ArgumentTypeError(
            "'-' (standard output) is pytest's own report; name a file for this one"
        )
    problem = output_file_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def output_argument(text: str) -> str:
    """argparse ``type=`` for the CLI's ``--json``: a file, as :func:`writable_file`, or ``-`` for
    standard output."""
    if text == STANDARD_OUTPUT:
        return text
    problem = output_file_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def readable_file(text: str) -> str:
    """argparse ``type=`` for an input file (a baseline): it must exist and be a file."""
    path = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("expected a file path, got an empty string")
    if not path.is_file():
        problem = "is not a file" if path.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return text


# What torchrun (torch.distributed.run) sets in every rank it starts.
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """True when this process is a rank started by a launcher (torchrun sets every LAUNCHER_VARIABLES)."""
    return all(os.environ.get(name) for name in LAUNCHER_VARIABLES)
