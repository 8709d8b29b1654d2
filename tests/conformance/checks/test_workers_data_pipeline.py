"""Regression tests: what a DataLoader does with its dataset, beyond the samples one by one.

A sample overwritten by the next fetch (one buffer for every index), a handle opened in ``__init__`` and
shared by forked workers, a loader whose persistent workers miss ``set_epoch``, a loader over a stream
that every worker yields whole, and a collate_fn that drops rows under a sampler of indices: each passed
every clause of its target, and each correct counterpart passes.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils import data as tud

from torchcontract.conformance import check
from torchcontract.protocols import Loader, MapDataset

from ...workers import fixtures
from ..reports import status

pytestmark = pytest.mark.clause(
    "loader.samples_survive_later_fetches",
    "loader.set_epoch_reaches_persistent_workers",
    "loader.workers_yield_each_item_once",
    "map_dataset.fork_workers_yield_same_samples",
    "map_dataset.samples_survive_later_fetches",
    "loader.batches_cover_dataset",
)

# -- one buffer for every index --------


class DecodedIntoOneArray:
    """Decodes each record into one preallocated array and returns it (``ds[0] is ds[1]``)."""

    def __init__(self, n: int = 8) -> None:
        self.records = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
        self._buf = np.empty(4, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> np.ndarray[Any, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        np.copyto(self._buf, self.records[index])
        return self._buf


class Duplicates:
    """Every sample is equal (a dataset of repeated records), each a new array."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> np.ndarray[Any, Any]:
        if not -6 <= index < 6:
            raise IndexError(index)
        return np.ones(3, dtype=np.float32)


class CachedSamples:
    """Returns the same object for the same index (a cache), a new one per index."""

    def __init__(self) -> None:
        self.cache: dict[int, tuple[float, ...]] = {}

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> tuple[float, ...]:
        if not 0 <= index < 6:
            raise IndexError(index)
        return self.cache.setdefault(index, (float(index), float(index) ** 2))


def test_one_buffer_for_every_index_fails_the_dataset_and_the_loader() -> None:
    # Before: a recommended note on the dataset, worded as a view of its storage; the loader passed.
    status_, message = status(
        check(DecodedIntoOneArray(), MapDataset), "map_dataset.samples_survive_later_fetches"
    )
    assert status_ == "failed"
    assert "ds[0] changed after ds[1] was fetched" in message
    assert "a batch of indices [0, 1] would hold sample 1 twice" in message
    report = check(tud.DataLoader(DecodedIntoOneArray(), batch_size=4), Loader)
    status_, message = status(report, "loader.samples_survive_later_fetches")
    assert status_ == "failed", report
    assert "loader.dataset[0] changed after loader.dataset[1]" in message
    assert not report.passed


@pytest.mark.parametrize("dataset", [Duplicates, CachedSamples], ids=["duplicates", "cached"])
def test_equal_or_cached_samples_pass(dataset: Any) -> None:
    report = check(dataset(), MapDataset)
    assert status(report, "map_dataset.samples_survive_later_fetches")[0] == "passed", report
    report = check(tud.DataLoader(dataset(), batch_size=3), Loader)
    assert status(report, "loader.samples_survive_later_fetches")[0] == "passed", report


# -- a handle opened in __init__, shared by forked workers --------


class LazyRecordFile(tud.Dataset[int]):
    """The records of :func:`fixtures.record_file`, read through a handle each process opens for itself."""

    def __init__(self, path: str, length: int = 16) -> None:
        self.path, self.length = path, length
        self._reader: fixtures.RecordReader | None = None
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "length": self.length, "_reader": None, "_pid": -1}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < self.length:
            raise IndexError(index)
        if self._reader is None or self._pid != os.getpid():
            self._reader, self._pid = fixtures.RecordReader(self.path), os.getpid()
        return int.from_bytes(self._reader.record(index), "little")


def test_a_file_opened_in_init_fails_through_forked_workers_and_names_it() -> None:
    # Before: every clause passed (the spawn clause reopens the file by path, pickle_round_trip too).
    dataset = fixtures.record_file()
    status_, message = status(check(dataset, MapDataset), "map_dataset.fork_workers_yield_same_samples")
    assert status_ == "failed"
    assert "ds.reader (RecordReader)" in message
    assert "os.getpid()" in message
    assert not multiprocessing.active_children()


def test_a_file_opened_in_each_process_passes(tmp_path: Path) -> None:
    path = tmp_path / "records"
    path.write_bytes(b"".join((i * i).to_bytes(fixtures.RECORD, "little") for i in range(16)))
    report = check(LazyRecordFile(str(path)), MapDataset)
    assert status(report, "map_dataset.fork_workers_yield_same_samples")[0] == "passed", report
    assert report.passed, report
    assert not multiprocessing.active_children()


# -- persistent workers that miss set_epoch --------


def test_persistent_workers_over_an_epoch_in_an_attribute_fail() -> None:
    # Before: every Loader clause passed.
    dataset = fixtures.EpochInAttribute()
    loader = tud.DataLoader(dataset, batch_size=2, num_workers=2, persistent_workers=True)
    report = check(loader, Loader)
    status_, message = status(report, "loader.set_epoch_reaches_persistent_workers")
    assert status_ == "failed", report
    assert "the loader has persistent_workers=True" in message
    assert "after loader.dataset.set_epoch(1)" in message
    assert "multiprocessing.Value" in message
    assert dataset.epoch == 0  # put back
    assert not multiprocessing.active_children()


def test_persistent_workers_over_an_epoch_in_shared_memory_pass() -> None:
    dataset = fixtures.EpochInSharedMemory()
    report = check(tud.DataLoader(dataset, batch_size=2, num_workers=2, persistent_workers=True), Loader)
    assert status(report, "loader.set_epoch_reaches_persistent_workers")[0] == "passed", report
    assert report.passed, report
    assert int(dataset.epoch) == 0


def test_a_sampler_with_set_epoch_is_consulted_in_the_main_process() -> None:
    sampler = tud.DistributedSampler(range(10), num_replicas=1, rank=0, shuffle=True, seed=0)
    loader = tud.DataLoader(
        list(range(10)), batch_size=2, sampler=sampler, num_workers=1, persistent_workers=True
    )
    status_, message = status(check(loader, Loader), "loader.set_epoch_reaches_persistent_workers")
    assert status_ == "skipped"
    assert "loader.sampler.set_epoch runs in this process" in message


def test_persistent_workers_over_a_stream_with_an_epoch_in_an_attribute_fail() -> None:
    loader = tud.DataLoader(
        fixtures.StreamEpochInAttribute(), batch_size=2, num_workers=2, persistent_workers=True
    )
    status_, message = status(check(loader, Loader), "loader.set_epoch_reaches_persistent_workers")
    assert status_ == "failed"
    assert "yielded the items of epoch 0 again" in message


# -- a loader over an unsharded stream --------


class UnsizedShardedRange(tud.IterableDataset[int]):
    """Shards by worker, without __len__."""

    def __iter__(self) -> Iterator[int]:
        info = tud.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return iter(range(worker, 12, workers))


def test_a_loader_over_an_unsharded_stream_fails() -> None:
    # Before: every Loader clause passed (the stream is unsized: nothing counted its samples).
    report = check(tud.DataLoader(fixtures.UnsizedNaiveRange(), batch_size=4, num_workers=2), Loader)
    status_, message = status(report, "loader.workers_yield_each_item_once")
    assert status_ == "failed", report
    assert "held 24 samples (2 times as many)" in message
    assert "shard it in __iter__ with torch.utils.data.get_worker_info()" in message


@pytest.mark.parametrize("batch_size", [4, None], ids=["batched", "unbatched"])
@pytest.mark.parametrize("drop_last", [False, True], ids=["keep_last", "drop_last"])
def test_a_loader_over_a_sharded_stream_passes(batch_size: int | None, drop_last: bool) -> None:
    if batch_size is None and drop_last:
        pytest.skip("drop_last needs batching")
    loader = tud.DataLoader(UnsizedShardedRange(), batch_size=batch_size, num_workers=2, drop_last=drop_last)
    report = check(loader, Loader)
    assert status(report, "loader.workers_yield_each_item_once")[0] == "passed", report


# -- rows a collate_fn drops under a sampler of indices --------


def _pairs(n: int = 10) -> tud.TensorDataset:
    return tud.TensorDataset(torch.arange(n * 3, dtype=torch.float32).reshape(n, 3), torch.arange(n))


def drops_duplicate_rows(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Stacks, then keeps the rows after the first (a 'skip the header row' left in a collate_fn)."""
    features, labels = tud.default_collate(samples)
    return [features[1:], labels[1:]]


def time_major(samples: list[torch.Tensor]) -> torch.Tensor:
    return pad_sequence(samples)


class SameLengthTokens:
    """Sequences of 4 tokens (as many as the batch size): a time-major batch is (4, 4), as a stack."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -10 <= index < 10:
            raise IndexError(index)
        return torch.arange(4) + 10 * (index % 10)


def test_a_collate_fn_that_drops_rows_fails_under_a_sampler() -> None:
    # Before: passed (counted by the sampler's indices, which a collate_fn does not change).
    report = check(tud.DataLoader(_pairs(), batch_size=4, collate_fn=drops_duplicate_rows), Loader)
    status_, message = status(report, "loader.batches_cover_dataset")
    assert status_ == "failed", report
    assert "batch 0 of 3 holds 3 rows" in message
    assert "gave it 4 indices ([0, 1, 2, 3])" in message


def test_time_major_padding_of_equal_lengths_still_passes() -> None:
    report = check(tud.DataLoader(SameLengthTokens(), batch_size=4, collate_fn=time_major), Loader)
    assert status(report, "loader.batches_cover_dataset")[0] == "passed", report


def test_a_packing_collate_fn_declared_passes() -> None:
    loader = tud.DataLoader(_pairs(), batch_size=4, collate_fn=drops_duplicate_rows)
    report = check(loader, Loader, transforms_samples=True)
    assert status(report, "loader.batches_cover_dataset")[0] == "passed", report


# -- torchvision --------


def test_torchvision_fake_data_through_workers_passes() -> None:
    torchvision = pytest.importorskip("torchvision")
    from torchvision.transforms import ToTensor

    dataset = torchvision.datasets.FakeData(size=12, image_size=(3, 8, 8), transform=ToTensor())
    report = check(dataset, MapDataset)
    for check_id in (
        "map_dataset.samples_survive_later_fetches",
        "map_dataset.fork_workers_yield_same_samples",
    ):
        assert status(report, check_id)[0] == "passed", report
    loader = tud.DataLoader(dataset, batch_size=4, num_workers=2, persistent_workers=True)
    report = check(loader, Loader)
    assert report.passed, report
    assert not multiprocessing.active_children()
