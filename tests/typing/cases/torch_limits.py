# requires: torch
"""Documented limits with torch (SPEC.md, "Honest limits of the static protocols"), and the workarounds."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
from torch import Tensor, nn
from torch.utils import data
from typing_extensions import assert_type

from torchcontract.protocols import CallableModule, CollateFn, Loader, MapDataset

from ._classes import PlainMapDataset

features = torch.arange(6.0).reshape(3, 2)
linear = nn.Linear(2, 3)


# --- 1. Module.__call__ and Module.forward are Callable[..., Any] -------------------------------------------
class TextToText(Protocol):
    def __call__(self, text: str, /) -> str: ...


ok_linear_as_text_to_text: TextToText = linear  # accepted, although linear("abc") fails at run time
ok_linear_as_collate_fn: CollateFn[int, str] = linear  # idem
linear_as_str_function: Callable[[str], str] = linear  # idem


class Doubler(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return 2 * x


class TypedDoubler(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return 2 * x

    if TYPE_CHECKING:  # the workaround: give type checkers forward's signature for calls

        def __call__(self, x: Tensor) -> Tensor: ...


class AliasedDoubler(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return 2 * x

    if TYPE_CHECKING:  # works in mypy alone: pyright keeps Module.__call__'s declared type
        __call__ = forward


ok_typed_doubler: CallableModule = TypedDoubler()
ok_aliased_doubler: CallableModule = AliasedDoubler()


def _module_calls(model: CallableModule) -> None:
    assert_type(linear(features), Any)
    assert_type(linear.forward(features), Tensor)  # torch annotates Linear.forward
    linear("not a tensor")  # accepted
    assert_type(Doubler()(features), Any)  # an annotated forward does not help the call...
    assert_type(Doubler().forward(features), Tensor)
    assert_type(TypedDoubler()(features), Tensor)  # ...unless __call__ is given its signature
    TypedDoubler()("not a tensor")  # type: ignore[arg-type]
    assert_type(AliasedDoubler()(features), Tensor)  # pyright: ignore[reportAssertTypeFailure]  # pyright only: the alias has Module.__call__'s declared type, Callable[..., Any]
    AliasedDoubler()("not a tensor")  # type: ignore[arg-type]  # mypy only: the call is Callable[..., Any] to pyright
    assert_type(model(features), Any)  # through the protocol every call is Any


# --- 2. torch.utils.data.Dataset has no __len__ ---------------------------------------------------------------
def count(dataset: data.Dataset[int]) -> int:
    return len(dataset)  # type: ignore[arg-type]


def count_map_dataset(dataset: MapDataset[int]) -> int:
    return len(dataset)


# --- 3. TensorDataset.__getitem__ is unannotated: to mypy a TensorDataset is a MapDataset of anything -------
# pyright infers an unannotated function's return type from its body: tuple[Tensor, ...].
tensor_dataset = data.TensorDataset(features)
ok_tensor_dataset_as_str: MapDataset[str] = tensor_dataset  # pyright: ignore[reportAssignmentType]  # pyright only: __getitem__ returns tuple[Tensor, ...] to it
ok_tensor_dataset_as_tuples: MapDataset[tuple[Tensor, ...]] = tensor_dataset


def _tensor_dataset_samples() -> None:
    assert_type(tensor_dataset[0], Any)  # pyright: ignore[reportAssertTypeFailure]  # pyright only: __getitem__ returns tuple[Tensor, ...] to it


# --- 4. DataLoader (and Subset, random_split) type their dataset as the Dataset class ---------------------
duck_loader: data.DataLoader[int] = data.DataLoader(PlainMapDataset())  # type: ignore[arg-type]
list_subset: data.Subset[int] = data.Subset([1, 2, 3], [0, 2])  # type: ignore[arg-type]
list_split: list[data.Subset[int]] = data.random_split([1, 2, 3], [1, 2])  # type: ignore[arg-type]


class SizedDataset(data.Dataset[int]):  # workaround 1: subclass Dataset and define __len__
    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> int:
        return index


subclass_loader = data.DataLoader(SizedDataset())
cast_loader = data.DataLoader(cast("data.Dataset[int]", PlainMapDataset()))  # workaround 2: cast


def _loaders() -> None:
    assert_type(subclass_loader, data.DataLoader[int])
    assert_type(cast_loader, data.DataLoader[int])


# --- 5. DataLoader's iterator yields Any: its batches are not checked -----------------------------------------
ok_dataloader_as_loader_of_str: Loader[str] = subclass_loader


def _batches() -> None:
    assert_type(next(iter(subclass_loader)), Any)
    for batch in subclass_loader:
        assert_type(batch, Any)


# --- 6. default_collate is (list[Any]) -> Any -----------------------------------------------------------------
ok_default_collate_as_anything: CollateFn[str, int] = data.default_collate
