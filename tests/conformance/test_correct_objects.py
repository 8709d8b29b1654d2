"""The suite does not cry wolf: correct objects pass every check, recommended ones included.

A check that fails here either has a bug or has found a real deviation of the object; a real
deviation is declared as an expected failure with its reason (it then shows as xfailed, and as
xpassed, which fails the test, once the object stops deviating).
"""

from __future__ import annotations

import copy
import gzip
import importlib.resources
import shutil
from pathlib import Path
from typing import Any

import pytest

from torchcontract.conformance import Report, check
from torchcontract.conformance._targets.deviations import expected_failures
from torchcontract.conformance._values import difference
from torchcontract.protocols import MapDataset, Module

from ..conftest import HAS_TORCH, HAS_TORCHVISION, NO_TORCH_REASON, NO_TORCHVISION_REASON
from .cases import PLAIN_CASES, Case

# The sample shipped in the installed package (the tests run against what `pip install` gives).
MNIST_RAW = Path(str(importlib.resources.files("torchcontract.reference_impl") / "data" / "MNIST" / "raw"))


def assert_conforms(report: Report, case: Case) -> None:
    """Passed, no check failed at all, and each declared deviation really failed (xfailed)."""
    assert report.passed, str(report)
    failed = [r.check_id for r in report.results if r.status in ("failed", "error", "unverified")]
    assert failed == [], str(report)
    statuses = {r.check_id: r.status for r in report.results}
    for check_id in case.expected_failures:
        assert statuses[check_id] == "xfailed", f"{check_id}: {statuses[check_id]}\n{report}"
    assert "xpassed" not in statuses.values(), str(report)
    assert report.stale_expected_failures == ()


def run(case: Case, obj: object | None = None, **extra: Any) -> Report:
    target = case.factory() if obj is None else obj
    return check(target, case.protocol, expected_failures=case.expected_failures, **case.kwargs, **extra)


def _params(cases: list[Case]) -> list[Any]:
    return [pytest.param(case, id=f"{case.protocol.__name__}-{case.name}") for case in cases]


def _torch_params(module_cases: bool) -> list[Any]:
    if not HAS_TORCH:
        return [pytest.param(None, id="torch", marks=pytest.mark.skip(reason=NO_TORCH_REASON))]
    from . import torch_cases

    return _params(torch_cases.MODULE_CASES if module_cases else torch_cases.CASES)


@pytest.mark.parametrize("case", _params(PLAIN_CASES))
def test_plain_object_conforms(case: Case) -> None:
    obj = case.factory()
    before = _state(obj, case)
    assert_conforms(run(case, obj), case)
    _assert_unchanged(obj, case, before)


@pytest.mark.parametrize("case", _torch_params(module_cases=False))
def test_torch_object_conforms(case: Case) -> None:
    obj = case.factory()
    before = _state(obj, case)
    assert_conforms(run(case, obj), case)
    _assert_unchanged(obj, case, before)


@pytest.mark.clause("module.device_parity", "module.to_device")
@pytest.mark.parametrize("case", _torch_params(module_cases=True))
def test_torch_module_conforms_on_each_device(case: Case, device: str) -> None:
    module = case.factory()
    before = _state(module, case)
    report = run(case, module, device=device)
    assert_conforms(report, case)
    _assert_unchanged(module, case, before)
    # The device checks ran (on the CPU, to_device; device_parity only on CUDA).
    statuses = {r.check_id: r.status for r in report.results}
    assert statuses["module.to_device"] == "passed"
    assert statuses["module.device_parity"] == ("passed" if device.startswith("cuda") else "skipped")


# -- check() leaves the object as it found it -------------------------------------------------------


def _state(obj: object, case: Case) -> Any:
    """What check() must not change: a module's mode and state, a dataset's samples."""
    if case.protocol is Module:
        return obj.training, copy.deepcopy(dict(obj.state_dict()))  # type: ignore[attr-defined]
    if case.protocol is MapDataset and case.kwargs.get("deterministic", True):
        indices = sorted({0, len(obj) // 2, len(obj) - 1}) if len(obj) else []  # type: ignore[arg-type]
        return [copy.deepcopy(obj[i]) for i in indices]  # type: ignore[index]
    return None


def _assert_unchanged(obj: object, case: Case, before: Any) -> None:
    after = _state(obj, case)
    found = difference(after, before)
    assert found is None, f"check() changed the object: {found}"


# -- torchvision's MNIST on the bundled sample --------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled MNIST sample, gunzipped into the layout torchvision expects (ROOT/MNIST/raw/)."""
    root = tmp_path_factory.mktemp("vision")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for packed in sorted(MNIST_RAW.glob("*.gz")):
        with gzip.open(packed) as source, (raw / packed.stem).open("wb") as target:
            shutil.copyfileobj(source, target)
    return root


@pytest.mark.skipif(not HAS_TORCHVISION, reason=NO_TORCHVISION_REASON)
@pytest.mark.parametrize("to_tensor", [False, True], ids=["pil_images", "to_tensor"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_torchvision_mnist_conforms(mnist_root: Path, to_tensor: bool, train: bool) -> None:
    from torchvision.datasets import MNIST
    from torchvision.transforms import ToTensor

    dataset = MNIST(mnist_root, train=train, transform=ToTensor() if to_tensor else None, download=False)
    assert len(dataset) == (4000 if train else 1000)  # the bundled sample, not the full set
    pil = {} if to_tensor else expected_failures("pil_images")
    case = Case("mnist", MapDataset, lambda: dataset, expected_failures=pil)
    assert_conforms(run(case), case)
