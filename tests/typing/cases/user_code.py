# requires: torch
"""The README's "Typing your code with the protocols", checked: what a user writes, and what mypy says."""

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from torch.utils import data
from typing_extensions import assert_type

from torchcontract.protocols import CollateFn, Loader, MapDataset, Module

Sample = tuple[npt.NDArray[np.float32], int]


def fit(data: MapDataset[Sample], model: Module) -> None:
    model.train()
    for i in range(len(data)):
        image, label = data[i]
        assert_type(image, npt.NDArray[np.float32])
        assert_type(label, int)


class Digits:  # no base class needed; annotate __getitem__ so that mypy can compare samples
    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> Sample:
        return np.zeros((28, 28), np.float32), index


class TorchDigits(data.Dataset[Sample]):  # a torch Dataset: define __len__ too
    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> Sample:
        return np.zeros((28, 28), np.float32), index


class Names:
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> str:
        return "zero"


class Lookup:
    def __len__(self) -> int:
        return 1

    def __getitem__(self, key: str) -> Sample:
        return np.zeros((28, 28), np.float32), 0


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(28 * 28, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1))  # type: ignore[no-any-return]  # mypy only: nn.Linear's call is Any, which pyright lets a function return

    if TYPE_CHECKING:  # calls of Net are now checked and typed

        def __call__(self, x: Tensor) -> Tensor: ...


def _fit() -> None:
    model = Net()
    fit(Digits(), model)
    fit(TorchDigits(), model)
    fit([(np.zeros((28, 28), np.float32), 3)], nn.Linear(28 * 28, 10))
    fit(Names(), model)  # type: ignore[arg-type]  # samples are str
    fit(Lookup(), model)  # type: ignore[arg-type]  # __getitem__ takes a str
    fit(data.Dataset[Sample](), model)  # type: ignore[arg-type]  # no __len__
    fit(Digits(), torch.relu)  # type: ignore[arg-type]  # a function is not a Module
    assert_type(model(torch.zeros(1, 28, 28)), Tensor)
    model(np.zeros((28, 28)))  # type: ignore[arg-type]
    data.DataLoader(Digits())  # type: ignore[arg-type]  # torch wants a Dataset: subclass it, or cast
    data.DataLoader(TorchDigits(), batch_size=32)


def evaluate(loader: Loader[tuple[Tensor, Tensor]], model: Net, collate_fn: CollateFn[Sample, Tensor]) -> float:
    correct = 0
    for images, labels in loader:
        correct += int((model(images).argmax(1) == labels).sum())
    return float(correct)
