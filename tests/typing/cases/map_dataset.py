"""MapDataset[T_co]: ``__len__() -> int`` and ``__getitem__(int) -> T_co``."""

from collections.abc import Sequence

from typing_extensions import assert_type

from torchcontract.protocols import MapDataset

from ._classes import (
    BatchedMapDataset,
    GetitemTakesStr,
    GetitemTakesTwoIndices,
    LenOnly,
    LenReturnsFloat,
    MapDatasetWithoutGetitem,
    MapDatasetWithoutLen,
    PlainIterable,
    PlainMapDataset,
    SequenceDataset,
    StrMapDataset,
)

# --- accepted ------------------------------------------------------------------------------------------
ok_plain: MapDataset[int] = PlainMapDataset()
ok_plain_as_object: MapDataset[object] = PlainMapDataset()  # T_co is covariant
ok_str_samples: MapDataset[str] = StrMapDataset()
ok_with_getitems: MapDataset[int] = BatchedMapDataset()  # the optional __getitems__ changes nothing
ok_sequence_subclass: MapDataset[int] = SequenceDataset()

# --- rejected: a member missing ----------------------------------------------------------------------
bad_without_len: MapDataset[int] = MapDatasetWithoutLen()  # type: ignore[assignment]
bad_without_getitem: MapDataset[int] = MapDatasetWithoutGetitem()  # type: ignore[assignment]
bad_len_only: MapDataset[int] = LenOnly()  # type: ignore[assignment]
bad_iterable_only: MapDataset[int] = PlainIterable()  # type: ignore[assignment]

# --- rejected: a member of the wrong type --------------------------------------------------------------
bad_getitem_takes_str: MapDataset[int] = GetitemTakesStr()  # type: ignore[assignment]
bad_getitem_takes_two_indices: MapDataset[int] = GetitemTakesTwoIndices()  # type: ignore[assignment]
bad_len_returns_float: MapDataset[int] = LenReturnsFloat()  # type: ignore[assignment]

# --- rejected: the wrong sample type -------------------------------------------------------------------
bad_int_samples_as_str: MapDataset[str] = PlainMapDataset()  # type: ignore[assignment]
bad_str_samples_as_int: MapDataset[int] = StrMapDataset()  # type: ignore[assignment]


# Values typed as the protocol come from functions: pyright narrows a variable's declared type to the type
# of the value assigned (`ok_plain_as_object` is a PlainMapDataset to it).
def int_dataset() -> MapDataset[int]:
    return PlainMapDataset()


def object_dataset() -> MapDataset[object]:
    return PlainMapDataset()


bad_map_dataset_of_int_as_str: MapDataset[str] = int_dataset()  # type: ignore[assignment]
bad_object_samples_as_int: MapDataset[int] = object_dataset()  # type: ignore[assignment]


# --- using the protocol in annotations -----------------------------------------------------------------
def first_and_last(dataset: MapDataset[str]) -> tuple[str, str]:
    n = len(dataset)
    assert_type(n, int)
    assert_type(dataset[0], str)
    dataset["key"]  # type: ignore[index]
    dataset[0:2]  # type: ignore[index]  # slicing is not part of the protocol
    dataset[0] + 1  # type: ignore[operator]
    # Python iterates it through __getitem__ until IndexError, but the protocol has no __iter__:
    for _ in dataset:  # type: ignore[attr-defined]  # mypy only: pyright, as Python, falls back to __getitem__
        pass
    for i in range(n):
        assert_type(dataset[i], str)
    return dataset[0], dataset[n - 1]


def _callers(ints: MapDataset[int]) -> None:
    first_and_last(StrMapDataset())
    first_and_last(ints)  # type: ignore[arg-type]
    first_and_last(PlainMapDataset())  # type: ignore[arg-type]
    first_and_last(MapDatasetWithoutLen())  # type: ignore[arg-type]


def as_sequence(dataset: MapDataset[int]) -> Sequence[int]:
    return dataset  # type: ignore[return-value]  # a MapDataset is not a Sequence (no __contains__, ...)
