"""Correct torch objects (and their documented deviations). Imported only when torch is installed."""

from __future__ import annotations

import warnings
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils import data as tud

from torchcontract.conformance._targets.deviations import expected_failures
from torchcontract.protocols import (
    CallableModule,
    CollateFn,
    IterableDataset,
    Loader,
    MapDataset,
    Module,
    Sampler,
)

from .cases import Case, transposed, unbatched

# The documented deviations (conformance/_targets/deviations.py: the table SPEC.md and README follow).
VIEWS = expected_failures("views")
CONCAT_NEGATIVE = expected_failures("concat_negative_index")
NUMPY_INDICES = expected_failures("numpy_indices")


def seeded(build: Any) -> Any:
    """Build from a fixed seed without touching the caller's global RNG."""

    def factory() -> object:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return build()

    return factory


def tensors(n: int = 10) -> tud.TensorDataset:
    return tud.TensorDataset(torch.arange(n * 3.0).reshape(n, 3), torch.arange(n) % 3)


class Stream(tud.IterableDataset[torch.Tensor]):
    """A torch iterable-style dataset whose __iter__ is a generator function. It shards itself across
    DataLoader workers (torch.utils.data.get_worker_info), as every IterableDataset must to be loaded
    by several workers."""

    def __init__(self, n: int = 10) -> None:
        self.n = n

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = tud.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in range(worker, self.n, workers):
            yield torch.full((3,), float(i))


class ShardedStream(Stream):
    """The same stream, sized."""

    def __len__(self) -> int:
        return self.n


Pair = namedtuple("Pair", ["x", "y"])


def _first_two(samples: list[Any]) -> Any:
    """A custom collate_fn: stacks the features, keeps the labels as a list of ints."""
    return torch.stack([s[0] for s in samples]), [int(s[1]) for s in samples]


def _time_major(samples: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded (T, B) sequences and their lengths: no leading dimension counts the samples."""
    return nn.utils.rnn.pad_sequence(samples), torch.tensor([len(s) for s in samples])


def _stacked_in_a_list(samples: list[torch.Tensor]) -> list[torch.Tensor]:
    """The positional inputs of one call, m(*batch): a list holding the stacked batch."""
    return [torch.stack(samples)]


class BatchAlignedStream(Stream):
    """A sized stream sharded across workers in whole batches (worker k takes batches k, k + workers,
    ...): only the last batch of the epoch is partial, so len(loader) = ceil(n / batch_size) holds with
    any number of workers (the fix for pytorch#30599)."""

    def __init__(self, n: int = 10, batch_size: int = 4) -> None:
        super().__init__(n)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = tud.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        size = self.batch_size
        for start in range(worker * size, self.n, workers * size):
            for i in range(start, min(start + size, self.n)):
                yield torch.full((3,), float(i))

    def __len__(self) -> int:
        return self.n


def _seed_worker(worker_id: int) -> None:
    """A module-level worker_init_fn (it pickles, so spawn and forkserver workers receive it)."""
    torch.manual_seed(torch.initial_seed() % 2**32 + worker_id)


@dataclass
class PinnedBatch:
    """A custom batch type whose pin_memory() returns a new batch with pinned tensors."""

    features: torch.Tensor
    labels: torch.Tensor

    def pin_memory(self) -> PinnedBatch:
        return PinnedBatch(self.features.pin_memory(), self.labels.pin_memory())


def _pinned_batch(samples: list[Any]) -> PinnedBatch:
    return PinnedBatch(torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples]))


def _loader(**kwargs: Any) -> Any:
    return lambda: tud.DataLoader(tensors(10), **kwargs)


def _inputs(*shape: int) -> dict[str, Any]:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return {"example_inputs": (torch.randn(*shape),)}


class FrozenBackbone(nn.Module):
    """Keeps its backbone (and its BatchNorm) in eval mode while training, as mmdetection's norm_eval."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def train(self, mode: bool = True) -> FrozenBackbone:
        super().train(mode)
        self.backbone.eval()
        return self


MODULE_CASES = [
    Case("linear", Module, seeded(lambda: nn.Linear(3, 2)), _inputs(4, 3)),
    Case("sequential", Module, seeded(lambda: nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))),
         _inputs(4, 3)),
    Case("conv2d", Module, seeded(lambda: nn.Conv2d(1, 2, 3)), _inputs(2, 1, 5, 5)),
    Case("dropout", Module, lambda: nn.Dropout(0.5), _inputs(4, 3)),
    Case("batchnorm1d", Module, seeded(lambda: nn.BatchNorm1d(3)), _inputs(4, 3)),
    Case("relu", Module, nn.ReLU, _inputs(4, 3)),
    Case("lstm", Module, seeded(lambda: nn.LSTM(3, 4, batch_first=True)), _inputs(2, 5, 3)),
    Case("embedding", Module, seeded(lambda: nn.Embedding(10, 3)),
         {"example_inputs": (torch.tensor([[1, 2], [3, 9]]),)}),
    Case("frozen_backbone_train_override", Module, seeded(FrozenBackbone), _inputs(4, 3)),
    Case("transformer_encoder_layer", Module,
         seeded(lambda: nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)),
         _inputs(2, 5, 8)),
]  # fmt: skip

CASES = [
    # CallableModule
    Case("relu_as_callable", CallableModule, nn.ReLU, _inputs(4, 3)),
    Case("linear_as_callable", CallableModule, seeded(lambda: nn.Linear(3, 2)), _inputs(4, 3)),
    Case("dropout_as_callable", CallableModule, lambda: nn.Dropout(0.5), _inputs(4, 3)),
    # MapDataset
    Case("tensor_dataset", MapDataset, tensors, expected_failures=VIEWS),
    Case("subset", MapDataset, lambda: tud.Subset(tensors(), [1, 3, 5, 7]), expected_failures=VIEWS),
    Case("concat_dataset", MapDataset, lambda: tud.ConcatDataset([tensors(4), tensors(6)]),
         expected_failures={**VIEWS, **CONCAT_NEGATIVE}),
    Case("stack_dataset_tuple", MapDataset, lambda: tud.StackDataset(tensors(), tensors()),
         expected_failures=VIEWS),
    Case("stack_dataset_dict", MapDataset, lambda: tud.StackDataset(a=tensors(), b=tensors()),
         expected_failures=VIEWS),
    Case("random_split_subset", MapDataset,
         lambda: tud.random_split(tensors(), [6, 4], generator=torch.Generator().manual_seed(0))[0],
         expected_failures=VIEWS),
    # IterableDataset
    Case("iterable_dataset_subclass", IterableDataset, Stream),
    Case("sized_sharded_iterable_dataset", IterableDataset, ShardedStream),
    Case("chain_dataset", IterableDataset, lambda: tud.ChainDataset([Stream(3), Stream(4)])),
    # Loader
    Case("dataloader", Loader, _loader(batch_size=4)),
    Case("dataloader_shuffle", Loader, _loader(batch_size=4, shuffle=True)),
    Case("dataloader_shuffle_generator", Loader,
         _loader(batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))),
    Case("dataloader_drop_last", Loader, _loader(batch_size=4, drop_last=True)),
    Case("dataloader_no_batching", Loader, _loader(batch_size=None)),
    Case("dataloader_custom_collate", Loader, _loader(batch_size=4, collate_fn=_first_two)),
    Case("dataloader_unbatched_collate", Loader, _loader(batch_size=4, collate_fn=unbatched)),
    Case("dataloader_transposed_collate", Loader, _loader(batch_size=4, collate_fn=transposed)),
    Case("dataloader_subset_sampler", Loader,
         _loader(batch_size=3, sampler=tud.SubsetRandomSampler([0, 2, 4, 6, 8]))),
    Case("dataloader_batch_sampler", Loader,
         _loader(batch_sampler=tud.BatchSampler(tud.SequentialSampler(range(10)), 3, drop_last=False))),
    Case("dataloader_over_list", Loader,
         lambda: tud.DataLoader([(float(i), i) for i in range(7)], batch_size=2)),
    Case("dataloader_iterable_dataset", Loader, lambda: tud.DataLoader(Stream(10), batch_size=4)),
    Case("dataloader_two_workers", Loader, _loader(batch_size=4, num_workers=2)),
    Case("dataloader_persistent_workers", Loader,
         _loader(batch_size=4, num_workers=1, persistent_workers=True)),
    # A sized stream sharded item by item over 2 workers is a mutant (len(loader) undercounts):
    # sharded in whole batches, or with one worker, len(loader) holds.
    Case("dataloader_sharded_stream", Loader, lambda: tud.DataLoader(ShardedStream(10), batch_size=4)),
    Case("dataloader_batch_aligned_stream_two_workers", Loader,
         lambda: tud.DataLoader(BatchAlignedStream(10, 4), batch_size=4, num_workers=2)),
    # Sampler
    Case("random_sampler", Sampler, lambda: tud.RandomSampler(range(10))),
    Case("random_sampler_generator", Sampler,
         lambda: tud.RandomSampler(range(10), generator=torch.Generator().manual_seed(0))),
    Case("random_sampler_replacement", Sampler, lambda: tud.RandomSampler(range(10), replacement=True)),
    Case("random_sampler_num_samples", Sampler,
         lambda: tud.RandomSampler(range(10), replacement=True, num_samples=25)),
    Case("sequential_sampler", Sampler, lambda: tud.SequentialSampler(range(10))),
    Case("subset_random_sampler", Sampler, lambda: tud.SubsetRandomSampler([1, 4, 6]),
         {"data_source_len": 7}),
    Case("subset_random_sampler_over_an_array", Sampler,
         lambda: tud.SubsetRandomSampler(np.array([1, 4, 6])), {"data_source_len": 7},
         expected_failures=NUMPY_INDICES),
    Case("subset_random_sampler_over_a_tensor", Sampler,
         lambda: tud.SubsetRandomSampler(torch.tensor([1, 4, 6])), {"data_source_len": 7},
         expected_failures=NUMPY_INDICES),
    Case("weighted_random_sampler", Sampler, lambda: tud.WeightedRandomSampler([0.1, 0.5, 0.2, 0.2], 10)),
    Case("weighted_random_sampler_no_replacement", Sampler,
         lambda: tud.WeightedRandomSampler([0.1, 0.5, 0.2, 0.2], 3, replacement=False)),
    Case("batch_sampler", Sampler, lambda: tud.BatchSampler(tud.SequentialSampler(range(10)), 3, False)),
    Case("batch_sampler_drop_last", Sampler,
         lambda: tud.BatchSampler(tud.RandomSampler(range(10)), 3, drop_last=True)),
    Case("distributed_sampler_rank0", Sampler,
         lambda: tud.DistributedSampler(range(11), num_replicas=2, rank=0)),
    Case("distributed_sampler_rank1", Sampler,
         lambda: tud.DistributedSampler(range(11), num_replicas=2, rank=1, shuffle=False)),
    Case("random_sampler_permutations_back_to_back", Sampler,
         lambda: tud.RandomSampler(range(10), replacement=False, num_samples=25)),
    Case("dataloader_batch_sampler_drop_last", Loader,
         _loader(batch_sampler=tud.BatchSampler(tud.SequentialSampler(range(10)), 4, drop_last=True))),
    Case("dataloader_unseeded_generator", Loader,
         _loader(batch_size=4, shuffle=True, generator=torch.Generator())),
    Case("dataloader_out_of_order", Loader, _loader(batch_size=3, num_workers=2, in_order=False)),
    # CollateFn
    Case("default_collate_tuples", CollateFn, lambda: tud.default_collate,
         {"example_inputs": [(torch.full((3,), float(i)), i) for i in range(4)]}),
    Case("default_collate_dicts", CollateFn, lambda: tud.default_collate,
         {"example_inputs": [{"x": torch.zeros(2), "y": i, "name": f"s{i}"} for i in range(4)]}),
    Case("default_collate_namedtuples", CollateFn, lambda: tud.default_collate,
         {"example_inputs": [Pair(torch.zeros(2), float(i)) for i in range(4)]}),
    Case("pad_sequence_time_major_collate", CollateFn, lambda: _time_major,
         {"example_inputs": [torch.ones(n) for n in (3, 5, 2, 4)]}),
    Case("list_of_one_stacked_batch_collate", CollateFn, lambda: _stacked_in_a_list,
         {"example_inputs": [torch.full((3,), float(i)) for i in range(4)]}),
    Case("default_collate_ndarrays", CollateFn, lambda: tud.default_collate,
         {"example_inputs": [torch.arange(3).numpy() for _ in range(4)]}),
    Case("dataloader_workers_module_level_functions", Loader,
         _loader(batch_size=4, num_workers=2, collate_fn=_first_two, worker_init_fn=_seed_worker)),
    Case("dataloader_workers_fork_context_lambda", Loader,
         _loader(batch_size=4, num_workers=2, multiprocessing_context="fork",
                 collate_fn=lambda b: tud.default_collate(b))),
    Case("dataloader_pinned_dataclass_batch", Loader,
         _loader(batch_size=4, pin_memory=True, collate_fn=_pinned_batch)),
    Case("pinned_dataclass_collate", CollateFn, lambda: _pinned_batch,
         {"example_inputs": [(torch.zeros(3), torch.tensor(i)) for i in range(4)],
          "transforms_samples": True}),
]  # fmt: skip


# -- "True to torch": torch's own modules with documented deviations ---------------------------------

NON_LEAF_WEIGHT = expected_failures("non_leaf_weight")
IN_PLACE = expected_failures("in_place")
PARAMETRIZED_PICKLE = expected_failures("parametrized_pickle")


def _called_once(build: Any) -> Any:
    """The module as it is after one training-mode call (a training step)."""

    def factory() -> object:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            module = build()
            module(torch.randn(4, 3))
        return module

    return factory


def _hook_based_weight_norm() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated in favour of parametrizations
        return nn.utils.weight_norm(nn.Linear(3, 2))


def _fresh_linear() -> nn.Module:
    return nn.Linear(3, 2)  # torch's default initialisation: differs from the seeded case


CASES.extend(
    [
        Case("weight_norm_as_applied", Module, seeded(_hook_based_weight_norm), _inputs(4, 3),
             expected_failures=NON_LEAF_WEIGHT),
        Case("weight_norm_after_a_call", Module, _called_once(_hook_based_weight_norm), _inputs(4, 3),
             expected_failures=NON_LEAF_WEIGHT),
        Case("spectral_norm_after_a_call", Module,
             _called_once(lambda: nn.utils.spectral_norm(nn.Linear(3, 2))), _inputs(4, 3),
             expected_failures=NON_LEAF_WEIGHT),
        Case("relu_inplace_as_callable", CallableModule, lambda: nn.ReLU(inplace=True), _inputs(4, 3),
             expected_failures=IN_PLACE),
        Case("hardtanh_inplace", Module, lambda: nn.Hardtanh(inplace=True), _inputs(4, 3),
             expected_failures=IN_PLACE),
    ]
)  # fmt: skip
MODULE_CASES.extend(
    [
        Case("parametrized_weight_norm", Module,
             seeded(lambda: nn.utils.parametrizations.weight_norm(nn.Linear(3, 2))), _inputs(4, 3),
             expected_failures=PARAMETRIZED_PICKLE),
        Case("linear_with_factory", Module, seeded(lambda: nn.Linear(3, 2)),
             {**_inputs(4, 3), "factory": _fresh_linear}),
    ]
)  # fmt: skip
