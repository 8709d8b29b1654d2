"""IterableDataset[T_co] and Loader[B_co]: ``__iter__() -> Iterator[...]``, ``__len__`` optional."""

from collections.abc import Iterator

from typing_extensions import assert_type

from torchcontract.protocols import IterableDataset, Loader

from ._classes import (
    IteratorWithoutIter,
    IterReturnsList,
    LenOnly,
    MapDatasetWithoutLen,
    PlainBatchSampler,
    PlainIterable,
    PlainLoader,
    PlainMapDataset,
    StrIterable,
)

# --- IterableDataset: accepted ---------------------------------------------------------------------------
ok_plain_iterable: IterableDataset[int] = PlainIterable()
ok_plain_iterable_as_object: IterableDataset[object] = PlainIterable()
ok_str_iterable: IterableDataset[str] = StrIterable()

# --- IterableDataset: rejected ---------------------------------------------------------------------------
bad_iterable_without_iter: IterableDataset[int] = LenOnly()  # type: ignore[assignment]
bad_iterator_without_iter: IterableDataset[int] = IteratorWithoutIter()  # type: ignore[assignment]
bad_iter_returns_list: IterableDataset[int] = IterReturnsList()  # type: ignore[assignment]
bad_int_stream_as_str: IterableDataset[str] = PlainIterable()  # type: ignore[assignment]
bad_str_stream_as_int: IterableDataset[int] = StrIterable()  # type: ignore[assignment]
# A map-style dataset without __iter__ is iterable at run time (legacy __getitem__ iteration), but not
# for mypy, and DataLoader would treat it as map-style anyway:
bad_map_dataset_as_iterable: IterableDataset[int] = PlainMapDataset()  # type: ignore[assignment]

# --- Loader: accepted ------------------------------------------------------------------------------------
ok_plain_loader: Loader[list[int]] = PlainLoader()
ok_batch_sampler_shaped_loader: Loader[list[int]] = PlainBatchSampler()  # any re-iterable of batches
ok_plain_loader_as_sequence_of_object: Loader[object] = PlainLoader()

# --- Loader: rejected ------------------------------------------------------------------------------------
bad_loader_without_iter: Loader[list[int]] = LenOnly()  # type: ignore[assignment]
bad_loader_getitem_only: Loader[int] = MapDatasetWithoutLen()  # type: ignore[assignment]
bad_loader_wrong_batch_type: Loader[dict[str, int]] = PlainLoader()  # type: ignore[assignment]
bad_loader_of_samples_as_batches: Loader[list[int]] = PlainIterable()  # type: ignore[assignment]
bad_loader_iter_returns_list: Loader[int] = IterReturnsList()  # type: ignore[assignment]


# --- using the protocols in annotations ------------------------------------------------------------------
def stream_total(dataset: IterableDataset[int]) -> int:
    it = iter(dataset)
    assert_type(it, Iterator[int])
    len(dataset)  # type: ignore[arg-type]  # __len__ is optional, not a member
    return sum(dataset)


def train_epoch(loader: Loader[list[int]]) -> int:
    seen = 0
    for batch in loader:
        assert_type(batch, list[int])
        seen += len(batch)
    batch.upper()  # type: ignore[attr-defined]
    len(loader)  # type: ignore[arg-type]  # __len__ is optional, not a member
    return seen


def _callers() -> None:
    stream_total(PlainIterable())
    stream_total(StrIterable())  # type: ignore[arg-type]
    train_epoch(PlainLoader())
    train_epoch(PlainIterable())  # type: ignore[arg-type]
