"""torch.utils.data's datasets, samplers, loader variants and collate functions, and torchdata's loaders,
checked through ``parametrize_with_checks`` (one test per object and clause), as a library's own
suite would. Small objects of generated data; the same in the fast slice and the full corpus.

A failed recommended clause fails its test too (the warning filter below): in the corpus every failure
is declared, from torch's deviations table or as a finding, or it is a false verdict.
"""

from __future__ import annotations

import functools
import importlib.util
from collections import namedtuple
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from torch.utils import data  # noqa: E402
from torch.utils.data._utils import collate as torch_collate  # noqa: E402

from torchcontract.conformance import Target, parametrize_with_checks  # noqa: E402
from torchcontract.protocols import (  # noqa: E402
    CollateFn,
    IterableDataset,
    Loader,
    MapDataset,
    Sampler,
    Stateful,
)

from ._support import declared, deviation  # noqa: E402

pytestmark = pytest.mark.filterwarnings("error::torchcontract.conformance.ConformanceWarning")

N = 23  # not a multiple of any batch size or world size below: every last batch is short
FEATURES = torch.arange(N * 3.0).reshape(N, 3)
LABELS = torch.arange(N) % 4
TENSORS = data.TensorDataset(FEATURES, LABELS)
VIEWS = deviation("views")


class Stream(data.IterableDataset[torch.Tensor]):
    """An IterableDataset of ``n`` rows that shards itself across DataLoader workers, as torch's
    documentation asks of every IterableDataset loaded by several workers."""

    def __init__(self, n: int, offset: float = 0.0) -> None:
        self.n = n
        self.offset = offset

    def __iter__(self) -> Iterator[torch.Tensor]:
        worker = data.get_worker_info()
        start, step = (0, 1) if worker is None else (worker.id, worker.num_workers)
        for i in range(start, self.n, step):
            yield torch.full((2,), i + self.offset)


class SizedStream(Stream):
    def __len__(self) -> int:
        return self.n


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _datasets() -> list[Target]:
    first, second = data.random_split(TENSORS, [0.7, 0.3], generator=_generator(0))
    return [
        Target(TENSORS, MapDataset, name="TensorDataset", expected_failures=VIEWS),
        Target(
            data.TensorDataset(FEATURES),
            MapDataset,
            name="TensorDataset(one tensor)",
            expected_failures=VIEWS,
        ),
        Target(data.Subset(TENSORS, [5, 0, 7, 7, 22]), MapDataset, name="Subset", expected_failures=VIEWS),
        Target(first, MapDataset, name="random_split[0]", expected_failures=VIEWS),
        Target(second, MapDataset, name="random_split[1]", expected_failures=VIEWS),
        Target(
            data.ConcatDataset([TENSORS, data.Subset(TENSORS, range(4))]),
            MapDataset,
            name="ConcatDataset",
            expected_failures=deviation("views", "concat_negative_index"),
        ),
        Target(
            data.StackDataset(TENSORS, data.TensorDataset(FEATURES * 2)),
            MapDataset,
            name="StackDataset(tuple)",
            expected_failures=VIEWS,
        ),
        Target(
            data.StackDataset(x=data.TensorDataset(FEATURES), y=data.TensorDataset(LABELS)),
            MapDataset,
            name="StackDataset(dict)",
            expected_failures=VIEWS,
        ),
        Target(SizedStream(N), IterableDataset, name="IterableDataset(sized)"),
        Target(Stream(N), IterableDataset, name="IterableDataset"),
        Target(
            data.ChainDataset([Stream(7), Stream(5, offset=100.0)]),
            IterableDataset,
            name="ChainDataset",
        ),
    ]


WEIGHTS = torch.linspace(0.1, 1.0, N)


def _samplers() -> list[Target]:
    return [
        Target(data.SequentialSampler(TENSORS), Sampler, name="SequentialSampler"),
        Target(data.RandomSampler(TENSORS), Sampler, name="RandomSampler"),
        Target(
            data.RandomSampler(TENSORS, generator=_generator(1)), Sampler, name="RandomSampler(generator)"
        ),
        Target(
            data.RandomSampler(TENSORS, replacement=True, num_samples=40, generator=_generator(2)),
            Sampler,
            name="RandomSampler(replacement, num_samples=40)",
        ),
        Target(
            data.RandomSampler(TENSORS, num_samples=50, generator=_generator(3)),
            Sampler,
            name="RandomSampler(num_samples=50)",
        ),
        Target(
            data.SubsetRandomSampler([1, 4, 6, 9, 22], generator=_generator(4)),
            Sampler,
            name="SubsetRandomSampler(list)",
            data_source_len=N,
        ),
        Target(
            data.SubsetRandomSampler(np.array([1, 4, 6, 9, 22]), generator=_generator(5)),
            Sampler,
            name="SubsetRandomSampler(ndarray)",
            data_source_len=N,
            expected_failures=deviation("numpy_indices"),
        ),
        Target(
            data.SubsetRandomSampler(torch.tensor([1, 4, 6, 9, 22]), generator=_generator(6)),
            Sampler,
            name="SubsetRandomSampler(tensor)",
            data_source_len=N,
            expected_failures=deviation("numpy_indices"),
        ),
        Target(
            data.WeightedRandomSampler(WEIGHTS, 30, generator=_generator(7)),
            Sampler,
            name="WeightedRandomSampler",
            data_source_len=N,
        ),
        Target(
            data.WeightedRandomSampler(WEIGHTS, 10, replacement=False, generator=_generator(8)),
            Sampler,
            name="WeightedRandomSampler(replacement=False)",
            data_source_len=N,
        ),
        Target(
            data.BatchSampler(data.SequentialSampler(TENSORS), 5, drop_last=False),
            Sampler,
            name="BatchSampler",
        ),
        Target(
            data.BatchSampler(data.RandomSampler(TENSORS, generator=_generator(9)), 5, drop_last=True),
            Sampler,
            name="BatchSampler(RandomSampler, drop_last)",
        ),
        Target(
            data.DistributedSampler(TENSORS, num_replicas=3, rank=1, seed=1),
            Sampler,
            name="DistributedSampler",
            world_size=3,
        ),
        Target(
            data.DistributedSampler(TENSORS, num_replicas=4, rank=0, shuffle=False),
            Sampler,
            name="DistributedSampler(shuffle=False)",
            world_size=4,
        ),
        Target(
            data.DistributedSampler(TENSORS, num_replicas=4, rank=2, seed=2, drop_last=True),
            Sampler,
            name="DistributedSampler(drop_last)",
            world_size=4,
        ),
    ]


def pair_batches(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[int]]:
    """A custom collate_fn (module level: it pickles into spawned workers)."""
    return torch.stack([features for features, _ in samples]), [int(label) for _, label in samples]


def seed_worker(worker_id: int) -> None:
    """A worker_init_fn, as torch's reproducibility notes write one."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)


def loader_of_rank(rank: int, world_size: int) -> data.DataLoader[Any]:
    """One rank's loader (module level: each rank's process unpickles it)."""
    sampler = data.DistributedSampler(TENSORS, num_replicas=world_size, rank=rank, seed=4)
    return data.DataLoader(TENSORS, batch_size=4, sampler=sampler)


def _loaders() -> list[Target]:
    loader = functools.partial(data.DataLoader, TENSORS)
    return [
        Target(loader(batch_size=4), Loader, name="DataLoader"),
        Target(
            loader(batch_size=4, shuffle=True, generator=_generator(10)), Loader, name="DataLoader(shuffle)"
        ),
        Target(loader(batch_size=4, drop_last=True), Loader, name="DataLoader(drop_last)"),
        Target(loader(batch_size=None), Loader, name="DataLoader(batch_size=None)"),
        Target(
            loader(
                batch_size=3, sampler=data.SubsetRandomSampler([0, 2, 4, 6, 8, 10], generator=_generator(11))
            ),
            Loader,
            name="DataLoader(sampler=SubsetRandomSampler)",
        ),
        Target(
            loader(batch_sampler=data.BatchSampler(data.SequentialSampler(TENSORS), 6, drop_last=False)),
            Loader,
            name="DataLoader(batch_sampler)",
        ),
        Target(loader(batch_size=4, collate_fn=pair_batches), Loader, name="DataLoader(collate_fn)"),
        Target(loader(batch_size=4, num_workers=2), Loader, name="DataLoader(num_workers=2)"),
        Target(
            loader(batch_size=4, num_workers=2, persistent_workers=True, prefetch_factor=3),
            Loader,
            name="DataLoader(persistent_workers)",
        ),
        Target(
            loader(batch_size=4, num_workers=2, in_order=False, worker_init_fn=seed_worker),
            Loader,
            name="DataLoader(in_order=False, worker_init_fn)",
        ),
        Target(
            loader(batch_size=4, num_workers=2, multiprocessing_context="spawn"),
            Loader,
            name="DataLoader(spawn)",
        ),
        Target(
            loader(batch_size=4, num_workers=2, timeout=60.0, collate_fn=pair_batches),
            Loader,
            name="DataLoader(workers, collate_fn, timeout)",
        ),
        Target(
            data.DataLoader(
                data.StackDataset(x=data.TensorDataset(FEATURES), y=data.TensorDataset(LABELS)), batch_size=5
            ),
            Loader,
            name="DataLoader(StackDataset(dict))",
        ),
        Target(data.DataLoader(SizedStream(N), batch_size=4), Loader, name="DataLoader(IterableDataset)"),
        Target(
            data.DataLoader(SizedStream(N), batch_size=4, num_workers=2),
            Loader,
            name="DataLoader(IterableDataset, num_workers=2)",
        ),
        Target(
            data.DataLoader(Stream(N), batch_size=None),
            Loader,
            name="DataLoader(IterableDataset, batch_size=None)",
        ),
        Target(
            loader_of_rank(0, 1),
            Loader,
            name="DataLoader(DistributedSampler)",
            shards=loader_of_rank,
            world_size=2,
        ),
    ]


Point = namedtuple("Point", ["x", "label"])


def ints_as_list(batch: list[int], *, collate_fn_map: Any = None) -> list[int]:
    """A collate function of ``collate_fn_map`` for ints (module level: the map pickles with it)."""
    return list(batch)


def _collate_functions() -> list[Target]:
    def tensors(k: int) -> list[Any]:
        return [TENSORS[i] for i in range(k)]

    def string_samples() -> list[Any]:
        return [{"name": f"s{i}", "x": np.full(2, float(i)), "n": i, "w": 0.5 * i} for i in range(4)]

    # torch's documented way to extend default_collate: collate() with a map from type to function.
    numbers_as_lists = {**torch_collate.default_collate_fn_map, int: ints_as_list}
    return [
        Target(data.default_collate, CollateFn, name="default_collate(tuples)", example_inputs=tensors(4)),
        Target(
            data.default_collate,
            CollateFn,
            name="default_collate(namedtuples)",
            example_inputs=[Point(FEATURES[i], int(LABELS[i])) for i in range(5)],
        ),
        Target(
            data.default_collate,
            CollateFn,
            name="default_collate(dicts of NumPy, str, int, float)",
            example_inputs=string_samples(),
        ),
        Target(
            data.default_convert,
            CollateFn,
            name="default_convert",
            example_inputs=[{"x": np.full(3, float(i)), "y": i} for i in range(4)],
        ),
        Target(
            functools.partial(torch_collate.collate, collate_fn_map=numbers_as_lists),
            CollateFn,
            name="collate(collate_fn_map)",
            example_inputs=[(FEATURES[i], int(LABELS[i])) for i in range(4)],
        ),
    ]


def _torchdata() -> list[Target]:
    if importlib.util.find_spec("torchdata") is None:
        return []
    from torchdata import nodes
    from torchdata.stateful_dataloader import StatefulDataLoader

    def nodes_loader(restart_on_stop_iteration: bool = True) -> Any:
        sampler = data.SequentialSampler(TENSORS)
        node = nodes.Batcher(nodes.MapStyleWrapper(TENSORS, sampler), batch_size=4, drop_last=False)
        return nodes.Loader(nodes.Mapper(node, data.default_collate), restart_on_stop_iteration)

    def parallel_loader() -> Any:
        node = nodes.ParallelMapper(
            nodes.IterableWrapper(range(N)), map_fn=_square, num_workers=2, in_order=True, method="thread"
        )
        return nodes.Loader(nodes.Prefetcher(nodes.Batcher(node, batch_size=5), prefetch_factor=2))

    return [
        Target(StatefulDataLoader(TENSORS, batch_size=4), Loader, name="StatefulDataLoader"),
        Target(
            StatefulDataLoader(TENSORS, batch_size=4, num_workers=2),
            Loader,
            name="StatefulDataLoader(num_workers=2)",
        ),
        Target(
            StatefulDataLoader(TENSORS, batch_size=4, shuffle=True, generator=_generator(12)),
            Loader,
            name="StatefulDataLoader(shuffle)",
        ),
        Target(
            functools.partial(StatefulDataLoader, TENSORS, batch_size=4)(),
            Stateful,
            name="StatefulDataLoader(Stateful)",
            factory=functools.partial(StatefulDataLoader, TENSORS, batch_size=4),
        ),
        Target(
            StatefulDataLoader(TENSORS, batch_size=4, num_workers=2),
            Stateful,
            name="StatefulDataLoader(num_workers=2, Stateful)",
        ),
        Target(nodes_loader(), Loader, name="nodes.Loader(MapStyleWrapper, Batcher, Mapper)"),
        Target(
            nodes_loader(),
            Stateful,
            name="nodes.Loader(Stateful)",
            factory=nodes_loader,
            expected_failures=declared(
                "torchdata's Loader(restart_on_stop_iteration=True), the default, starts a new epoch "
                "when loaded with a state that has no item left (Loader.__iter__: 'if "
                "self.restart_on_stop_iteration and not self._it.has_next()'), also one taken after the "
                "last item, before StopIteration",
                "stateful.resume_yields_rest_of_epoch",
            ),
        ),
        Target(
            nodes_loader(restart_on_stop_iteration=False),
            Stateful,
            name="nodes.Loader(restart_on_stop_iteration=False, Stateful)",
            factory=functools.partial(nodes_loader, restart_on_stop_iteration=False),
            expected_failures=declared(
                "torchdata's Loader(restart_on_stop_iteration=False) does not restart when loaded with a "
                "state that has no item left: one taken at the end of an epoch, after StopIteration, "
                "gives an empty epoch (Loader.__iter__)",
                "stateful.resume_yields_rest_of_epoch",
            ),
        ),
        Target(parallel_loader(), Loader, name="nodes.Loader(ParallelMapper, Prefetcher)"),
    ]


def _square(x: int) -> torch.Tensor:
    return torch.tensor([x, x * x])


TARGETS = [*_datasets(), *_samplers(), *_loaders(), *_collate_functions(), *_torchdata()]


@parametrize_with_checks(TARGETS)
def test_torch_data(target: Target, check: Any) -> None:
    check(target)
