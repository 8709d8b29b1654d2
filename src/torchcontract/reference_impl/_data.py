"""Loading data: samplers, ``default_collate``, ``DataLoader`` and ``StreamDataset``.

The hot path of a shuffled epoch creates no per-sample Python objects: the samplers produce the
epoch's order as one NumPy array, ``DataLoader`` hands slices of it to the dataset's
``__getitems__``, and a dataset that answers with a :class:`SampleBatch` has its columns returned
by :func:`default_collate` as they are.
"""

from __future__ import annotations

import copy
import itertools
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from typing import Any, Generic, Protocol, SupportsIndex, TypeVar, overload, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from typing_extensions import override

from torchcontract._kinds import is_iterable_style
from torchcontract.protocols import MapDataset
from torchcontract.reference_impl._arguments import boolean, positive_int, sampler_length

__all__ = [
    "BatchSampler",
    "DataLoader",
    "RandomSampler",
    "SampleBatch",
    "SequentialSampler",
    "StreamDataset",
    "default_collate",
    "is_iterable_style",
]

T = TypeVar("T")
Indices = NDArray[np.int64]


class SampleBatch(Sequence[tuple[Any, ...]]):
    """A batch of samples stored as columns: element ``i`` is ``(column[i] for each column)``.

    What a vectorised ``__getitems__`` returns: a sequence of samples, as ``torch.utils.data``
    expects (so ``torch``'s ``default_collate`` works on it), that also carries the stacked
    ``columns``, which :func:`default_collate` returns without re-stacking. Elements are made on
    access: a 1-D column gives Python scalars (``int(labels[i])``), a column of higher rank gives
    writable copies (``images[i].copy()``), so ``batch[i]`` equals ``dataset[indices[i]]``.
    """

    __slots__ = ("columns",)

    def __init__(self, *columns: NDArray[Any]) -> None:
        if not columns or any(len(column) != len(columns[0]) for column in columns):
            raise ValueError(f"SampleBatch needs columns of one length, got {[len(c) for c in columns]}")
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0])

    @overload
    def __getitem__(self, index: SupportsIndex) -> tuple[Any, ...]: ...

    @overload
    def __getitem__(self, index: slice) -> SampleBatch: ...

    def __getitem__(self, index: SupportsIndex | slice) -> tuple[Any, ...] | SampleBatch:
        if isinstance(index, slice):
            return SampleBatch(*(column[index] for column in self.columns))
        position = operator.index(index)
        if not -len(self) <= position < len(self):
            raise IndexError(f"index {position} is out of range for a batch of {len(self)}")
        return tuple(
            column[position].item() if column.ndim == 1 else column[position].copy()
            for column in self.columns
        )

    def __repr__(self) -> str:
        shapes = ", ".join(f"{column.dtype}{list(column.shape)}" for column in self.columns)
        return f"SampleBatch({shapes})"


# -- collate ----------------------------------------------------------------------------------------


def default_collate(samples: Sequence[Any]) -> Any:
    """Turn a list of samples into a batch, mirroring the structure of the samples.

    - a :class:`SampleBatch` gives its ``columns`` (a tuple of arrays), as they are;
    - ndarrays are stacked along a new first axis (same shape and dtype required);
    - Python ``int`` gives an int64 array, ``float`` float64, ``bool`` bool; NumPy scalars an
      array of their dtype;
    - ``str`` and ``bytes`` give a list of them;
    - mappings recurse per key (same keys required) and keep their type where it can be
      rebuilt from a dict; namedtuples and tuples recurse per field and keep their type (torch
      turns plain tuples into lists); lists recurse and stay lists.

    Other types raise ``TypeError`` naming the type and where in the sample it sits; samples whose
    structure or array shapes differ raise ``ValueError`` naming what differs.
    """
    if isinstance(samples, SampleBatch):
        return samples.columns
    if len(samples) == 0:
        raise ValueError("default_collate needs at least one sample")
    return _collate(samples, "sample")


def _collate(samples: Sequence[Any], where: str) -> Any:
    first = samples[0]
    kind = type(first)
    for i, sample in enumerate(samples):
        # bool is an int and a namedtuple a tuple: the types must match exactly, not by isinstance.
        if type(sample) is not kind:
            raise TypeError(
                f"default_collate: {where} is {kind.__name__} in sample 0, "
                f"{type(sample).__name__} in sample {i}"
            )
    if isinstance(first, np.ndarray):
        for i, sample in enumerate(samples):
            if sample.shape != first.shape or sample.dtype != first.dtype:
                raise ValueError(
                    f"default_collate: {where} is {first.dtype}{list(first.shape)} in sample 0, "
                    f"{sample.dtype}{list(sample.shape)} in sample {i}"
                )
        return np.stack(samples)
    if kind in _SCALAR_DTYPES:
        return np.array(samples, dtype=_SCALAR_DTYPES[kind])
    if isinstance(first, np.generic):
        return np.array(samples, dtype=first.dtype)
    if isinstance(first, (str, bytes)):
        return list(samples)
    if isinstance(first, Mapping):
        keys = list(first)
        for i, sample in enumerate(samples):
            if sample.keys() != first.keys():
                raise ValueError(
                    f"default_collate: {where} has keys {keys} in sample 0, {list(sample)} in sample {i}"
                )
        collated = {key: _collate([s[key] for s in samples], f"{where}[{key!r}]") for key in keys}
        try:
            return kind(collated)
        except TypeError:  # a mapping type that cannot be built from a dict (e.g. defaultdict)
            return collated
    if isinstance(first, (tuple, list)):
        for i, sample in enumerate(samples):
            if len(sample) != len(first):
                raise ValueError(
                    f"default_collate: {where} has length {len(first)} in sample 0, "
                    f"{len(sample)} in sample {i}"
                )
        fields = [_collate(column, f"{where}[{j}]") for j, column in enumerate(zip(*samples, strict=True))]
        if hasattr(first, "_fields"):  # namedtuple
            return kind(*fields)
        return kind(fields)
    raise TypeError(f"default_collate: cannot collate {where} of type {kind.__name__}")


_SCALAR_DTYPES: dict[type, type] = {bool: np.bool_, int: np.int64, float: np.float64}


# -- samplers ---------------------------------------------------------------------------------------


class _Progress:
    """Where the latest pass (epoch) of a sampler or loader stands, and the resume ``load`` asked for:
    the state of :class:`~torchcontract.protocols.Stateful` objects of this package."""

    def __init__(self) -> None:
        self.yielded = 0
        self.finished = False
        self.start: Any = None
        self.pending_skip = 0
        self.pending_finished = False

    def begin(self) -> int:
        """Start a pass; returns the items to skip (a resumed pass), consumed here."""
        skip = self.pending_skip
        self.pending_skip, self.pending_finished = 0, False
        self.yielded, self.finished = skip, False
        return skip

    def state(self) -> dict[str, Any]:
        return {"yielded": self.yielded, "finished": self.finished}

    def load(self, state_dict: Mapping[str, Any], owner: str) -> None:
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{owner}.load_state_dict needs a mapping, got {type(state_dict).__name__}")
        if not state_dict:  # a fresh start, as torchdata's StatefulDataLoader treats {}
            self.pending_skip, self.pending_finished = 0, False
            return
        _require_keys(state_dict, ("yielded", "finished"), owner)
        yielded, finished = state_dict["yielded"], state_dict["finished"]
        if isinstance(yielded, bool) or not isinstance(yielded, int) or yielded < 0:
            raise ValueError(f"{owner}.load_state_dict: 'yielded' must be an int >= 0, got {yielded!r}")
        if not isinstance(finished, bool):
            raise ValueError(f"{owner}.load_state_dict: 'finished' must be a bool, got {finished!r}")
        # A pass that had ended is over: the next iter() starts the next one.
        self.pending_skip = 0 if finished else yielded
        self.pending_finished = finished


def _require_keys(state_dict: Mapping[str, Any], keys: tuple[str, ...], owner: str) -> None:
    missing = [key for key in keys if key not in state_dict]
    if missing:
        raise KeyError(
            f"{owner}.load_state_dict: the state lacks {missing} (it has {sorted(map(str, state_dict))}): "
            f"it is not a state of a {owner}"
        )


def _counted(items: Iterator[T], progress: _Progress, start: int = 0) -> Iterator[T]:
    """``items``, counting into ``progress`` each item as it is handed out, and the end."""
    progress.yielded = start
    for item in items:
        progress.yielded += 1
        yield item
    progress.finished = True


@runtime_checkable
class _ArraySampler(Protocol):
    # The fast path: an epoch's indices as one array. Public iteration yields Python ints.
    def _index_array(self) -> Indices: ...


class SequentialSampler:
    """``0, 1, ..., n - 1`` as Python ints, where ``n`` is ``len(data_source)`` (read at each pass) or
    the int given (``torch.utils.data.SequentialSampler``)."""

    def __init__(self, data_source_or_len: Sized | int) -> None:
        sampler_length(data_source_or_len)
        self.data_source = data_source_or_len
        self._progress = _Progress()

    def __len__(self) -> int:
        return sampler_length(self.data_source)

    def __iter__(self) -> Iterator[int]:
        skip = self._progress.begin()
        return _counted(iter(range(skip, len(self))), self._progress, skip)

    def _index_array(self) -> Indices:
        self._progress.begin()
        return np.arange(len(self), dtype=np.int64)

    def state_dict(self) -> dict[str, Any]:
        """Where the latest pass stands: ``{"yielded": k, "finished": bool}`` (SPEC.md, "Stateful")."""
        return self._progress.state()

    def load_state_dict(self, state_dict: Mapping[str, Any], /) -> None:
        """Resume the pass ``state_dict`` was taken in at the next ``iter()``; ``{}`` is a fresh start."""
        self._progress.load(state_dict, "SequentialSampler")


class RandomSampler:
    """A new random permutation of ``range(n)`` at each pass, as Python ints.

    Draws from its own ``np.random.default_rng(seed)``, never from global state: the same seed
    gives the same sequence of passes; ``seed=None`` takes fresh entropy from the OS. (Unlike
    ``torch.utils.data.RandomSampler``, which draws a seed from torch's global RNG at each pass.)
    """

    def __init__(self, data_source_or_len: Sized | int, *, seed: int | None = None) -> None:
        sampler_length(data_source_or_len)
        self.data_source = data_source_or_len
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._progress = _Progress()
        self._progress.start = self._rng.bit_generator.state

    def __len__(self) -> int:
        return sampler_length(self.data_source)

    def __iter__(self) -> Iterator[int]:
        order = self._index_array()
        skip = self._progress.yielded  # the resumed pass's position, or 0
        return _counted(iter(order[skip:].tolist()), self._progress, skip)

    def _index_array(self) -> Indices:
        if self._progress.pending_finished:
            self._rng.permutation(len(self))  # the resumed pass had ended: draw past it
        self._progress.begin()
        self._progress.start = self._rng.bit_generator.state
        return self._rng.permutation(len(self))

    def state_dict(self) -> dict[str, Any]:
        """Where the latest pass stands: ``{"rng": <the generator's state when the pass began>,
        "yielded": k, "finished": bool}`` (plain dicts, ints and str: ``torch.save`` and
        ``torch.load(weights_only=True)`` keep them)."""
        return {"rng": copy.deepcopy(self._progress.start), **self._progress.state()}

    def load_state_dict(self, state_dict: Mapping[str, Any], /) -> None:
        """Resume the pass ``state_dict`` was taken in at the next ``iter()``: the same order, from the
        next index on, and the same passes after it. ``{}`` is a fresh start."""
        if not state_dict:
            self._progress.load(state_dict, "RandomSampler")
            return
        _require_keys(state_dict, ("rng", "yielded", "finished"), "RandomSampler")
        rng = state_dict["rng"]
        self._rng.bit_generator.state = copy.deepcopy(dict(rng))
        self._progress.load({k: state_dict[k] for k in ("yielded", "finished")}, "RandomSampler")
        self._progress.start = copy.deepcopy(dict(rng))


class BatchSampler:
    """Groups the indices of ``sampler`` into lists of ``batch_size`` (the last one shorter, or
    dropped with ``drop_last``), like ``torch.utils.data.BatchSampler``, which it also follows in
    validating ``batch_size`` (a positive int, not bool) and ``drop_last`` (a bool)."""

    def __init__(self, sampler: Iterable[int], batch_size: int, drop_last: bool) -> None:
        self.sampler = sampler
        self.batch_size = positive_int("batch_size", batch_size)
        self.drop_last = boolean("drop_last", drop_last)

    def __len__(self) -> int:
        count = len(self.sampler)  # type: ignore[arg-type]  # TypeError for an unsized sampler, as torch
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._index_batches():
            yield batch.tolist() if isinstance(batch, np.ndarray) else batch

    def _index_batches(self) -> Iterator[Indices | list[int]]:
        """One pass, as index arrays (for the library's samplers) or lists (for any other)."""
        size = self.batch_size
        if isinstance(self.sampler, _ArraySampler):
            order = self.sampler._index_array()
            stop = len(order) - len(order) % size if self.drop_last else len(order)
            return (order[start : start + size] for start in range(0, stop, size))
        return self._chunks(iter(self.sampler))

    def _chunks(self, indices: Iterator[int]) -> Iterator[list[int]]:
        while batch := list(itertools.islice(indices, self.batch_size)):
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch


# -- the loader -------------------------------------------------------------------------------------


class DataLoader:
    """Batches of a dataset, one epoch per ``iter(loader)`` (``torch.utils.data.DataLoader``, single
    process).

    Map-style datasets (see :func:`is_iterable_style` for the rule): the indices come from
    ``sampler`` if given, else from a :class:`RandomSampler` (``shuffle=True``, seeded with ``seed``,
    so the same seed gives the same sequence of epochs and each epoch a new order) or a
    :class:`SequentialSampler`; ``batch_sampler`` groups them (``drop_last`` drops a short last
    batch). A batch is fetched with ``dataset.__getitems__(indices)`` when the dataset has one that
    is not ``None``, else ``[dataset[i] for i in indices]``, and passed to ``collate_fn``
    (:func:`default_collate` when ``None``). ``indices`` is a ``list[int]``, as torch passes, for
    every dataset: a dataset written against torch's contract must work here unchanged.

    Iterable-style datasets: the stream is cut into batches; ``shuffle=True`` or a ``sampler`` is
    a ``ValueError`` (as in torch).

    A map-style dataset needs ``__len__`` unless a ``sampler`` is given (``TypeError`` at
    construction; torch fails later, at ``len`` or ``iter``).

    ``batch_size=None`` turns batching off: single samples are yielded, through ``collate_fn`` when
    one is given. ``len(loader)`` is the number of batches (``TypeError`` for a dataset or sampler
    without ``__len__``). ``iter(loader)`` returns a new iterator each time (the shuffled order is
    drawn then); its exhaustion is sticky.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool = False,
        *,
        sampler: Iterable[int] | None = None,
        drop_last: bool = False,
        collate_fn: Callable[[Any], Any] | None = None,
        seed: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.batch_size = None if batch_size is None else positive_int("batch_size", batch_size)
        self.shuffle = boolean("shuffle", shuffle)
        self.drop_last = boolean("drop_last", drop_last)
        self.seed = seed
        self.iterable_style = is_iterable_style(dataset)
        if self.iterable_style:
            if shuffle:
                raise ValueError("DataLoader: an iterable-style dataset cannot be shuffled (shuffle=True)")
            if sampler is not None:
                raise ValueError("DataLoader: an iterable-style dataset takes no sampler")
        elif sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True are mutually exclusive")
        elif sampler is None:
            sampler = RandomSampler(dataset, seed=seed) if shuffle else SequentialSampler(dataset)
        self.sampler = sampler
        self.batch_sampler = (
            None
            if sampler is None or self.batch_size is None
            else BatchSampler(sampler, self.batch_size, drop_last)
        )
        self.collate_fn = (
            default_collate if collate_fn is None and self.batch_size is not None else collate_fn
        )
        self._progress = _Progress()
        self._resume_sampler: dict[str, Any] | None = None
        self._resume_finished = False

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        if self.sampler is not None:
            return len(self.sampler)  # type: ignore[arg-type]  # TypeError when unsized, as torch
        if not isinstance(self.dataset, Sized):
            raise TypeError(f"len() of a DataLoader over an unsized {type(self.dataset).__name__}")
        count = len(self.dataset)
        if self.batch_size is None:
            return count
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        progress, sampler = self._progress, self.sampler
        skip = progress.begin()
        if self._resume_sampler is not None and isinstance(sampler, (SequentialSampler, RandomSampler)):
            sampler.load_state_dict(self._resume_sampler)
            if self._resume_finished:
                sampler._index_array()  # the resumed epoch had ended: draw past its order
        self._resume_sampler, self._resume_finished = None, False
        if self.iterable_style:
            samples = iter(self.dataset)
            if self.batch_size is None:
                items = self._single(samples)
            else:
                items = self._stream_batches(samples, self.batch_size)
            # A stream has no index to jump to: the resumed epoch re-reads and drops what was yielded.
            return _counted(itertools.islice(items, skip, None), progress, skip)
        if self.batch_sampler is None:
            indices = iter(sampler)  # type: ignore[arg-type]
            progress.start = self._sampler_state()
            picked = itertools.islice(indices, skip, None)
            return _counted(self._single(self.dataset[i] for i in picked), progress, skip)
        batches = self.batch_sampler._index_batches()
        progress.start = self._sampler_state()
        # Skipped as index arrays: the samples of the batches already yielded are not loaded again.
        return _counted(self._map_batches(itertools.islice(batches, skip, None)), progress, skip)

    def _sampler_state(self) -> dict[str, Any] | None:
        """The state of this package's sampler when the epoch's order was drawn (loading it draws the
        same order again), or None for another sampler, which a resume re-iterates instead."""
        sampler = self.sampler
        if isinstance(sampler, (SequentialSampler, RandomSampler)):
            state = sampler.state_dict()
            return {**state, "yielded": 0, "finished": False}
        return None

    def state_dict(self) -> dict[str, Any]:
        """Where the latest epoch stands (SPEC.md, "Stateful"): ``{"batches_yielded": k, "finished":
        bool, "sampler": <the sampler's state when the epoch's order was drawn, or None>}``. A new
        instance built the same way and loaded with it yields the rest of that epoch at its next
        ``iter()``, then the same epochs as this one; loaded with the state of an epoch that ended, the
        next epoch. A snapshot of plain dicts, ints, str and bools (``torch.save`` keeps it)."""
        state: dict[str, Any] = {
            "batches_yielded": self._progress.yielded,
            "finished": self._progress.finished,
        }
        sampler = self._progress.start if self._progress.start is not None else self._sampler_state()
        state["sampler"] = copy.deepcopy(sampler)
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any], /) -> None:
        """Resume at the next ``iter()`` where ``state_dict`` was taken. ``{}`` is a fresh start (as
        torchdata's ``StatefulDataLoader`` treats it); a state of anything else is a ``KeyError``
        naming the missing keys."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"DataLoader.load_state_dict needs a mapping, got {type(state_dict).__name__}")
        if not state_dict:
            self._progress.load({}, "DataLoader")
            self._resume_sampler, self._resume_finished = None, False
            return
        _require_keys(state_dict, ("batches_yielded", "finished", "sampler"), "DataLoader")
        progress = {"yielded": state_dict["batches_yielded"], "finished": state_dict["finished"]}
        self._progress.load(progress, "DataLoader")
        sampler = state_dict["sampler"]
        self._resume_sampler = None if sampler is None else dict(sampler)
        self._resume_finished = bool(state_dict["finished"])

    def _collate(self) -> Callable[[Any], Any]:
        return default_collate if self.collate_fn is None else self.collate_fn

    def _map_batches(self, batches: Iterator[Indices | list[int]]) -> Iterator[Any]:
        dataset, collate = self.dataset, self._collate()
        getitems = getattr(dataset, "__getitems__", None)
        for indices in batches:
            if isinstance(indices, np.ndarray):
                indices = indices.tolist()
            samples = getitems(indices) if getitems else [dataset[i] for i in indices]
            yield collate(samples)

    def _stream_batches(self, samples: Iterator[Any], batch_size: int) -> Iterator[Any]:
        collate = self._collate()
        while batch := list(itertools.islice(samples, batch_size)):
            if len(batch) < batch_size and self.drop_last:
                return
            yield collate(batch)

    def _single(self, samples: Iterable[Any]) -> Iterator[Any]:
        # Without batching, collate_fn (if any) gets each sample, as in torch.
        for sample in samples:
            yield sample if self.collate_fn is None else self.collate_fn(sample)


class StreamDataset(Generic[T]):
    """An iterable-style view of a map-style dataset: each ``iter()`` yields ``dataset[0]``,
    ``dataset[1]``, ... in order; ``len()`` is ``len(dataset)``.

    It completes the reference implementation of the protocols (an ``IterableDataset`` with
    ``__len__``) and is iterable-style for this package's :class:`DataLoader`. torch's
    ``DataLoader`` only treats subclasses of ``torch.utils.data.IterableDataset`` as iterable-style,
    so it would not accept this class as one (it has no ``__getitem__``).
    """

    def __init__(self, dataset: MapDataset[T]) -> None:
        if not isinstance(dataset, MapDataset):
            raise TypeError(f"StreamDataset needs a map-style dataset, got {type(dataset).__name__}")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[T]:
        # A fixed count, not the legacy protocol: a dataset need not raise IndexError at its end.
        return (self.dataset[i] for i in range(len(self.dataset)))

    @override
    def __repr__(self) -> str:
        return f"StreamDataset({self.dataset!r})"
