"""Sampler[T_co]: ``__iter__() -> Iterator[T_co]`` of indices (``int``) or, for a batch sampler, of lists."""

from typing_extensions import assert_type

from torchcontract.protocols import Sampler

from ._classes import (
    IteratorWithoutIter,
    IterReturnsList,
    LenOnly,
    PlainBatchSampler,
    PlainIterable,
    PlainSampler,
    StrIterable,
)

# --- accepted --------------------------------------------------------------------------------------------
ok_plain_sampler: Sampler[int] = PlainSampler(3)
ok_iterable_of_ints: Sampler[int] = PlainIterable()
ok_plain_batch_sampler: Sampler[list[int]] = PlainBatchSampler()

# --- rejected --------------------------------------------------------------------------------------------
bad_sampler_without_iter: Sampler[int] = LenOnly()  # type: ignore[assignment]
bad_iterator_without_iter: Sampler[int] = IteratorWithoutIter()  # type: ignore[assignment]
bad_iter_returns_list: Sampler[int] = IterReturnsList()  # type: ignore[assignment]
bad_str_indices: Sampler[int] = StrIterable()  # type: ignore[assignment]
bad_batch_sampler_as_index_sampler: Sampler[int] = PlainBatchSampler()  # type: ignore[assignment]
bad_index_sampler_as_batch_sampler: Sampler[list[int]] = PlainSampler(3)  # type: ignore[assignment]


# --- using the protocol in annotations -------------------------------------------------------------------
def batches(sampler: Sampler[int], batch_size: int) -> list[list[int]]:
    out: list[list[int]] = [[]]
    for index in sampler:
        assert_type(index, int)
        out[-1].append(index)
        if len(out[-1]) == batch_size:
            out.append([])
    len(sampler)  # type: ignore[arg-type]  # __len__ is optional, not a member
    return out


def _callers() -> None:
    batches(PlainSampler(4), 2)
    batches(PlainBatchSampler(), 2)  # type: ignore[arg-type]
