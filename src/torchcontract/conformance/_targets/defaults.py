"""The targets of ``torchcontract report``: the reference implementation on the bundled MNIST sample,
and, when they are installed, real torch and torchvision objects on the same files.

Documented deviations of torch's own classes (SPEC.md) are given as expected failures, with reasons.
"""

from __future__ import annotations

import gzip
import importlib.util
import shutil
from collections.abc import Callable, Sized
from pathlib import Path

import numpy as np

from torchcontract import reference_impl as ref
from torchcontract.conformance._core.target import Target
from torchcontract.protocols import (
    CallableModule,
    CollateFn,
    IterableDataset,
    Loader,
    MapDataset,
    Module,
    Sampler,
    Stateful,
)

__all__ = ["default_targets", "extract_mnist_sample", "reference_targets"]


def extract_mnist_sample(root: Path) -> Path:
    """Gunzip the bundled MNIST sample into ``root/MNIST/raw`` (torchvision reads uncompressed files
    only) and return ``root``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for packed in sorted((ref.sample_root() / "MNIST" / "raw").glob("*.gz")):
        target = raw / packed.name.removesuffix(".gz")
        if not target.exists():
            with gzip.open(packed, "rb") as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink)
    return root


def reference_targets() -> list[Target]:
    """The reference implementation's objects, one or more per protocol."""
    train = ref.MNIST(ref.sample_root(), train=True)
    test = ref.MNIST(ref.sample_root(), train=False)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((8, 784)).astype(np.float32)
    mlp = ref.Sequential(
        ref.Linear(784, 32, rng=np.random.default_rng(1)),
        ref.ReLU(),
        ref.Linear(32, 10, rng=np.random.default_rng(2)),
    )
    return [
        Target(train, MapDataset, name="ref.MNIST(train)"),
        Target(test, MapDataset, name="ref.MNIST(test)"),
        Target(ref.StreamDataset(test), IterableDataset, name="ref.StreamDataset(MNIST)"),
        Target(ref.DataLoader(train, batch_size=64), Loader, name="ref.DataLoader(batch_size=64)"),
        Target(
            ref.DataLoader(train, batch_size=64, shuffle=True, seed=0),
            Loader,
            name="ref.DataLoader(shuffle=True)",
        ),
        Target(ref.DataLoader(test, batch_size=96, drop_last=True), Loader, name="ref.DataLoader(drop_last)"),
        Target(
            ref.DataLoader(ref.StreamDataset(test), batch_size=100),
            Loader,
            name="ref.DataLoader(StreamDataset)",
        ),
        Target(ref.SequentialSampler(train), Sampler, name="ref.SequentialSampler"),
        Target(ref.RandomSampler(train, seed=0), Sampler, name="ref.RandomSampler"),
        Target(
            ref.BatchSampler(ref.RandomSampler(train, seed=0), 64, drop_last=False),
            Sampler,
            name="ref.BatchSampler",
        ),
        Target(
            ref.DistributedSampler(train, num_replicas=3, rank=1),
            Sampler,
            name="ref.DistributedSampler",
            world_size=3,
            shards=_distributed_shards(train),
        ),
        Target(
            ref.default_collate,
            CollateFn,
            name="ref.default_collate",
            example_inputs=[train[i] for i in range(5)],
        ),
        Target(
            ref.DataLoader(train, batch_size=500, shuffle=True, seed=0),
            Stateful,
            name="ref.DataLoader(shuffle=True) (resumable)",
        ),
        Target(ref.RandomSampler(train, seed=0), Stateful, name="ref.RandomSampler (resumable)"),
        Target(ref.ReLU(), CallableModule, name="ref.ReLU", example_inputs=(images,)),
        Target(ref.Linear(784, 10, rng=rng), Module, name="ref.Linear", example_inputs=(images,)),
        Target(mlp, Module, name="ref.Sequential(MLP)", example_inputs=(images,)),
    ]


def _distributed_shards(dataset: Sized) -> Callable[[int, int], ref.DistributedSampler]:
    """``shards=`` of the reference ``DistributedSampler``'s target: the sampler of each rank, built as
    the target's own (the checks rebuild no class but torch's ``DistributedSampler`` by themselves)."""

    def shards(rank: int, world_size: int) -> ref.DistributedSampler:
        return ref.DistributedSampler(dataset, num_replicas=world_size, rank=rank)

    return shards


def default_targets(workdir: Path) -> list[Target]:
    """Everything ``torchcontract report`` checks; torch's targets only when torch is installed."""
    targets = reference_targets()
    if importlib.util.find_spec("torch") is not None:
        from torchcontract.conformance._targets.torch_targets import torch_targets

        targets += torch_targets(extract_mnist_sample(workdir))
    return targets
