"""``isinstance`` against the runtime-checkable protocols: conforming classes pass, incomplete ones do not."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from torchcontract import protocols
from torchcontract.protocols import (
    CallableModule,
    CollateFn,
    IterableDataset,
    Loader,
    MapDataset,
    Module,
    Sampler,
)

from ..conftest import HAS_TORCH, NO_TORCH_REASON


class PlainCallable:
    def forward(self, x: int) -> int:
        return x + 1

    def __call__(self, x: int) -> int:
        return self.forward(x)


class PlainModule(PlainCallable):
    def __init__(self) -> None:
        self.training = True

    def train(self, mode: bool = True) -> PlainModule:
        self.training = mode
        return self

    def eval(self) -> PlainModule:
        return self.train(False)

    def parameters(self) -> list[Any]:
        return []

    def named_parameters(self) -> list[tuple[str, Any]]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any], /, strict: bool = True) -> None:
        pass

    def zero_grad(self) -> None:
        pass


class PlainMapDataset:
    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < 3:
            raise IndexError(index)
        return index


class PlainIterable:
    def __iter__(self) -> Iterator[int]:
        return iter(range(3))


class ForwardOnly:
    def forward(self, x: int) -> int:
        return x


class CallOnly:
    def __call__(self, x: int) -> int:
        return x


class LenOnly:
    def __len__(self) -> int:
        return 0


class GetItemOnly:
    def __getitem__(self, index: int) -> int:
        return index


def test_exports_exactly_the_eight_protocols() -> None:
    assert sorted(protocols.__all__) == [
        "CallableModule",
        "CollateFn",
        "IterableDataset",
        "Loader",
        "MapDataset",
        "Module",
        "Sampler",
        "Stateful",
    ]


@pytest.mark.parametrize(
    ("obj", "protocol"),
    [
        (PlainCallable(), CallableModule),
        (PlainModule(), CallableModule),
        (PlainModule(), Module),
        (PlainMapDataset(), MapDataset),
        ([1, 2, 3], MapDataset),
        (range(4), MapDataset),
        (PlainIterable(), IterableDataset),
        (PlainIterable(), Sampler),
        (PlainIterable(), Loader),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, type) else v.__name__,
)
def test_conforming_plain_objects_pass_isinstance(obj: object, protocol: type) -> None:
    assert isinstance(obj, protocol)


@pytest.mark.parametrize(
    ("obj", "protocol"),
    [
        (ForwardOnly(), CallableModule),
        (CallOnly(), CallableModule),
        (PlainCallable(), Module),
        (LenOnly(), MapDataset),
        (GetItemOnly(), MapDataset),
        (object(), IterableDataset),
        (LenOnly(), Sampler),
        (GetItemOnly(), Loader),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, type) else v.__name__,
)
def test_objects_missing_a_member_fail_isinstance(obj: object, protocol: type) -> None:
    assert not isinstance(obj, protocol)


def test_collate_fn_is_not_runtime_checkable() -> None:
    # Every callable has ``__call__``: an isinstance answer would only repeat callable().
    with pytest.raises(TypeError):
        isinstance(len, CollateFn)  # type: ignore[misc]


def test_isinstance_only_checks_names() -> None:
    # Documented limit (SPEC.md): a str has __len__ and __getitem__, so it passes at run time.
    assert isinstance("abc", MapDataset)


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)
def test_torch_classes_pass_isinstance() -> None:
    import torch
    from torch import nn
    from torch.utils import data

    tensor = torch.arange(6.0).reshape(3, 2)
    dataset = data.TensorDataset(tensor)
    conforming: list[tuple[object, type]] = [
        (nn.Linear(2, 3), Module),
        (nn.Sequential(nn.Linear(2, 3), nn.ReLU()), Module),
        (nn.ReLU(), CallableModule),
        (dataset, MapDataset),
        (data.Subset(dataset, [0, 2]), MapDataset),
        (data.ConcatDataset([dataset, dataset]), MapDataset),
        (data.DataLoader(dataset, batch_size=2), Loader),
        (data.RandomSampler(dataset), Sampler),
        (data.SequentialSampler(dataset), Sampler),
        (data.BatchSampler(data.SequentialSampler(dataset), 2, drop_last=False), Sampler),
    ]
    for obj, protocol in conforming:
        assert isinstance(obj, protocol), (obj, protocol)


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)
def test_torch_dataset_base_class_is_not_a_map_dataset() -> None:
    # torch.utils.data.Dataset has no __len__ on purpose (see its sampler.py docstring).
    from torch.utils.data import Dataset

    assert not isinstance(Dataset(), MapDataset)
