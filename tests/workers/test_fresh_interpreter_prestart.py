"""The fresh interpreter is started when a run that needs it begins (_runtime.fresh.prestart), so
that its start overlaps the checks before the spawn clause. In a fresh process: the server of an
earlier test would otherwise already run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import torchcontract.conformance._runtime.fresh as fi
    from torchcontract.conformance import Target
    from torchcontract.protocols import MapDataset

    running_at_first_request = []
    fetch = fi.fetch

    def recording_fetch(*args, **kwargs):
        running_at_first_request.append(bool(fi.client._current))
        return fetch(*args, **kwargs)

    fi.fetch = recording_fetch
    wanted = ("map_dataset.len_is_non_negative_int", "map_dataset.spawn_workers_yield_same_samples")
    report = Target([1.0, 2.0, 3.0], MapDataset).run(select=lambda c: c.check_id in wanted)
    print([r.status for r in report.results], running_at_first_request)
    """
)


def run(script: str, folder: Path | None = None, **modules: str) -> str:
    """The standard output of ``script`` run in a fresh process: with ``python -c``, or as a file in
    ``folder`` beside the ``modules`` (name=source) it imports."""
    command = [sys.executable, "-c", script]
    if folder is not None:
        for name, source in {**modules, "script": script}.items():
            (folder / f"{name}.py").write_text(source, encoding="utf-8")
        command = [sys.executable, "script.py"]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_the_server_is_already_starting_when_the_spawn_clause_asks_for_it() -> None:
    pytest.importorskip("torch")
    out = run(SCRIPT)
    assert out.strip() == "['passed', 'passed'] [True]", out


@pytest.mark.slow
def test_an_isolated_target_does_not_prestart() -> None:
    pytest.importorskip("torch")
    script = SCRIPT.replace("MapDataset)", "MapDataset, isolate=True)") + "print(bool(fi.client._current))\n"
    out = run(script)
    assert out.splitlines()[-1] == "False", out


# A dataset whose pickle names torchvision (it holds a torchvision transform), and one that does not;
# in a module of their own, which the fresh interpreter imports.
POINTS_MODULE = textwrap.dedent(
    """
    import numpy as np

    class Points:
        def __init__(self, transform=None):
            self.transform = transform

        def __len__(self):
            return 10

        def __getitem__(self, index):
            if not -10 <= index < 10:
                raise IndexError(index)
            return np.full(3, index % 10, dtype=np.float32)
    """
)
ON_DEMAND_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import torchvision
    import torchcontract.conformance._runtime.fresh as fi
    from torchcontract.conformance import Target
    from torchcontract.protocols import MapDataset
    from points_mod import Points

    wanted = ("map_dataset.len_is_non_negative_int", "map_dataset.spawn_workers_yield_same_samples")
    select = lambda c: c.check_id in wanted
    plain = Target(Points(), MapDataset, name="plain").run(select=select, time_budget_s=1)
    print([r.status for r in plain.results], sorted(fi.client._current[0].imported))
    transform = torchvision.transforms.Lambda(np.asarray)  # a torchvision object in the pickle
    held = Target(Points(transform), MapDataset, name="held").run(select=select, time_budget_s=1)
    print([r.status for r in held.results], sorted(fi.client._current[0].imported))
    """
)


@pytest.mark.slow
def test_torch_and_torchvision_are_imported_on_demand_and_not_charged_to_the_budget(tmp_path: Path) -> None:
    # A NumPy dataset's server imports neither; torch and torchvision (a second or more each) are
    # imported before the first request whose pickle names them: torchcontract's cost, outside a 1 s
    # budget.
    pytest.importorskip("torchvision")
    out = run(ON_DEMAND_SCRIPT, tmp_path, points_mod=POINTS_MODULE)
    expected = ["['passed', 'passed'] []", "['passed', 'passed'] ['torch', 'torchvision']"]
    assert out.splitlines() == expected, out


# A dataset whose module imports torch (the common case): the server imports torch at its start,
# overlapped with the checks before the spawn clause. And one that imports torch only inside
# __getitem__: its child sets up worker 0 as torch's worker loop does, once torch is imported.
TORCH_USERS_MODULE = textwrap.dedent(
    """
    import torch

    class UsesTorch:
        def __len__(self):
            return 4

        def __getitem__(self, index):
            if not -4 <= index < 4:
                raise IndexError(index)
            return torch.full((2,), float(index % 4))
    """
)
LAZY_MODULE = textwrap.dedent(
    """
    class ImportsTorchLazily:
        def __len__(self):
            return 4

        def __getitem__(self, index):
            import torch.utils.data

            info = torch.utils.data.get_worker_info()
            if info is None:
                return index, None
            return index, (info.id, info.num_workers, info.seed == torch.initial_seed())
    """
)
TORCH_USERS_SCRIPT = textwrap.dedent(
    """
    import pickle
    import torch
    import torchcontract.conformance._runtime.fresh as fi
    from torchcontract.conformance import Target
    from torchcontract.protocols import MapDataset
    from torch_users import UsesTorch
    from lazy_torch import ImportsTorchLazily

    print(fi.imports_for(UsesTorch()), fi.imports_for(ImportsTorchLazily()))
    wanted = ("map_dataset.len_is_non_negative_int", "map_dataset.spawn_workers_yield_same_samples")
    Target(UsesTorch(), MapDataset).run(select=lambda c: c.check_id in wanted)
    server = fi.client._current[0]
    print(sorted(server.imported))
    server.close()
    fi.client._current.clear()
    fetched = fi.fetch(fi.pickled(ImportsTorchLazily()), indices=[1, 2], limit=0, time_left=120)
    imported = sorted(fi.client._current[0].imported)
    print(imported, [pickle.loads(item) for item in fetched.items], fetched.raised)
    """
)


@pytest.mark.slow
def test_a_dataset_using_torch_gets_it_at_the_start_and_a_lazy_one_gets_a_worker_s_set_up(
    tmp_path: Path,
) -> None:
    pytest.importorskip("torch")
    out = run(TORCH_USERS_SCRIPT, tmp_path, torch_users=TORCH_USERS_MODULE, lazy_torch=LAZY_MODULE)
    assert out.splitlines() == [
        "('torch',) ()",
        "['torch']",
        "[] [(1, (0, 1, True)), (2, (0, 1, True))] None",
    ], out


def test_an_odd_namespace_makes_the_package_imported_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Which packages to import first is a guess for speed: a class whose __module__ raises (read
    # through a metaclass property) must neither leak its error into a check nor skip the import.
    import json
    import types

    import torchcontract.conformance._runtime.fresh as fi

    class Odd(type):
        @property
        def __module__(cls) -> str:  # type: ignore[override]
            raise RuntimeError("no module")

    odd = types.ModuleType("odd_namespace")
    odd.Thing = Odd("Thing", (), {})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "odd_namespace", odd)
    assert fi.pickling.modules_use({"odd_namespace"}, "json") is True
    plain = types.ModuleType("plain_namespace")
    plain.dumps = json.dumps  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "plain_namespace", plain)
    assert fi.pickling.modules_use({"plain_namespace"}, "json") is True  # a function of json's in it
    assert fi.pickling.modules_use({"plain_namespace"}, "not_imported_anywhere") is False
