"""The conformance suite on objects from other libraries, as their authors would run it."""

from __future__ import annotations

import functools
import importlib.util
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")

from torch.utils import data  # noqa: E402
from torchvision import datasets as tv_datasets  # noqa: E402
from torchvision import models as tv_models  # noqa: E402
from torchvision import transforms  # noqa: E402

from torchcontract.conformance import Target, parametrize_with_checks  # noqa: E402
from torchcontract.protocols import IterableDataset, Loader, MapDataset, Module  # noqa: E402

HERE = Path(__file__).resolve().parent

# The module clauses in depth (issue 15): torch.compile and torch.export of each model (about 1 s to
# 11 s each on 2 CPU cores for these sizes), and the per-dtype clauses in float32 and float64.
DEPTH: dict[str, Any] = {"compile": True, "export": True, "dtypes": (torch.float32, torch.float64)}


def _installed(name: str) -> bool:
    """A missing optional library contributes no targets (pytest.importorskip here, at collection,
    would skip the whole module: torchvision's targets with it)."""
    return importlib.util.find_spec(name) is not None


def _image_folder(root: Path) -> Path:
    """A small ImageFolder tree of generated PNGs: 3 classes x 4 images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, index in itertools.product(("cat", "dog", "fox"), range(4)):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def _torchvision_targets(root: Path) -> list[Target]:
    to_tensor = transforms.ToTensor()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return [
        Target(
            tv_datasets.FakeData(size=40, image_size=(3, 8, 8), num_classes=5, transform=to_tensor),
            MapDataset,
            name="torchvision.FakeData",
            expected_failures={
                "map_dataset.negative_index_mirrors_python": (
                    "FakeData.__getitem__ rejects index >= len but not negative indices, and seeds each "
                    "image with index + random_offset: ds[-1] is a new random image, not ds[len(ds) - 1]"
                )
            },
        ),
        Target(
            tv_datasets.ImageFolder(str(_image_folder(root / "images")), transform=to_tensor),
            MapDataset,
            name="torchvision.ImageFolder",
        ),
        Target(
            data.DataLoader(
                tv_datasets.FakeData(size=40, image_size=(3, 8, 8), transform=to_tensor), batch_size=16
            ),
            Loader,
            name="DataLoader(torchvision.FakeData)",
        ),
        Target(
            tv_models.resnet18(num_classes=10),
            Module,
            name="torchvision.resnet18",
            example_inputs=(images,),
            factory=functools.partial(tv_models.resnet18, num_classes=10),
            **DEPTH,
        ),
        Target(
            tv_models.mobilenet_v3_small(num_classes=10),
            Module,
            name="torchvision.mobilenet_v3_small",
            example_inputs=(images,),
            factory=functools.partial(tv_models.mobilenet_v3_small, num_classes=10),
            **DEPTH,
        ),
    ]


def _huggingface_targets() -> list[Target]:
    if not _installed("datasets"):
        return []
    import datasets as hf

    columns = {"features": np.arange(40, dtype=np.float32).reshape(20, 2).tolist(), "label": list(range(20))}
    table = hf.Dataset.from_dict(columns).with_format("torch")
    return [
        Target(table, MapDataset, name="datasets.Dataset(torch format)"),
        Target(table.to_iterable_dataset(num_shards=4), IterableDataset, name="datasets.IterableDataset"),
        Target(
            table.to_iterable_dataset(num_shards=4).shuffle(seed=0, buffer_size=5),
            IterableDataset,
            name="datasets.IterableDataset.shuffle",
            expected_failures={
                "iterable_dataset.spawn_workers_yield_same_items": (
                    "a seeded shuffle gives one order when iterated in the main process and another in "
                    "a DataLoader worker, for the same seed and epoch (main: 5, 11, 15, 16, ...; one "
                    "worker: 15, 5, 10, 1, ...): what a notebook shows is not what training reads"
                )
            },
        ),
        Target(
            table.to_iterable_dataset(num_shards=4).shuffle(seed=0, buffer_size=5),
            IterableDataset,
            name="datasets.IterableDataset.shuffle(random)",
            deterministic=False,
        ),
        Target(data.DataLoader(table, batch_size=8), Loader, name="DataLoader(datasets.Dataset)"),
    ]


def _torchdata_targets() -> list[Target]:
    if not _installed("torchdata"):
        return []
    from torchdata import nodes
    from torchdata.stateful_dataloader import StatefulDataLoader

    node = nodes.Batcher(nodes.IterableWrapper(range(10)), batch_size=4, drop_last=False)
    return [
        Target(StatefulDataLoader(TENSORS, batch_size=4), Loader, name="torchdata.StatefulDataLoader"),
        Target(
            stateful_loader_of_rank(0, 1),
            Loader,
            name="torchdata.StatefulDataLoader(DistributedSampler)",
            shards=stateful_loader_of_rank,
            world_size=2,
        ),
        Target(nodes.Loader(node), Loader, name="torchdata.nodes.Loader"),
    ]


TENSORS = data.TensorDataset(torch.arange(30.0).reshape(15, 2))


def stateful_loader_of_rank(rank: int, world_size: int) -> Any:
    """One rank's loader: module level, so that each rank's process can unpickle it."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    sampler = data.DistributedSampler(TENSORS, num_replicas=world_size, rank=rank, seed=2)
    return StatefulDataLoader(TENSORS, batch_size=4, sampler=sampler)


def resnet10t() -> Any:
    import timm

    return timm.create_model("resnet10t", pretrained=False, num_classes=5)


def vit_tiny() -> Any:
    import timm

    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=32, patch_size=8
    )


def _timm_targets() -> list[Target]:
    if not _installed("timm"):
        return []

    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return [
        Target(
            resnet10t(),
            Module,
            name="timm.resnet10t",
            example_inputs=(images,),
            factory=resnet10t,
            **DEPTH,
        ),
        Target(
            vit_tiny(),
            Module,
            name="timm.vit_tiny",
            example_inputs=(images,),
            factory=vit_tiny,
            **DEPTH,
        ),
    ]


def _targets() -> list[Target]:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="torchcontract-thirdparty-"))
    return [*_torchvision_targets(root), *_huggingface_targets(), *_torchdata_targets(), *_timm_targets()]


@parametrize_with_checks(_targets())
def test_third_party_conformance(target: Target, check: Any) -> None:
    check(target)
