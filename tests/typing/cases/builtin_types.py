"""Builtins (and NumPy arrays) that fit the data protocols, and some that do not."""

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import assert_type

from torchcontract.protocols import CallableModule, CollateFn, IterableDataset, Loader, MapDataset, Sampler

ints = [0, 1, 2]
int_tuple = (0, 1, 2)
array: npt.NDArray[np.float32] = np.zeros((3, 2), dtype=np.float32)
int_set = {0, 1, 2}
by_name = {"a": 0, "b": 1}
frozen = frozenset(ints)

# --- MapDataset: accepted ------------------------------------------------------------------------------
ok_list: MapDataset[int] = ints
ok_tuple: MapDataset[int] = int_tuple
ok_range: MapDataset[int] = range(3)
ok_str: MapDataset[str] = "abc"  # a str of length n is n one-character samples
ok_bytes: MapDataset[int] = b"abc"
ok_ndarray: MapDataset[Any] = array  # rows; NumPy's __getitem__ returns Any

# --- MapDataset: rejected ------------------------------------------------------------------------------
bad_list_of_int_as_str: MapDataset[str] = ints  # type: ignore[assignment]
bad_str_as_int: MapDataset[int] = "abc"  # type: ignore[assignment]
bad_range_as_str: MapDataset[str] = range(3)  # type: ignore[assignment]
bad_set: MapDataset[int] = int_set  # type: ignore[assignment]
bad_frozenset: MapDataset[int] = frozen  # type: ignore[assignment]
bad_dict_keyed_by_str: MapDataset[int] = by_name  # type: ignore[assignment]
bad_int: MapDataset[int] = 3  # type: ignore[assignment]

# --- IterableDataset, Sampler, Loader: accepted ---------------------------------------------------------
ok_list_as_iterable: IterableDataset[int] = ints
ok_set_as_iterable: IterableDataset[int] = int_set
ok_range_as_sampler: Sampler[int] = range(3)
ok_list_as_sampler: Sampler[int] = ints
ok_list_of_lists_as_batch_sampler: Sampler[list[int]] = [[0, 1], [2]]
ok_list_of_batches_as_loader: Loader[tuple[int, ...]] = [(0, 1), (2,)]

# --- IterableDataset, Sampler, Loader: rejected ---------------------------------------------------------
bad_int_as_iterable: IterableDataset[int] = 3  # type: ignore[assignment]
bad_str_as_index_sampler: Sampler[int] = "012"  # type: ignore[assignment]
bad_list_of_ints_as_batch_sampler: Sampler[list[int]] = ints  # type: ignore[assignment]
bad_list_of_int_as_loader_of_lists: Loader[list[int]] = ints  # type: ignore[assignment]

# --- CallableModule and CollateFn ------------------------------------------------------------------------
bad_builtin_function_as_module: CallableModule = len  # type: ignore[assignment]
ok_sorted_as_collate_fn: CollateFn[int, list[int]] = sorted
bad_len_as_collate_fn_to_list: CollateFn[int, list[int]] = len  # type: ignore[assignment]
bad_none_as_collate_fn: CollateFn[int, int] = None  # type: ignore[assignment]


def _generators() -> None:
    def numbers() -> Iterator[int]:
        yield 0

    # A generator object passes (it has __iter__) although it can be iterated once only: the protocol
    # cannot say "a fresh iterator each time". SPEC.md's IterableDataset clauses check that at run time.
    once: IterableDataset[int] = numbers()
    assert_type(iter(once), Iterator[int])
    wrong: IterableDataset[str] = numbers()  # type: ignore[assignment]
