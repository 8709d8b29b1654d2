# requires: torch
"""The torch classes each protocol formalises are accepted; torch objects of another kind are not."""

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import data
from typing_extensions import assert_type

from torchcontract.protocols import CallableModule, CollateFn, IterableDataset, Loader, MapDataset, Module, Sampler

from ._classes import PlainBatchSampler, PlainSampler, collate_ints


class Doubler(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return 2 * x


class SizedDataset(data.Dataset[int]):
    """A torch Dataset subclass that defines __len__, as every map-style dataset should."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> int:
        return index


class Stream(data.IterableDataset[int]):
    def __iter__(self) -> Iterator[int]:
        return iter(range(3))


features = torch.arange(6.0).reshape(3, 2)
tensor_dataset = data.TensorDataset(features, torch.arange(3))
linear = nn.Linear(2, 3)

# --- CallableModule and Module ---------------------------------------------------------------------------
ok_linear: Module = linear
ok_sequential: Module = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
ok_relu: Module = nn.ReLU()
ok_user_module: Module = Doubler()
ok_linear_as_callable: CallableModule = linear
bad_torch_function_as_callable: CallableModule = torch.relu  # type: ignore[assignment]  # no forward
bad_tensor_as_module: Module = features  # type: ignore[assignment]
bad_dataset_as_module: Module = tensor_dataset  # type: ignore[assignment]

# --- MapDataset --------------------------------------------------------------------------------------------
ok_tensor_dataset: MapDataset[tuple[Tensor, ...]] = tensor_dataset
ok_subset: MapDataset[tuple[Tensor, ...]] = data.Subset(tensor_dataset, [0, 2])
ok_concat_dataset: MapDataset[tuple[Tensor, ...]] = data.ConcatDataset([tensor_dataset, tensor_dataset])
ok_stack_dataset: MapDataset[tuple[Any, ...]] = data.StackDataset(tensor_dataset, tensor_dataset)  # pyright: ignore[reportAssignmentType]  # pyright only: it infers the unannotated __getitem__'s return type from the body, tuple | dict
ok_sized_dataset_subclass: MapDataset[int] = SizedDataset()
ok_tensor_as_map_dataset: MapDataset[Tensor] = features  # rows
# torch.utils.data.Dataset has no __len__ (on purpose): not a MapDataset.
bad_dataset_base_class: MapDataset[int] = data.Dataset[int]()  # type: ignore[assignment]
bad_sized_dataset_wrong_sample: MapDataset[str] = SizedDataset()  # type: ignore[assignment]
bad_module_as_map_dataset: MapDataset[Any] = linear  # type: ignore[assignment]
bad_dataloader_as_map_dataset: MapDataset[Any] = data.DataLoader(tensor_dataset)  # type: ignore[assignment]

# --- IterableDataset ---------------------------------------------------------------------------------------
ok_torch_iterable_dataset: IterableDataset[int] = Stream()
ok_chain_dataset: IterableDataset[int] = data.ChainDataset([Stream(), Stream()])  # ChainDataset is untyped
bad_torch_iterable_wrong_item: IterableDataset[str] = Stream()  # type: ignore[assignment]
bad_module_as_iterable_dataset: IterableDataset[Any] = linear  # type: ignore[assignment]

# --- Sampler -----------------------------------------------------------------------------------------------
ok_random_sampler: Sampler[int] = data.RandomSampler(tensor_dataset)
ok_sequential_sampler: Sampler[int] = data.SequentialSampler(tensor_dataset)
ok_subset_random_sampler: Sampler[int] = data.SubsetRandomSampler([0, 2])
ok_weighted_random_sampler: Sampler[int] = data.WeightedRandomSampler([0.5, 0.5], 4)
ok_batch_sampler: Sampler[list[int]] = data.BatchSampler(data.SequentialSampler(tensor_dataset), 2, False)
bad_batch_sampler_as_index_sampler: Sampler[int] = data.BatchSampler(range(3), 2, False)  # type: ignore[assignment]
bad_random_sampler_of_str: Sampler[str] = data.RandomSampler(tensor_dataset)  # type: ignore[assignment]
bad_module_as_sampler: Sampler[int] = linear  # type: ignore[assignment]

# --- Loader ------------------------------------------------------------------------------------------------
ok_dataloader: Loader[Any] = data.DataLoader(tensor_dataset, batch_size=2)
ok_dataloader_of_list: Loader[Any] = data.DataLoader(SizedDataset(), batch_size=2)
bad_module_as_loader: Loader[Any] = linear  # type: ignore[assignment]

# --- CollateFn ---------------------------------------------------------------------------------------------
ok_default_collate: CollateFn[Any, Any] = data.default_collate
ok_default_collate_typed: CollateFn[tuple[Tensor, Tensor], tuple[Tensor, Tensor]] = data.default_collate
ok_default_convert: CollateFn[Any, Any] = data.default_convert
bad_tensor_as_collate_fn: CollateFn[Any, Any] = features  # type: ignore[assignment]


# --- our protocols where torch expects its own types ---------------------------------------------------------
def loader_from_protocols(
    sampler: Sampler[int], batch_sampler: Sampler[list[int]], collate_fn: CollateFn[int, list[int]]
) -> None:
    # DataLoader takes any iterable as sampler or batch_sampler and any callable as collate_fn.
    data.DataLoader(SizedDataset(), sampler=sampler, collate_fn=collate_fn)
    data.DataLoader(SizedDataset(), batch_sampler=batch_sampler)
    data.DataLoader(SizedDataset(), batch_sampler=sampler)  # type: ignore[arg-type]


def _callers() -> None:
    loader_from_protocols(PlainSampler(3), PlainBatchSampler(), collate_ints)
    loader_from_protocols(data.RandomSampler(SizedDataset()), data.BatchSampler(range(3), 2, False), collate_ints)
    assert_type(data.DataLoader(SizedDataset()), data.DataLoader[int])
