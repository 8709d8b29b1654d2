"""Correct objects, declared as data: each must pass every check of its protocol.

A correct object may still deviate from a *recommended* clause on purpose (a NumPy array returns
views of itself); such a deviation is declared in ``expected_failures`` with its reason, so that the
check shows as xfailed, and as xpassed, which fails the test, if the deviation ever disappears.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from torchcontract.protocols import (
    CallableModule,
    CollateFn,
    IterableDataset,
    Loader,
    MapDataset,
    Module,
    Sampler,
)

from .correct import (
    MLP,
    Affine,
    BatchedPoints,
    BatchLoader,
    EndlessCounter,
    EndlessShuffles,
    LabelledImage,
    Linear,
    NoisyPoints,
    Points,
    PointStream,
    SeededShuffleSampler,
    SizedPointStream,
    TiedAutoencoder,
    mlp_inputs,
    numpy_collate,
)

# The reasons of the documented deviations, shared by every object that has them.
CONTAINER_RETURNS_ITS_OWN_OBJECTS = (
    "a container returns the (mutable) objects it holds, as Python's list does; mutating a sample "
    "mutates the container"
)
ARRAY_INDEXING_RETURNS_VIEWS = "NumPy/torch basic indexing returns a view into the array's storage"


@dataclass(frozen=True)
class Case:
    """A correct object: how to build it, its protocol, and what ``check()`` needs to know about it."""

    name: str
    protocol: type[Any]
    factory: Callable[[], object]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    expected_failures: Mapping[str, str] = field(default_factory=dict)


def _views(reason: str = ARRAY_INDEXING_RETURNS_VIEWS) -> dict[str, str]:
    return {"map_dataset.samples_are_independent_copies": reason}


def stack(samples: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    """The simplest collate function: arrays stacked along a new first axis."""
    return np.stack(samples)


def unbatched(samples: list[Any]) -> list[Any]:
    """``collate_fn=lambda batch: batch``: keeps the list of samples (variable-size images, say)."""
    return samples


def transposed(samples: list[tuple[Any, ...]]) -> tuple[tuple[Any, ...], ...]:
    """``collate_fn=lambda batch: tuple(zip(*batch))``, as torchvision's detection references use."""
    return tuple(zip(*samples, strict=True))


def _dict_samples(n: int = 6) -> list[dict[str, Any]]:
    return [{"image": np.full((2, 2), i, dtype=np.float32), "label": i % 2} for i in range(n)]


def _tuple_samples(n: int = 4) -> list[tuple[np.ndarray[Any, Any], int]]:
    return [(np.full(3, i, dtype=np.float32), i % 2) for i in range(n)]


def _dict_collate(samples: list[Any]) -> dict[str, Any]:
    features, labels = numpy_collate(samples)
    return {"features": features, "labels": labels}


MODULE_INPUTS = {"example_inputs": mlp_inputs()}

PLAIN_CASES = [
    # MapDataset
    Case("list_of_ints", MapDataset, lambda: [3, 1, 4, 1, 5, 9, 2, 6]),
    Case("empty_list", MapDataset, list),
    Case("tuple_of_pairs", MapDataset, lambda: tuple((i, f"item {i}") for i in range(5))),
    Case("range", MapDataset, lambda: range(10)),
    Case("long_range_sampled", MapDataset, lambda: range(100_000)),
    Case("list_of_dict_samples", MapDataset, _dict_samples,
         expected_failures=_views(CONTAINER_RETURNS_ITS_OWN_OBJECTS)),
    Case("numpy_2d_array", MapDataset, lambda: np.arange(36, dtype=np.float32).reshape(12, 3),
         expected_failures=_views()),
    Case("numpy_1d_array", MapDataset, lambda: np.arange(12)),  # scalars: nothing to mutate
    Case("points", MapDataset, Points),
    Case("points_with_getitems", MapDataset, BatchedPoints),
    Case("many_points_sampled", MapDataset, lambda: Points(5000)),
    Case("random_augmentation_declared", MapDataset, NoisyPoints, {"deterministic": False}),
    # IterableDataset
    Case("generator_function_stream", IterableDataset, PointStream),
    Case("empty_stream", IterableDataset, lambda: PointStream(0)),
    Case("sized_stream", IterableDataset, SizedPointStream),
    Case("endless_stream_declared_infinite", IterableDataset, EndlessCounter, {"infinite": True}),
    Case("list_as_stream", IterableDataset, lambda: [1, 2, 3]),
    # Loader
    Case("list_of_batches", Loader, lambda: [np.zeros((4, 3)), np.ones((4, 3)), np.ones((2, 3))]),
    Case("batch_loader", Loader, lambda: BatchLoader(Points(10), 4)),
    Case("batch_loader_drop_last", Loader, lambda: BatchLoader(Points(10), 4, drop_last=True)),
    Case("batch_loader_exact_batches", Loader, lambda: BatchLoader(Points(8), 4)),
    Case("batch_loader_dict_collate", Loader, lambda: BatchLoader(Points(10), 3, collate_fn=_dict_collate)),
    Case("batch_loader_unbatched_collate", Loader, lambda: BatchLoader(Points(10), 4, collate_fn=unbatched)),
    # Sampler
    Case("range_sampler", Sampler, lambda: range(10)),
    Case("list_of_indices", Sampler, lambda: [3, 1, 2], {"data_source_len": 4}),
    Case("seeded_shuffle_sampler", Sampler, lambda: SeededShuffleSampler(Points(10))),
    Case("endless_shuffles_declared_infinite", Sampler, lambda: EndlessShuffles(10),
         {"infinite": True, "data_source_len": 10}),
    Case("endless_shuffles_of_unknown_length", Sampler, lambda: EndlessShuffles(10), {"infinite": True}),
    Case("list_of_index_batches", Sampler, lambda: [[0, 1], [2, 3], [4]], {"data_source_len": 5}),
    Case("list_of_string_keys", Sampler, lambda: ["img0", "img3", "img1"]),
    Case("index_scale_pairs", Sampler, lambda: [(0, 0.5), (2, 1.0), (1, 1.5)], {"data_source_len": 3}),
    # CollateFn
    Case("numpy_collate_tuples", CollateFn, lambda: numpy_collate, {"example_inputs": _tuple_samples()}),
    Case("numpy_collate_dicts", CollateFn, lambda: numpy_collate, {"example_inputs": _dict_samples(4)}),
    Case("numpy_collate_namedtuples", CollateFn, lambda: numpy_collate,
         {"example_inputs": [LabelledImage(np.zeros((2, 2)), i) for i in range(4)]}),
    Case("stack_function", CollateFn, lambda: stack,
         {"example_inputs": [np.full(3, i, dtype=np.float32) for i in range(4)]}),
    Case("unbatched_collate", CollateFn, lambda: unbatched, {"example_inputs": _tuple_samples()}),
    Case("transposed_collate", CollateFn, lambda: transposed, {"example_inputs": _tuple_samples()}),
    # CallableModule and Module
    Case("affine", CallableModule, Affine, MODULE_INPUTS),
    Case("mlp_as_callable", CallableModule, MLP, MODULE_INPUTS),
    Case("mlp", Module, MLP, MODULE_INPUTS),
    Case("mlp_without_dropout", Module, lambda: MLP(p=0.0), MODULE_INPUTS),
    Case("linear", Module, lambda: Linear(3, 2), MODULE_INPUTS),
    Case("tied_autoencoder", Module, TiedAutoencoder, MODULE_INPUTS),
]  # fmt: skip
