"""The reference implementation's classes satisfy the protocols they implement, with precise types."""

from typing import Any

import numpy as np
from numpy.typing import NDArray
from typing_extensions import assert_type

from torchcontract import reference_impl as ref
from torchcontract.protocols import CallableModule, CollateFn, IterableDataset, Loader, MapDataset, Module, Sampler

mnist = ref.MNIST(ref.sample_root(), train=False)
linear = ref.Linear(4, 3, rng=np.random.default_rng(0))

# --- modules -------------------------------------------------------------------------------------------------
ok_linear: Module = linear
ok_relu: Module = ref.ReLU()
ok_sequential: Module = ref.Sequential(ref.Linear(4, 3), ref.ReLU())
ok_relu_as_callable: CallableModule = ref.ReLU()
bad_parameter_as_module: Module = linear.weight  # type: ignore[assignment]
bad_sgd_as_module: Module = ref.SGD(linear.parameters(), lr=0.1)  # type: ignore[assignment]

# --- datasets -------------------------------------------------------------------------------------------------
ok_mnist: MapDataset[tuple[Any, Any]] = mnist
ok_stream: IterableDataset[tuple[Any, Any]] = ref.StreamDataset(mnist)
stream_of_ints = ref.StreamDataset([1, 2, 3])
ok_stream_of_ints: IterableDataset[int] = stream_of_ints
bad_stream_of_ints_as_str: IterableDataset[str] = stream_of_ints  # type: ignore[assignment]
bad_stream_as_map_dataset: MapDataset[int] = ref.StreamDataset([1, 2, 3])  # type: ignore[assignment]

# --- samplers, loaders, collate ----------------------------------------------------------------------------
ok_sequential_sampler: Sampler[int] = ref.SequentialSampler(10)
ok_random_sampler: Sampler[int] = ref.RandomSampler(10, seed=0)
ok_batch_sampler: Sampler[list[int]] = ref.BatchSampler(ref.SequentialSampler(10), 4, drop_last=False)
ok_distributed_sampler: Sampler[int] = ref.DistributedSampler(10, num_replicas=2, rank=0)
batch_sampler = ref.BatchSampler(ref.SequentialSampler(10), 4, drop_last=False)
bad_batch_sampler_as_index_sampler: Sampler[int] = batch_sampler  # type: ignore[assignment]
ok_loader: Loader[Any] = ref.DataLoader(mnist, batch_size=8)
ok_collate: CollateFn[tuple[Any, int], Any] = ref.default_collate


def calls_are_typed() -> None:
    output = linear(np.zeros((2, 4), dtype=np.float32))
    assert_type(linear.forward(np.zeros((2, 4), dtype=np.float32)), NDArray[Any])
    assert_type(output, Any)  # __call__ is (*args, **kwargs) -> Any, like torch's
    assert_type(mnist[0], tuple[Any, Any])
