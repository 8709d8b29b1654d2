"""Loader factories for the torchrun tests that tests/workers/fixtures.py does not have.

They are imported by module name in every rank that torchrun starts (``MODULE:FACTORY``).
"""

from __future__ import annotations

import os
from typing import Any

from torch.utils import data

from .fixtures import TENSORS, torch_loader


def raises_on_rank_one(rank: int, world_size: int) -> data.DataLoader[Any]:
    """Rank 1 cannot build its loader (a bug of that rank's configuration)."""
    if rank == 1:
        raise ValueError("no shard file for rank 1")
    return torch_loader(rank, world_size)


def seed_per_node(rank: int, world_size: int) -> data.DataLoader[Any]:
    """The shuffle seed differs per node (torchrun's GROUP_RANK): within one node the ranks agree and
    cover the dataset; across nodes they shuffle differently, so samples repeat and go missing."""
    seed = 3 + int(os.environ.get("GROUP_RANK", "0"))
    sampler: data.DistributedSampler[Any] = data.DistributedSampler(
        TENSORS, num_replicas=world_size, rank=rank, seed=seed
    )
    return data.DataLoader(TENSORS, batch_size=2, sampler=sampler)
