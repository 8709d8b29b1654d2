"""Regression tests: inputs held in containers with their own ``.to()`` (a TensorDict, a BatchEncoding),
in dataclasses and in named tuples are moved and converted like a dict of tensors: the clauses that move
inputs to a device (``module.to_device``) or convert them to a dtype (``module.to_dtype``, the dtype
matrix) move the container, not only its leaves, and walk dataclass fields.

Each container and module here is written for the test.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, UserDict
from collections.abc import Iterator, MutableMapping
from typing import Any, NamedTuple

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

import torch
from torch import nn

from torchcontract.conformance import Report, check
from torchcontract.conformance._values.convert import in_dtype, on_device
from torchcontract.protocols import Module

BOTH = (torch.float32, torch.float64)


def _result(report: Report, check_id: str) -> tuple[str, str]:
    found = next(r for r in report.results if r.check_id == check_id and r.dtype is None)
    return found.status, found.message


def _features() -> torch.Tensor:
    return torch.randn(4, 3, generator=torch.Generator().manual_seed(0))


def _ids() -> torch.Tensor:
    return torch.tensor([0, 2, 1, 3])


class TensorBox(MutableMapping[str, torch.Tensor]):
    """A TensorDict-like batch: tensors on one device, which it records and checks each leaf against
    (a leaf on another device is refused); ``.to(device)`` moves the box, ``.to(dtype)`` converts its
    floating-point leaves. Iterating it walks its batch dimension, as a TensorDict's does."""

    def __init__(self, tensors: dict[str, torch.Tensor], device: torch.device | str) -> None:
        self.device = torch.device(device)
        self._tensors: dict[str, torch.Tensor] = {}
        for key, tensor in tensors.items():
            self[key] = tensor

    def __setitem__(self, key: str, tensor: torch.Tensor) -> None:
        if tensor.device != self.device:
            raise ValueError(f"{key!r} is on {tensor.device}, but the box is on {self.device}")
        self._tensors[key] = tensor

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._tensors[key]

    def __delitem__(self, key: str) -> None:
        del self._tensors[key]

    def __len__(self) -> int:
        return len(self._tensors)

    def keys(self) -> Any:
        return self._tensors.keys()

    def __iter__(self) -> Iterator[Any]:  # the batch dimension, not the keys
        batch = len(next(iter(self._tensors.values())))
        return iter(range(batch))

    def to(self, destination: torch.device | str | torch.dtype) -> TensorBox:
        if isinstance(destination, torch.dtype):
            return TensorBox(
                {k: t.to(destination) if t.is_floating_point() else t for k, t in self._tensors.items()},
                self.device,
            )
        return TensorBox({k: t.to(destination) for k, t in self._tensors.items()}, destination)


class Encoding(UserDict[str, torch.Tensor]):
    """A ``BatchEncoding``-like mapping: its own ``.to()`` moves it to a device and ignores a dtype."""

    def to(self, destination: Any) -> Encoding:
        if isinstance(destination, torch.dtype):
            return self
        return Encoding({key: tensor.to(destination) for key, tensor in self.data.items()})


@dataclasses.dataclass(frozen=True)
class Batch:
    """A frozen dataclass batch without a ``.to()``."""

    features: torch.Tensor
    ids: torch.Tensor


@dataclasses.dataclass
class MovableBatch:
    """A dataclass batch with its own ``.to(device)``, which records where it is."""

    features: torch.Tensor
    ids: torch.Tensor
    device: str = "cpu"

    def to(self, device: Any) -> MovableBatch:
        return MovableBatch(self.features.to(device), self.ids.to(device), str(device))


class Pair(NamedTuple):
    features: torch.Tensor
    ids: torch.Tensor


class Embeds(nn.Module):
    """Correct: a linear map of the features plus an embedding of the ids, read from any container
    with ``features`` and ``ids`` (by key or attribute)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)
        self.embedding = nn.Embedding(4, 2)

    def forward(self, batch: Any) -> torch.Tensor:
        if isinstance(batch, (MutableMapping, UserDict)):
            features, ids = batch["features"], batch["ids"]
        else:
            features, ids = batch.features, batch.ids
        if isinstance(batch, TensorBox) and batch.device != features.device:
            raise RuntimeError("the box's device does not match its leaves")
        out: torch.Tensor = self.linear(features) + self.embedding(ids)
        return out


CONTAINERS = {
    "tensordict_like": lambda: TensorBox({"features": _features(), "ids": _ids()}, "cpu"),
    "batch_encoding_like": lambda: Encoding({"features": _features(), "ids": _ids()}),
    "frozen_dataclass": lambda: Batch(_features(), _ids()),
    "dataclass_with_to": lambda: MovableBatch(_features(), _ids()),
}


@pytest.mark.clause("module.to_device", "module.to_dtype")
@pytest.mark.parametrize("make", CONTAINERS.values(), ids=CONTAINERS.keys())
def test_a_module_taking_a_container_passes_to_device_to_dtype_and_the_dtype_matrix(make: Any) -> None:
    # Before: the meta-device probe of module.to_device left the container on the CPU (its leaves were
    # not moved, or the TensorDict-like refused meta leaves: a false failure of a required clause), and
    # module.to_dtype and the float64 clauses of the matrix called the module with float32 features.
    report = check(Embeds(), Module, example_inputs=(make(),), dtypes=BOTH)
    assert report.passed, report
    for check_id in ("module.to_device", "module.to_dtype"):
        status, message = _result(report, check_id)
        assert status == "passed", message


class LeavesABufferBehind(Embeds):
    """Broken: a tensor kept as a plain attribute, which ``.to()`` does not move."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = torch.ones(2)

    def forward(self, batch: Any) -> torch.Tensor:
        return super().forward(batch) + self.offset


@pytest.mark.clause("module.to_device")
def test_a_tensor_left_behind_is_still_found_with_a_container_input() -> None:
    box = TensorBox({"features": _features(), "ids": _ids()}, "cpu")
    status, message = _result(check(LeavesABufferBehind(), Module, example_inputs=(box,)), "module.to_device")
    assert status == "failed"
    assert "m.offset (a plain tensor attribute: use register_buffer)" in message


# -- the walker itself ----------------------------------------------------------------------------------


def test_containers_keep_their_types_and_integer_tensors_their_dtype() -> None:
    value = {
        "ordered": OrderedDict(x=torch.zeros(2)),
        "pair": Pair(torch.zeros(2), torch.tensor([1])),
        "batch": Batch(torch.zeros(2), torch.tensor([1])),
        "list": [torch.zeros(1), "text", None],
    }
    converted = in_dtype(value, torch.float64)
    assert type(converted["ordered"]) is OrderedDict
    assert converted["ordered"]["x"].dtype == torch.float64
    assert type(converted["pair"]) is Pair
    assert converted["pair"].ids.dtype == torch.int64
    assert type(converted["batch"]) is Batch
    assert converted["batch"].features.dtype == torch.float64
    assert converted["list"][1:] == ["text", None]
    assert value["batch"].features.dtype == torch.float32  # rebuilt, never changed in place


def test_a_container_with_its_own_to_is_moved_by_it() -> None:
    box = on_device({"box": TensorBox({"x": torch.zeros(2)}, "cpu")}, torch.device("meta"))["box"]
    assert box.device == torch.device("meta")
    assert box["x"].is_meta
    moved = on_device(MovableBatch(torch.zeros(2), torch.tensor([1])), "meta")
    assert moved.device == "meta"
