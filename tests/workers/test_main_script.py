"""The worker clauses never run the user's main script, however it was started, and leave the global
multiprocessing configuration as found (the spawn clauses rebuild the dataset in torchcontract's own
fresh interpreter; see src/torchcontract/conformance/_runtime/fresh/)."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

import numpy as np
import torch
from torch.utils import data

from torchcontract.conformance import Target, check
from torchcontract.conformance._runtime.fresh import ADVICE
from torchcontract.protocols import IterableDataset, MapDataset

from . import fixtures

MARKER = "BODY-RUNS-MARKER"
MAP_SPAWN = "map_dataset.spawn_workers_yield_same_samples"
STREAM_SPAWN = "iterable_dataset.spawn_workers_yield_same_items"

CLASSES = """
import torch
from torch.utils import data


class Squares(data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        if not -10 <= i < 10:
            raise IndexError(i)
        return torch.tensor(float(i % 10) ** 2)


class Stream(data.IterableDataset):
    def __iter__(self):
        worker = data.get_worker_info()
        start, step = (0, 1) if worker is None else (worker.id, worker.num_workers)
        return iter(range(start, 12, step))


def make_loader(rank=0, world_size=1):
    return data.DataLoader(Squares(), batch_size=2)
"""

BODY = """
import json
from torchcontract.conformance import check
from torchcontract.protocols import IterableDataset, Loader, MapDataset

print("{marker}", flush=True)
report = check({build}, {protocol})
results = {{r.check_id: [r.status, r.message] for r in report.results}}
print("VERDICT " + json.dumps({{"passed": report.passed, "results": results}}), flush=True)
"""

KINDS = {
    "map": ("Squares()", "MapDataset", MAP_SPAWN),
    "stream": ("Stream()", "IterableDataset", STREAM_SPAWN),
    "loader": ("make_loader()", "Loader", None),
}
WAYS = ["file", "module", "command", "stdin"]


def _body(kind: str) -> str:
    build, protocol, _ = KINDS[kind]
    return BODY.format(marker=MARKER, build=build, protocol=protocol)


def _run(folder: Path, source: str, way: str, name: str = "script") -> tuple[int, dict[str, Any], str]:
    """Run ``source`` as a main program, started ``way``; (marker count, verdict, output)."""
    path = folder / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    command: list[str] = [sys.executable]
    stdin = None
    if way == "file":
        command.append(str(path))
    elif way == "module":
        command += ["-m", name]
    elif way == "command":
        command += ["-c", source]
    else:
        command.append("-")
        stdin = source
    done = subprocess.run(
        command, cwd=folder, input=stdin, capture_output=True, text=True, timeout=300, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    verdicts = [line for line in done.stdout.splitlines() if line.startswith("VERDICT ")]
    assert len(verdicts) == 1, output
    markers = sum(line == MARKER for line in done.stdout.splitlines())
    return markers, json.loads(verdicts[0][len("VERDICT ") :]), output


@pytest.mark.slow
@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_an_unguarded_script_runs_its_body_once(tmp_path: Path, kind: str, way: str) -> None:
    source = CLASSES + _body(kind)
    markers, verdict, output = _run(tmp_path, source, way)
    assert markers == 1, output
    assert verdict["passed"], output
    spawn = KINDS[kind][2]
    if spawn is not None:
        status, message = verdict["results"][spawn]
        assert status == "skipped", output
        assert ADVICE in message
        assert "defined in the main script (__main__)" in message
    assert all(status != "failed" for status, _ in verdict["results"].values()), output


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["map", "stream"])
def test_a_guarded_script_with_its_classes_in_main_runs_the_spawn_clause(tmp_path: Path, kind: str) -> None:
    guarded = CLASSES + "\n\nif __name__ == '__main__':\n" + textwrap.indent(_body(kind), "    ")
    markers, verdict, output = _run(tmp_path, guarded, "file")
    assert markers == 1, output
    assert verdict["passed"], output
    assert verdict["results"][KINDS[kind][2]][0] == "passed", output


@pytest.mark.clause(MAP_SPAWN)
@pytest.mark.slow
def test_a_guarded_script_with_a_table_of_lambdas_runs_the_spawn_clause(tmp_path: Path) -> None:
    """A lambda's body runs when it is called, not when the script is imported: a table of
    factories at the top level leaves the script safe to re-import."""
    table = '\nFACTORIES = {"squares": lambda: Squares(), "stream": lambda: Stream()}\n'
    guarded = CLASSES + table + "\n\nif __name__ == '__main__':\n" + textwrap.indent(_body("map"), "    ")
    markers, verdict, output = _run(tmp_path, guarded, "file")
    assert markers == 1, output
    assert verdict["results"][MAP_SPAWN][0] == "passed", output


@pytest.mark.clause(MAP_SPAWN)
@pytest.mark.slow
@pytest.mark.parametrize("way", WAYS)
def test_classes_in_a_module_beside_an_unguarded_script_run_the_spawn_clause(
    tmp_path: Path, way: str
) -> None:
    (tmp_path / "mydata.py").write_text(CLASSES, encoding="utf-8")
    source = "from mydata import Squares, Stream, make_loader\n" + _body("map")
    markers, verdict, output = _run(tmp_path, source, way)
    assert markers == 1, output
    assert verdict["passed"], output
    assert verdict["results"][MAP_SPAWN][0] == "passed", output


SLOW_WHEN_REBUILT = """
import time
from torch.utils import data

WARM = []  # filled at run time in the main process: a fresh interpreter finds it empty


class Cached(data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        if not 0 <= i < 4:
            raise IndexError(i)
        if not WARM:
            time.sleep(60)  # "loading the cache"
        return i


def warm():
    WARM.append(True)
    return Cached()
"""


@pytest.mark.clause(MAP_SPAWN)
@pytest.mark.slow
def test_the_interpreter_start_is_not_charged_to_the_budget_but_a_slow_dataset_fails(tmp_path: Path) -> None:
    (tmp_path / "slowdata.py").write_text(SLOW_WHEN_REBUILT, encoding="utf-8")
    (tmp_path / "mydata.py").write_text(CLASSES, encoding="utf-8")
    source = textwrap.dedent(
        f"""
        import json
        from torchcontract.conformance import check
        from torchcontract.protocols import MapDataset
        from mydata import Squares
        from slowdata import warm
        print("{MARKER}", flush=True)
        fast = check(Squares(), MapDataset, time_budget_s=2)
        slow = check(warm(), MapDataset, time_budget_s=2)
        results = {{
            "fast": {{r.check_id: [r.status, r.message] for r in fast.results}},
            "slow": {{r.check_id: [r.status, r.message] for r in slow.results}},
        }}
        print("VERDICT " + json.dumps({{"passed": fast.passed, "results": results}}), flush=True)
        """
    )
    markers, verdict, output = _run(tmp_path, source, "file")
    assert markers == 1, output
    assert verdict["passed"], output
    assert verdict["results"]["fast"][MAP_SPAWN][0] == "passed", output
    status, message = verdict["results"]["slow"][MAP_SPAWN]
    assert status == "failed", output
    assert "the time budget of 2 s ran out while waiting for ds[0] in a fresh interpreter" in message


def _multiprocessing_configuration() -> tuple[Any, ...]:
    server = multiprocessing.forkserver._forkserver
    return (
        multiprocessing.get_start_method(allow_none=True),
        list(getattr(server, "_preload_modules", [])),
        getattr(server, "_forkserver_pid", None),
        getattr(server, "_forkserver_address", None),
    )


def test_check_leaves_the_multiprocessing_configuration_as_found() -> None:
    before = _multiprocessing_configuration()
    assert check(fixtures.Squares(), MapDataset).passed
    assert check(fixtures.ShardedRange(), IterableDataset).passed
    assert _multiprocessing_configuration() == before


class StreamWithIndexing(data.IterableDataset[int]):
    """A torch IterableDataset that also has __getitem__ and __len__: DataLoader streams it."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < 6:
            raise IndexError(index)
        return index

    def __iter__(self) -> Iterator[int]:
        worker = data.get_worker_info()
        start, step = (0, 1) if worker is None else (worker.id, worker.num_workers)
        return iter(range(start, 6, step))


@pytest.mark.clause(MAP_SPAWN, "map_dataset.worker_errors_keep_their_type")
def test_map_style_worker_clauses_skip_a_dataset_that_dataloader_streams() -> None:
    report = check(StreamWithIndexing(), MapDataset)
    results = {r.check_id: r for r in report.results}
    for check_id in (MAP_SPAWN, "map_dataset.worker_errors_keep_their_type"):
        assert results[check_id].status == "skipped", results[check_id]
        assert "DataLoader streams ds" in results[check_id].message


class RandomBits(data.IterableDataset[int]):
    """A correct random stream with one random bit per item, seeded per worker (and per epoch,
    through the worker seed); sharded across workers."""

    def __init__(self, seed: int, length: int = 8) -> None:
        self.seed, self.length = seed, length

    def __iter__(self) -> Iterator[int]:
        worker = data.get_worker_info()
        start, step = (0, 1) if worker is None else (worker.id, worker.num_workers)
        rng = np.random.default_rng([self.seed, 0 if worker is None else worker.seed])
        return (int(rng.integers(2)) for _ in range(start, self.length, step))


class RandomBitSamples(fixtures.Squares):
    """A correct random map-style dataset: one random bit per sample, from NumPy's global RNG
    (which torch reseeds in each worker)."""

    def __getitem__(self, index: int) -> int:
        return super().__getitem__(index) * 0 + int(np.random.randint(2))


RANDOMNESS = (
    "iterable_dataset.workers_draw_independent_randomness",
    "map_dataset.workers_draw_independent_randomness",
)


@pytest.mark.clause(
    "iterable_dataset.workers_draw_independent_randomness", "map_dataset.workers_draw_independent_randomness"
)
@pytest.mark.slow
def test_low_entropy_random_datasets_pass_the_randomness_clauses_for_many_seeds() -> None:
    for seed in range(30):
        torch.manual_seed(seed)  # the workers' base seed comes from torch's global RNG
        for obj, protocol in ((RandomBits(seed), IterableDataset), (RandomBitSamples(), MapDataset)):
            target = Target(obj, protocol, deterministic=False)
            report = target.run(select=lambda spec: spec.check_id in RANDOMNESS)
            (result,) = [r for r in report.results if r.check_id in RANDOMNESS]
            assert result.status == "passed", (seed, result)


class InterruptedInAWorkerClause(fixtures.Squares):
    """Presses Ctrl-C (SIGINT to this process) when called by a worker clause, which runs in the
    calling thread and gives each call into the object a thread of its own (named "...:call")."""

    def __getitem__(self, index: int) -> int:
        if threading.current_thread().name.endswith(":call"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(2)  # the interrupt arrives in the main thread meanwhile
        return super().__getitem__(index)


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_in_a_worker_clause_propagates_out_of_check() -> None:
    with pytest.raises(KeyboardInterrupt):
        check(InterruptedInAWorkerClause(), MapDataset)


DISTRIBUTED = """
import json
from torchcontract.conformance import check_distributed
{import_line}
print("{marker}", flush=True)
report = check_distributed(torch_loader, 2)
results = {{r.check_id: [r.status, r.message] for r in report.results}}
print("VERDICT " + json.dumps({{"passed": report.passed, "results": results}}), flush=True)
"""

RANK_LOADER = """
from torch.utils import data
import torch

TENSORS = data.TensorDataset(torch.arange(22.0).reshape(11, 2), torch.arange(11))


def torch_loader(rank, world_size):
    sampler = data.DistributedSampler(TENSORS, num_replicas=world_size, rank=rank, seed=3)
    return data.DataLoader(TENSORS, batch_size=2, sampler=sampler)
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", ["module", "main"])
def test_check_distributed_from_an_unguarded_script(tmp_path: Path, where: str) -> None:
    (tmp_path / "ranks.py").write_text(RANK_LOADER, encoding="utf-8")
    if where == "module":
        source = DISTRIBUTED.format(import_line="from ranks import torch_loader", marker=MARKER)
    else:
        source = RANK_LOADER + DISTRIBUTED.format(import_line="", marker=MARKER)
    markers, verdict, output = _run(tmp_path, source, "file")
    assert markers == 1, output
    statuses = {status for status, _ in verdict["results"].values()}
    if where == "module":
        assert statuses == {"passed"}, output
    else:  # nothing could run: not a pass
        assert statuses == {"unverified"}, output
        assert verdict["passed"] is False
        assert all(ADVICE in message for _, message in verdict["results"].values()), output
