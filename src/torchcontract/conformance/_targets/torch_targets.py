"""torch's and torchvision's targets of ``torchcontract report`` (imported only when torch is installed)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils import data

from torchcontract import reference_impl as ref
from torchcontract.conformance._core.target import Target
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

__all__ = ["ShardedRange", "loader_of_rank", "torch_targets"]

VIEWS = expected_failures("views")
VIEWS_AND_NEGATIVE_INDEX = expected_failures("views", "concat_negative_index")


RANKED = data.TensorDataset(torch.arange(46.0).reshape(23, 2), torch.arange(23))


def loader_of_rank(rank: int, world_size: int) -> data.DataLoader[Any]:
    """One rank's loader (module level: each rank of the process group unpickles it)."""
    sampler: data.DistributedSampler[int] = data.DistributedSampler(
        RANKED, num_replicas=world_size, rank=rank, seed=4
    )
    return data.DataLoader(RANKED, batch_size=4, sampler=sampler)


class ShardedRange(data.IterableDataset[int]):
    """A torch IterableDataset of ``range(length)`` that shards itself across DataLoader workers."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        worker = data.get_worker_info()
        start, step = (0, 1) if worker is None else (worker.id, worker.num_workers)
        return iter(range(start, self.length, step))


def torch_targets(mnist_root: Path) -> list[Target]:
    """torch's classes (and torchvision's MNIST, when installed) that the protocols formalise.

    Built with torch's global generator seeded inside ``fork_rng``, so that the modules' weights are
    the same in every run and the caller's global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _build_torch_targets(mnist_root)


def _build_torch_targets(mnist_root: Path) -> list[Target]:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(60, 8, generator=generator)
    labels = torch.arange(60) % 3
    tensors = data.TensorDataset(features, labels)
    reference_mnist = ref.MNIST(mnist_root, train=False)

    def inputs(*shape: int) -> tuple[Any, ...]:
        return (torch.randn(*shape, generator=generator),)

    # The modules' factories build fresh instances (module.state_dict_round_trip loads into one,
    # module.builds_on_meta_device builds one on the meta device). One module is compiled and
    # exported (the opt-in clauses, seconds each: one target shows them on a torch module).
    def sequential() -> nn.Module:
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))

    def encoder_layer() -> nn.Module:
        return nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)

    targets = [
        Target(
            nn.Linear(8, 4),
            Module,
            name="torch.nn.Linear",
            example_inputs=inputs(5, 8),
            factory=lambda: nn.Linear(8, 4),
        ),
        Target(
            sequential(),
            Module,
            name="torch.nn.Sequential",
            example_inputs=inputs(5, 8),
            factory=sequential,
        ),
        Target(
            nn.Conv2d(1, 4, 3),
            Module,
            name="torch.nn.Conv2d",
            example_inputs=inputs(2, 1, 28, 28),
            factory=lambda: nn.Conv2d(1, 4, 3),
        ),
        Target(nn.Dropout(0.5), Module, name="torch.nn.Dropout", example_inputs=inputs(4, 8)),
        Target(
            nn.BatchNorm1d(8),
            Module,
            name="torch.nn.BatchNorm1d",
            example_inputs=inputs(5, 8),
            factory=lambda: nn.BatchNorm1d(8),
        ),
        Target(nn.ReLU(), CallableModule, name="torch.nn.ReLU", example_inputs=inputs(4, 8)),
        Target(
            encoder_layer(),
            Module,
            name="torch.nn.TransformerEncoderLayer",
            compile=True,
            export=True,
            example_inputs=inputs(2, 5, 16),
            factory=encoder_layer,
        ),
        Target(
            nn.GRU(8, 6, batch_first=True),
            Module,
            name="torch.nn.GRU",
            example_inputs=inputs(2, 5, 8),
            factory=lambda: nn.GRU(8, 6, batch_first=True),
        ),
        Target(
            nn.Embedding(20, 4),
            Module,
            name="torch.nn.Embedding",
            example_inputs=(torch.randint(0, 20, (3, 5), generator=generator),),
            factory=lambda: nn.Embedding(20, 4),
        ),
        Target(
            tensors,
            MapDataset,
            name="torch.TensorDataset",
            expected_failures=VIEWS,
        ),
        Target(
            data.Subset(tensors, list(range(0, 60, 3))),
            MapDataset,
            name="torch.Subset",
            expected_failures=VIEWS,
        ),
        Target(
            data.ConcatDataset([tensors, tensors]),
            MapDataset,
            name="torch.ConcatDataset",
            expected_failures=VIEWS_AND_NEGATIVE_INDEX,
        ),
        Target(ShardedRange(60), IterableDataset, name="torch.IterableDataset(subclass)"),
        Target(data.DataLoader(tensors, batch_size=16), Loader, name="torch.DataLoader"),
        Target(
            data.DataLoader(tensors, batch_size=16, shuffle=True, generator=generator),
            Loader,
            name="torch.DataLoader(shuffle=True)",
        ),
        Target(
            data.DataLoader(tensors, batch_size=16, drop_last=True),
            Loader,
            name="torch.DataLoader(drop_last)",
        ),
        Target(data.DataLoader(tensors, batch_size=None), Loader, name="torch.DataLoader(batch_size=None)"),
        Target(
            # torch types DataLoader's dataset as the Dataset class: the documented cast (SPEC.md).
            data.DataLoader(cast("data.Dataset[Any]", reference_mnist), batch_size=100),
            Loader,
            name="torch.DataLoader(ref.MNIST)",
        ),
        Target(data.SequentialSampler(tensors), Sampler, name="torch.SequentialSampler"),
        Target(data.RandomSampler(tensors, generator=generator), Sampler, name="torch.RandomSampler"),
        Target(
            data.BatchSampler(data.RandomSampler(tensors), 7, drop_last=False),
            Sampler,
            name="torch.BatchSampler",
        ),
        Target(
            data.DistributedSampler(tensors, num_replicas=4, rank=3, seed=1),
            Sampler,
            name="torch.DistributedSampler",
            world_size=4,
        ),
        Target(
            loader_of_rank(0, 1),
            Loader,
            name="torch.DataLoader(DistributedSampler)",
            shards=loader_of_rank,
            world_size=2,
        ),
        Target(
            data.default_collate,
            CollateFn,
            name="torch.default_collate",
            example_inputs=[tensors[i] for i in range(4)],
        ),
    ]
    if importlib.util.find_spec("torchvision") is not None:
        from torchvision import datasets, models, transforms

        targets += [
            Target(
                datasets.MNIST(str(mnist_root), train=True),
                MapDataset,
                name="torchvision.MNIST",
                expected_failures=expected_failures("pil_images"),
            ),
            Target(
                datasets.MNIST(str(mnist_root), train=False, transform=transforms.ToTensor()),
                MapDataset,
                name="torchvision.MNIST(ToTensor)",
            ),
            Target(
                models.resnet18(weights=None, num_classes=10),
                Module,
                name="torchvision.models.resnet18",
                example_inputs=inputs(2, 3, 64, 64),
                factory=lambda: models.resnet18(weights=None, num_classes=10),
            ),
            Target(
                data.DataLoader(
                    datasets.MNIST(str(mnist_root), train=False, transform=transforms.PILToTensor()),
                    batch_size=100,
                ),
                Loader,
                name="torch.DataLoader(torchvision.MNIST)",
            ),
        ]
    return targets
