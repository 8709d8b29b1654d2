"""Protocols for data: datasets, samplers, loaders and collate functions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, TypeVar, runtime_checkable

__all__ = ["CollateFn", "IterableDataset", "Loader", "MapDataset", "Sampler"]

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)
_B_co = TypeVar("_B_co", covariant=True)


@runtime_checkable
class MapDataset(Protocol[_T_co]):
    """A map-style dataset of ``len(ds)`` samples, ``ds[0]`` to ``ds[len(ds) - 1]`` (SPEC.md, "MapDataset").

    ``ds[len(ds)]`` raises ``IndexError``, so that Python's legacy iteration protocol ends; the same
    index gives an equal sample; every sample has the same structure; the dataset pickles (worker
    processes started with ``spawn`` receive it pickled). A dataset may add
    ``__getitems__(indices: list[int], /) -> list[_T_co]``, which ``torch.utils.data.DataLoader`` then
    calls with a whole batch of indices; its result must equal ``[ds[i] for i in indices]``.

    ``torch.utils.data.Dataset`` itself has no ``__len__`` and is therefore not a ``MapDataset``.
    At run time ``isinstance`` only checks that the two methods exist: a ``str`` or a ``dict`` passes.

    >>> def first(ds: MapDataset[float]) -> float:
    ...     return ds[0]
    >>> first([0.5, 1.5]), isinstance([0.5, 1.5], MapDataset)
    (0.5, True)
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> _T_co: ...


@runtime_checkable
class IterableDataset(Protocol[_T_co]):
    """An iterable-style dataset: a stream of samples (SPEC.md, "IterableDataset").

    Each ``iter(ds)`` returns a fresh iterator that starts a new pass; a finite pass ends, and keeps
    ending (``StopIteration`` is sticky); if the dataset defines ``__len__`` it equals the number of
    samples in a pass. In ``DataLoader`` worker processes each worker must yield its own shard
    (``torch.utils.data.get_worker_info()``), or every sample is loaded once per worker.

    >>> def total(stream: IterableDataset[int]) -> int:
    ...     return sum(stream)
    >>> total(range(4)), isinstance(range(4), IterableDataset)
    (6, True)
    """

    def __iter__(self) -> Iterator[_T_co]: ...


@runtime_checkable
class Sampler(Protocol[_T_co]):
    """An iterable of dataset indices, or of lists of indices for a batch sampler (SPEC.md, "Sampler").

    Indices lie in ``range(len(data_source))``; a sampler without replacement yields each index once
    per pass; the same seed or generator state gives the same order. ``__len__`` is optional (it is
    not a member of this protocol) but ``len(DataLoader)`` needs it, and where present it equals the
    number of items yielded.

    >>> def batches(sampler: Sampler[list[int]]) -> list[list[int]]:
    ...     return list(sampler)
    >>> batches([[0, 1], [2, 3]]), isinstance(range(4), Sampler)
    ([[0, 1], [2, 3]], True)
    """

    def __iter__(self) -> Iterator[_T_co]: ...


@runtime_checkable
class Loader(Protocol[_B_co]):
    """An iterable of batches that can be iterated once per epoch (SPEC.md, "Loader").

    Each ``iter(loader)`` returns a fresh iterator over a whole new epoch, also after the previous one
    was abandoned half-way; exhaustion is sticky; ``__len__`` is optional (not a member of this
    protocol) and, where present, equals the number of batches in an epoch.

    >>> def count(loader: Loader[list[int]]) -> int:
    ...     return sum(1 for _ in loader)
    >>> count([[0, 1], [2, 3]]), isinstance([[0, 1], [2, 3]], Loader)
    (2, True)
    """

    def __iter__(self) -> Iterator[_B_co]: ...


class CollateFn(Protocol[_T, _B_co]):
    """Turns a list of samples into a batch (SPEC.md, "CollateFn").

    The batch holds ``len(samples)`` samples along its leading dimension, and its structure (dict
    keys, tuple arity) mirrors the samples'. ``_T`` is invariant because ``list`` is.

    Not ``runtime_checkable``: at run time the only member, ``__call__``, exists on every callable, so
    ``isinstance`` could only repeat ``callable()``.

    >>> def stack(samples: list[int]) -> list[int]:
    ...     return list(samples)
    >>> collate: CollateFn[int, list[int]] = stack
    >>> collate([1, 2])
    [1, 2]
    """

    def __call__(self, samples: list[_T], /) -> _B_co: ...
