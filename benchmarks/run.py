"""Benchmarks of the reference implementation against torch, and of the conformance suite's own cost,
measured in the same run.

    python benchmarks/run.py [--only epoch linear suite modules] [--repeats N] [--torchvision-epochs N]
                             [--suite-repeats N] [--pytest-repeats N] [--check-repeats N]
                             [--module-repeats N]

1. One shuffled epoch of 60,000 MNIST-format images (synthetic IDX files written to a temporary
   folder), batch 64: the reference MNIST + DataLoader, torchvision's MNIST(transform=PILToTensor())
   + torch's DataLoader, and the NumPy floor (one permutation, then per batch ``images[idx]`` and
   ``labels[idx].astype(np.int64)``, nothing per sample). Goals: >= 100x faster than torchvision,
   within 1.5x of the floor.
2. Linear(784 -> 512) forward + backward on a (256, 784) float32 batch, against torch.nn.Linear
   with the same weights (and an input that requires grad, so both compute the input gradient).
   Goal: at most 1.1x torch's time.

3. The suite: what a conformance run costs beyond the work it must do, as ratios beside their goals,
   each of the commands run alternately (interleaved, so that a burst of load elsewhere hits them
   alike) in fresh processes, medians of ``--suite-repeats`` runs:
   a. a cold ``check()`` of a 60,000-image MNIST (the bundled sample tiled into IDX files in a
      temporary folder) with every clause: the reference MNIST against the same script stopping
      after its imports and building the dataset (goal <= 1.3x); torchvision's against that plus a
      fresh interpreter importing what the dataset needs (``imports_for``: the spawn clause rebuilds
      the dataset in one, so that import is part of the floor; goal <= 1.15x);
   b. ``torchcontract report`` against a process that only imports torch, torchvision and
      ``torchcontract.conformance`` (its engine loaded) (goal <= 2x), and where the report's time goes:
      its targets and costliest clauses, from one more run's ``--json`` durations;
   c. pytest's start-up for a test file that does not use the plugin, with the plugin against
      ``-p no:torchcontract`` (``--pytest-repeats`` runs each; goal <= 1.02x);
   d. in one process, ``check()`` of a map-style dataset of length 10**11 that computes its samples
      from the index against the same dataset of length 10**3 (``--check-repeats`` runs each,
      after one warm-up of each; goal <= 1.1x).

4. Modules: ``check(model, Module)`` (torchvision, a factory, every default clause, a batch of 2)
   against one training step of the same model and batch (forward and backward), interleaved after
   a warm-up, medians: resnet18 at 64x64 (``--module-repeats`` checks) and a large model at 224x224
   (``--large-model``, ``--large-repeats`` checks); goal: at most 15 steps each. Each registered Module
   clause's cost in steps is listed from the reports' per-check durations (a clause added later is
   listed without editing this file), with the engine's own time between the clauses. The opt-in
   ``compile=True, export=True`` run of resnet18 is shown beside them.

Times are the best of ``--repeats`` runs (medians in brackets): the minimum is the least disturbed
by other processes. torch and torchvision are optional: without them their rows are skipped.
On a busy machine, multi-threaded BLAS timings swing wildly; compare single-threaded with
``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/run.py`` (NumPy's OpenBLAS and torch
both read these).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from torchcontract.reference_impl import MNIST, DataLoader, Linear, sample_root, write_idx

N_IMAGES = 60_000
BATCH = 64


def timings(run: Callable[[], object], repeats: int) -> list[float]:
    result = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        result.append(time.perf_counter() - start)
    return result


def show(name: str, times: list[float], unit: float = 1e3, suffix: str = "ms") -> float:
    best = min(times)
    print(f"  {name:<50} {best * unit:9.2f} {suffix}  [median {statistics.median(times) * unit:.2f}]")
    return best


def write_synthetic_mnist(root: Path) -> None:
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    # torchvision needs all four files, uncompressed; the test split is small.
    for prefix, count in (("train", N_IMAGES), ("t10k", 1_000)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, size=count, dtype=np.uint8))


def epoch_benchmark(root: Path, repeats: int, torchvision_epochs: int) -> None:
    print(f"One shuffled epoch, {N_IMAGES:,} images, batch {BATCH}:")
    dataset = MNIST(root, train=True)
    # The floor works on in-memory copies (uint8 labels, as in the file); the reference on the maps.
    images, labels = np.array(dataset.data), dataset.targets.astype(np.uint8)
    floor_rng = np.random.default_rng(0)

    def floor_epoch() -> None:
        order = floor_rng.permutation(N_IMAGES)
        for start in range(0, N_IMAGES, BATCH):
            index = order[start : start + BATCH]
            images[index], labels[index].astype(np.int64)

    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, seed=0)

    def reference_epoch() -> None:
        for _batch in loader:
            pass

    # Interleaved, so that a burst of load elsewhere hits both alike.
    floor_times: list[float] = []
    reference_times: list[float] = []
    for _ in range(repeats):
        floor_times += timings(floor_epoch, 1)
        reference_times += timings(reference_epoch, 1)
    floor = show("NumPy floor", floor_times)
    reference = show("reference MNIST + DataLoader", reference_times)

    vision = None
    try:
        import torch.utils.data
        import torchvision
        from torchvision.transforms import PILToTensor
    except ImportError:
        print("  torchvision MNIST + torch DataLoader                skipped: torchvision not installed")
    else:
        tv_dataset = torchvision.datasets.MNIST(str(root), train=True, transform=PILToTensor())
        tv_loader = torch.utils.data.DataLoader(tv_dataset, batch_size=BATCH, shuffle=True)

        def torchvision_epoch() -> None:
            for _batch in tv_loader:
                pass

        vision = show(
            "torchvision MNIST(PILToTensor) + torch DataLoader",
            timings(torchvision_epoch, torchvision_epochs),
        )

    print(f"  reference / floor: {reference / floor:.2f}x (goal <= 1.5x)")
    if vision is not None:
        print(
            f"  torchvision / reference: {vision / reference:.0f}x (the reference's speed-up; goal >= 100x)"
        )


def linear_benchmark(repeats: int) -> None:
    print("Linear(784 -> 512) forward + backward, (256, 784) float32:")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 784), dtype=np.float32)
    grad = rng.standard_normal((256, 512), dtype=np.float32)
    layer = Linear(784, 512, rng=rng)

    def reference_fwd_bwd() -> None:
        layer.zero_grad()
        layer(x)
        layer.backward(grad)

    try:
        import torch
    except ImportError:
        show("reference", timings(reference_fwd_bwd, repeats * 20))
        print("  torch.nn.Linear                                    skipped: torch not installed")
        return
    torch_layer = torch.nn.Linear(784, 512)
    with torch.no_grad():
        torch_layer.weight.copy_(torch.from_numpy(layer.weight.data))
        torch_layer.bias.copy_(torch.from_numpy(layer.bias.data))  # type: ignore[union-attr]
    tx = torch.from_numpy(x).requires_grad_(True)
    tgrad = torch.from_numpy(grad)

    def torch_fwd_bwd() -> None:
        torch_layer.zero_grad(set_to_none=True)
        tx.grad = None
        torch_layer(tx).backward(tgrad)

    for step in (reference_fwd_bwd, torch_fwd_bwd):  # warm-up
        timings(step, 5)
    reference_times: list[float] = []
    torch_times: list[float] = []
    for _ in range(repeats * 4):
        reference_times += timings(reference_fwd_bwd, 5)
        torch_times += timings(torch_fwd_bwd, 5)
    reference = show("reference Linear", reference_times, 1e6, "us")
    torch_time = show("torch.nn.Linear", torch_times, 1e6, "us")
    print(f"  reference / torch: {reference / torch_time:.2f}x (goal <= 1.1x)")


# -- the suite's own cost ---------------------------------------------------------------------------


class ComputedDataset:
    """A map-style dataset of any length whose samples are computed from the index (no storage)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[np.ndarray[tuple[int], np.dtype[np.float32]], int]:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"indices must be integers, not {type(index).__name__}")
        position = int(index) + self.length if index < 0 else int(index)
        if not 0 <= position < self.length:
            raise IndexError(f"index {index} out of range for length {self.length}")
        return np.full(4, position % 251, dtype=np.float32), position % 10


COLD_CHECK_SCRIPT = """\
import sys

import torch
import torchvision

from torchcontract.conformance import check
from torchcontract.protocols import MapDataset
from torchcontract.reference_impl import MNIST

if sys.argv[2] == "reference":
    dataset = MNIST(sys.argv[1], train=True)
else:
    dataset = torchvision.datasets.MNIST(sys.argv[1], train=True)
assert len(dataset) == 60_000
if sys.argv[3] == "check":
    report = check(dataset, MapDataset)
    sys.exit(0 if report.passed else 1)
"""
IMPORTS_ONLY = "import torch, torchvision, torchcontract.conformance as c; c.check; c.CHECKS"


def write_tiled_mnist(root: Path, train_images: int = N_IMAGES, test_images: int = 10_000) -> None:
    """A full-size MNIST (torchvision's layout, uncompressed) tiled from the bundled sample."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for train, prefix, count in ((True, "train", train_images), (False, "t10k", test_images)):
        sample = MNIST(sample_root(), train=train)
        tiles = -(-count // len(sample))
        images = np.tile(np.asarray(sample.data), (tiles, 1, 1))[:count]
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        labels = np.tile(sample.targets.astype(np.uint8), tiles)[:count]
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


# The fresh processes run as from an installed package, whose bytecode pip writes: without it (an
# editable install under PYTHONDONTWRITEBYTECODE) each start compiles torchcontract's modules from
# source, ~10 ms of the plugin's start-up (c) that no user pays.
MEASURED_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def fresh_process_times(
    commands: dict[str, Sequence[str]], repeats: int, cwd: Path
) -> tuple[dict[str, list[float]], dict[str, set[int]]]:
    """Wall-clock seconds of each command, run alternately ``repeats`` times in fresh processes."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    statuses: dict[str, set[int]] = {name: set() for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            start = time.perf_counter()
            done = subprocess.run(command, cwd=cwd, env=MEASURED_ENV, capture_output=True, check=False)
            times[name].append(time.perf_counter() - start)
            statuses[name].add(done.returncode)
            if done.returncode not in (0, 1):
                tail = done.stderr.decode(errors="replace")[-2000:]
                print(f"  warning: {name} exited with {done.returncode}:\n{textwrap.indent(tail, '    ')}")
    return times, statuses


def show_ratio(
    label: str, measured: list[float], baseline: list[float], goal: float, unit: str = "s"
) -> None:
    scale = 1e3 if unit == "ms" else 1.0
    ratio = statistics.median(measured) / statistics.median(baseline)
    verdict = "met" if ratio <= goal else "not met"
    print(
        f"  {label}: {statistics.median(measured) * scale:.2f} {unit} / "
        f"{statistics.median(baseline) * scale:.2f} {unit} = {ratio:.3f}x (goal <= {goal}x) {verdict}"
    )


def _fresh_interpreter_imports(kind: str, root: Path) -> tuple[str, ...]:
    """What the fresh interpreter imports to rebuild the dataset (the spawn clause's)."""
    if kind == "reference":
        return ()
    import torchvision

    from torchcontract.conformance._runtime.fresh import imports_for

    return imports_for(torchvision.datasets.MNIST(str(root), train=True))


def report_breakdown(command: Sequence[str], cwd: Path) -> None:
    """Where ``torchcontract report``'s time goes: its targets, and its costliest clauses over them."""
    import json

    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=MEASURED_ENV, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    try:
        reports = json.loads((cwd / "report.json").read_text())["targets"]
    except (OSError, ValueError, KeyError) as error:
        print(f"    (no breakdown: the report's --json could not be read: {error})")
        return
    by_target = {r["target"]: sum(c["duration_s"] for c in r["results"]) for r in reports}
    by_clause: dict[str, float] = {}
    for report in reports:
        for result in report["results"]:
            by_clause[result["check_id"]] = by_clause.get(result["check_id"], 0.0) + result["duration_s"]
    checks = sum(by_target.values())
    print(
        f"    one more run: {elapsed:.2f} s, of which the checks {checks:.2f} s "
        f"(the rest: start-up, imports, building the targets)"
    )
    targets = ", ".join(
        f"{name} {seconds:.2f} s" for name, seconds in sorted(by_target.items(), key=lambda x: -x[1])[:6]
    )
    print(f"    costliest targets: {targets}")
    costly = sorted(by_clause.items(), key=lambda item: -item[1])[:6]
    print(f"    costliest clauses: {', '.join(f'{name} {seconds:.2f} s' for name, seconds in costly)}")


def suite_benchmark(repeats: int, pytest_repeats: int, check_repeats: int) -> None:
    print(
        f"Suite (medians of interleaved runs; {os.cpu_count()} cores, shared: timings are noisy, "
        "compare the medians of one run only):"
    )
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
        print("  skipped: torch and torchvision are not installed")
        return
    python = sys.executable
    console_script = Path(python).with_name("torchcontract")
    report = [str(console_script)]
    if not console_script.exists():
        report = [python, "-m", "torchcontract.conformance.cli"]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        write_tiled_mnist(work / "data")
        script = work / "cold_check.py"
        script.write_text(COLD_CHECK_SCRIPT)
        for kind in ("reference", "torchvision"):
            commands = {
                "check": [python, str(script), str(work / "data"), kind, "check"],
                "imports": [python, str(script), str(work / "data"), kind, "imports"],
            }
            fresh_imports = _fresh_interpreter_imports(kind, work / "data")
            if fresh_imports:
                commands["fresh"] = [python, "-c", f"import {', '.join(fresh_imports)}"]
            times, statuses = fresh_process_times(commands, repeats, work)
            passed = "passed" if statuses["check"] == {0} else f"exit statuses {sorted(statuses['check'])}"
            if kind == "reference":
                show_ratio(
                    f"(a) cold check(reference MNIST(60,000), MapDataset) [{passed}] / imports + dataset, "
                    f"{repeats} runs each",
                    times["check"],
                    times["imports"],
                    1.3,
                )
                continue
            floor = times["imports"]
            if "fresh" in times:
                # The floor: the user's process, and the fresh interpreter's imports, one after the other.
                floor = [statistics.median(times["imports"]) + statistics.median(times["fresh"])]
            show_ratio(
                f"(a) cold check(torchvision MNIST(60,000), MapDataset) [{passed}] / imports + dataset "
                f"+ a fresh interpreter's import of {', '.join(fresh_imports) or 'nothing'} "
                f"({statistics.median(times.get('fresh', [0.0])):.2f} s), {repeats} runs each",
                times["check"],
                floor,
                1.15,
            )
        report_dir = work / "report"
        report_dir.mkdir()
        times, _ = fresh_process_times(
            {"report": [*report, "report"], "imports": [python, "-c", IMPORTS_ONLY]}, repeats, report_dir
        )
        show_ratio(
            "(b) torchcontract report / import torch, torchvision, torchcontract.conformance, "
            f"{repeats} runs each",
            times["report"],
            times["imports"],
            2.0,
        )
        report_breakdown([*report, "report", "--json", str(report_dir / "report.json")], report_dir)
        tests = work / "pytest"
        tests.mkdir()
        (tests / "test_trivial.py").write_text("def test_trivial():\n    assert True\n")
        pytest = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_trivial.py"]
        times, _ = fresh_process_times(
            {"with": pytest, "without": [*pytest, "-p", "no:torchcontract"]}, pytest_repeats, tests
        )
        show_ratio(
            f"(c) pytest start-up with the plugin / -p no:torchcontract, {pytest_repeats} runs each",
            times["with"],
            times["without"],
            1.02,
            "ms",
        )
    from torchcontract.conformance import check
    from torchcontract.protocols import MapDataset

    lengths = {"big": 10**11, "small": 10**3}
    check_times: dict[str, list[float]] = {name: [] for name in lengths}
    failed: set[str] = set()
    for round_ in range(check_repeats + 1):  # round 0 warms up (the fresh-interpreter server starts)
        for name, length in lengths.items():
            start = time.perf_counter()
            result = check(ComputedDataset(length), MapDataset)
            elapsed = time.perf_counter() - start
            if not result.passed:
                failed.add(name)
            if round_:
                check_times[name].append(elapsed)
    note = f" [did not pass: {sorted(failed)}]" if failed else ""
    show_ratio(
        f"(d) check() of a computed dataset, len 10**11 / len 10**3, in-process{note}, "
        f"{check_repeats} runs each after a warm-up",
        check_times["big"],
        check_times["small"],
        1.1,
    )


# -- what a check of a module costs, in training steps of the same model ----------------------------

# The models of section 4: (name, its torchvision builder's keyword arguments, the side of the square
# images of a batch of 2). resnet18 is the small one; the large one is chosen with --large-model.
SMALL_MODEL = ("resnet18", {"num_classes": 10}, 64)
LARGE_MODELS = {"convnext_small": ({}, 224), "vit_b_16": ({}, 224)}
# A check of a large model on a busy machine takes longer than the default budget of a check: a check
# given up on would be unverified, and cheaper, so every check here has this budget.
MODULE_TIME_BUDGET_S = 600.0
MODULE_GOAL_STEPS = 15.0


def _training_step(model: object, inputs: tuple[object, ...]) -> Callable[[], None]:
    """One training step of ``model`` on ``inputs``: forward and backward of the same batch (its gradients
    cleared first, and after, so that the checked module holds none)."""

    def step() -> None:
        model.zero_grad(set_to_none=True)  # type: ignore[attr-defined]
        model(*inputs).sum().backward()  # type: ignore[operator]
        model.zero_grad(set_to_none=True)  # type: ignore[attr-defined]

    return step


def module_cost(name: str, kwargs: dict[str, object], side: int, repeats: int, opt_in: bool) -> None:
    """``check(model, Module)`` with a factory and the default clauses against one training step of the
    same model and batch, interleaved (medians), and what each registered Module clause costs in steps
    (from the reports' per-check durations: a clause added later is listed without editing this)."""
    import torch
    import torchvision

    from torchcontract.conformance import check, checks_for
    from torchcontract.protocols import Module

    build = getattr(torchvision.models, name)
    torch.manual_seed(0)
    model = build(weights=None, **kwargs)
    inputs = (torch.randn(2, 3, side, side),)

    def factory() -> object:
        return build(weights=None, **kwargs)

    durations: dict[tuple[str, str | None], list[float]] = {}
    statuses: dict[tuple[str, str | None], set[str]] = {}
    failed: list[str] = []
    in_clauses: list[float] = []  # per run of the check: the time its clauses took, together

    # The opt-in clauses' own costs, from the opt-in runs (skipped, so absent, in the default runs).
    opted_durations: dict[str, list[float]] = {}

    def checked(example: tuple[object, ...] = inputs, **options: object) -> Callable[[], None]:
        def run() -> None:
            report = check(
                model,
                Module,
                example_inputs=example,
                factory=factory,
                time_budget_s=MODULE_TIME_BUDGET_S,
                **options,
            )
            if not report.passed:
                failed.append(str(report))
            if not options:
                in_clauses.append(sum(result.duration_s for result in report.results))
                for result in report.results:
                    key = (result.check_id, result.dtype)
                    durations.setdefault(key, []).append(result.duration_s)
                    statuses.setdefault(key, set()).add(result.status)
            else:
                by_default = {key[0] for key, seen in statuses.items() if "passed" in seen}
                for result in report.results:
                    if result.status == "passed" and result.check_id not in by_default:
                        opted_durations.setdefault(result.check_id, []).append(result.duration_s)

        return run

    step, whole = _training_step(model, inputs), checked()
    step()  # warm-up: torch's first calls
    whole()  # warm-up: the first check's imports (TorchDynamo's, for functional_call)
    durations.clear()
    in_clauses.clear()
    steps: list[float] = []
    checks: list[float] = []
    for _ in range(repeats):
        steps += timings(step, 3)
        checks += timings(whole, 1)
    one_step = statistics.median(steps)
    ratio = statistics.median(checks) / one_step
    verdict = "met" if ratio <= MODULE_GOAL_STEPS else "not met"
    passed = "passed" if not failed else "did not pass"
    print(
        f"  {name}, batch (2, 3, {side}, {side}), {sum(p.numel() for p in model.parameters()):,} parameters "
        f"[{passed}]: check {statistics.median(checks):.2f} s / step {one_step * 1e3:.1f} ms = {ratio:.1f} "
        f"steps (goal <= {MODULE_GOAL_STEPS:g} steps) {verdict}"
    )
    if failed:
        print(textwrap.indent(failed[0], "    "))
    print("    clause                                                  steps  (median ms; status)")
    registered = [spec.check_id for spec in checks_for(Module)]
    rows = [(key, statistics.median(values)) for key, values in durations.items()]
    for (check_id, dtype), median in sorted(rows, key=lambda row: (-row[1], row[0][0])):
        label = check_id if dtype is None else f"{check_id}[{dtype}]"
        shown = "/".join(sorted(statuses[(check_id, dtype)]))
        print(f"    {label:<55} {median / one_step:6.2f}  ({median * 1e3:.0f} ms; {shown})")
    missing = [check_id for check_id in registered if not any(key[0] == check_id for key in durations)]
    if missing:
        print(f"    not in the report: {', '.join(missing)}")
    # Per run, then the median: the clauses' medians above come from different runs.
    between = statistics.median(
        whole_s - clauses_s for whole_s, clauses_s in zip(checks, in_clauses, strict=True)
    )
    print(f"    {'the clauses, together':<55} {statistics.median(in_clauses) / one_step:6.2f}")
    print(f"    {'the engine around them (snapshot, threads, report)':<55} {between / one_step:6.2f}")
    if opt_in:
        opted = statistics.median(timings(checked(compile=True, export=True), max(1, repeats // 2)))
        print(f"    with compile=True, export=True (opt-in): {opted:.2f} s = {opted / one_step:.1f} steps")
        # gradcheck in float64 costs minutes on this batch: once, on one small image, as its guide advises.
        small = (torch.randn(1, 3, 32, 32),)
        gradchecked = statistics.median(timings(checked(small, gradcheck=True), 1))
        print(
            f"    with gradcheck=True (opt-in), batch (1, 3, 32, 32), once: {gradchecked:.2f} s = "
            f"{gradchecked / one_step:.1f} steps of the batch above"
        )
        for check_id, values in sorted(opted_durations.items(), key=lambda item: -statistics.median(item[1])):
            median = statistics.median(values)
            print(f"      {check_id:<53} {median / one_step:6.2f}  ({median * 1e3:.0f} ms; opt-in)")


def module_benchmark(repeats: int, large: str, large_repeats: int) -> None:
    print("check(model, Module) with a factory, default clauses, in training steps of the same model:")
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
        print("  skipped: torch and torchvision are not both installed")
        return
    name, kwargs, side = SMALL_MODEL
    module_cost(name, kwargs, side, repeats, opt_in=True)
    if large != "none":
        large_kwargs, large_side = LARGE_MODELS[large]
        module_cost(large, large_kwargs, large_side, large_repeats, opt_in=False)


SECTIONS = ("epoch", "linear", "suite", "modules")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--torchvision-epochs", type=int, default=1)
    parser.add_argument("--suite-repeats", type=int, default=5, help="fresh processes of each kind (a, b)")
    parser.add_argument("--pytest-repeats", type=int, default=21, help="pytest start-ups of each kind (c)")
    # (d) compares two checks of ~0.15 s whose worker forks swing by 50 ms: 15 of each for a stable median.
    parser.add_argument("--check-repeats", type=int, default=15, help="in-process checks of each length (d)")
    parser.add_argument("--module-repeats", type=int, default=5, help="checks of resnet18 (4)")
    parser.add_argument(
        "--large-model",
        choices=[*LARGE_MODELS, "none"],
        default="convnext_small",
        help="the large model of (4)",
    )
    parser.add_argument("--large-repeats", type=int, default=2, help="checks of the large model (4)")
    args = parser.parse_args()
    threads = {name: os.environ.get(name, "default") for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    print(f"CPU cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}, NumPy {np.__version__}")
    print(f"threads: {threads}")
    if "PYTHONDONTWRITEBYTECODE" in os.environ:
        print("bytecode: cached by the measured fresh processes (PYTHONDONTWRITEBYTECODE unset for them)")
    if "epoch" in args.only:
        with tempfile.TemporaryDirectory() as folder:
            write_synthetic_mnist(Path(folder))
            epoch_benchmark(Path(folder), args.repeats, args.torchvision_epochs)
    if "linear" in args.only:
        linear_benchmark(args.repeats)
    if "suite" in args.only:
        suite_benchmark(args.suite_repeats, args.pytest_repeats, args.check_repeats)
    if "modules" in args.only:
        module_benchmark(args.module_repeats, args.large_model, args.large_repeats)


if __name__ == "__main__":
    main()
